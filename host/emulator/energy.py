"""Board profiles and the energy model: current per component state, integrated over virtual time."""
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
_US_PER_HOUR = 3_600_000_000


class ProfileError(ValueError):
    """A board profile that is missing or malformed."""


def profile_names():
    """The built-in board profiles, by name (profiles/*.toml)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def board_draws(profile):
    """[(component, mA)]: what the board draws whenever it has power, whatever the CPU does
    (a regulator's quiescent current, a USB bridge, a power LED, a modem idling in eDRX):
    the `[board]` keys ending in `_ma`, as components named `board:<key less _ma>`."""
    board = profile.get("board", {})
    return [("board:" + key[:-3], float(value)) for key, value in sorted(board.items())
            if key.endswith("_ma")]


def load_profile(name_or_path="esp32-devkitc"):
    """A profile as a dict, from a name in profiles/ or a path to a TOML file."""
    if isinstance(name_or_path, dict):
        return name_or_path
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / (str(name_or_path) + ".toml")
    try:
        with open(path, "rb") as f:
            profile = tomllib.load(f)
    except FileNotFoundError:
        raise ProfileError("%s: no such board profile" % path) from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError("%s: not valid TOML: %s" % (path, e)) from None
    for section in ("cpu", "gnss", "radio", "outputs", "battery"):
        if section not in profile:
            raise ProfileError("%s: missing section [%s]" % (path, section))
    return profile


class Energy:
    """Integrates each component's current over virtual time.

    A component is in one state at a time (`set(component, ma, state)`); short bursts such
    as a radio frame are added as charge with `pulse`. Charge is kept in mA*us (integers are
    not needed: the sums are deterministic in a fixed order).
    """

    def __init__(self, profile, clock_us):
        self.profile = profile
        self._clock_us = clock_us  # zero-argument callable giving virtual time in us
        self._ma = {}  # component -> current now
        self._state = {}  # component -> state name
        self._since_us = {}
        self._mauss = {}  # component -> accumulated mA*us
        self._state_us = {}  # (component, state) -> us spent in it before the current stretch
        self.start_us = clock_us()
        self._board = board_draws(profile)
        self._powered = False
        # An empty cell (Battery's brown-out) supplies nothing: every component, the GNSS
        # backup included, draws 0 from it until the charger brings it back. _want keeps
        # what each component would draw, to restore it then.
        self._dead = False
        self._want = {}
        self._dead_since_us = None
        self._dead_us = 0
        self.counters = {"fixes": 0, "tx_frames": 0, "tx_bytes": 0, "rx_frames": 0,
                         "rx_bytes": 0, "wakes": 0, "boots": 0}

    def cell_empty(self, empty):
        """The cell ran empty (True) or has charge again (False): draws stop, or resume."""
        if empty == self._dead:
            return
        now = self._clock_us()
        if empty:
            self._dead_since_us = now
        else:
            self._dead_us += now - self._dead_since_us
            self._dead_since_us = None
        self._dead = empty
        for component in sorted(self._want):
            self.set(component, self._want[component], self._state[component])

    def _searched_in_vain(self):
        return not self.counters["fixes"] and \
            self.state_seconds("gnss").get("acquisition", 0.0) > 0

    def alive_us(self):
        """Virtual time so far with charge in the cell (the battery projection's basis)."""
        dead = self._dead_us
        if self._dead_since_us is not None:
            dead += self._clock_us() - self._dead_since_us
        return self._clock_us() - self.start_us - dead

    def set(self, component, ma, state=""):
        self._want[component] = ma
        if self._dead:
            ma = 0.0
        now = self._clock_us()
        if component in self._ma:
            self._mauss[component] += self._ma[component] * (now - self._since_us[component])
            key = (component, self._state[component])
            self._state_us[key] = self._state_us.get(key, 0) + now - self._since_us[component]
        else:
            self._mauss[component] = 0.0
        self._ma[component] = ma
        self._state[component] = state
        self._since_us[component] = now
        if component == "cpu" and (state != "off") != self._powered:
            # The board's constant draws follow its power, not the CPU's sleep state.
            self._powered = state != "off"
            for name, draw in self._board:
                self.set(name, draw if self._powered else 0.0, "on" if self._powered else "off")

    @property
    def powered(self):
        """The board has power (any CPU state but off)."""
        return self._powered

    def state(self, component):
        return self._state.get(component, "")

    def state_seconds(self, component):
        """{state: seconds} the component has spent in each state so far (for the report's
        sleep-state band); a component that only ever got pulses has none."""
        out = {state: us / 1e6 for (name, state), us in self._state_us.items()
               if name == component}
        if component in self._state:
            state = self._state[component]
            out[state] = out.get(state, 0.0) + (self._clock_us() - self._since_us[component]) / 1e6
        return out

    def pulse(self, component, ma, duration_us):
        if self._dead:
            ma = 0.0
        self._mauss[component] = self._mauss.get(component, 0.0) + ma * duration_us
        self._ma.setdefault(component, 0.0)
        self._since_us.setdefault(component, self._clock_us())

    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n

    def mah_by_component(self):
        now = self._clock_us()
        out = {}
        for name, mauss in self._mauss.items():
            out[name] = (mauss + self._ma[name] * (now - self._since_us[name])) / _US_PER_HOUR
        return out

    def mah(self):
        return sum(self.mah_by_component().values())

    def current_ma(self):
        return sum(self._ma.values())

    def board_mah(self):
        """What the board's constant draws ([board] in the profile) have used so far."""
        by_component = self.mah_by_component()
        return sum(by_component.get(name, 0.0) for name, _ in self._board)

    def floor_mah(self):
        """The physical floor for the same cadence on this board: the device deep-asleep all
        the time with the GNSS on backup power, plus each fix at hot-start cost, each frame's
        TX cost, and the board's constant draws (no firmware can avoid those)."""
        p = self.profile
        elapsed_h = self.alive_us() / _US_PER_HOUR
        idle = (p["cpu"]["deep_sleep_ma"] + p["gnss"]["backup_ma"]) * elapsed_h + self.board_mah()
        fix = self.counters["fixes"] * p["gnss"]["acquisition_ma"] * p["gnss"]["hot_ttff_s"] / 3600
        radio = p["radio"]
        tx_us = self.counters["tx_frames"] * radio["frame_us"] + self.counters["tx_bytes"] * radio["per_byte_us"]
        return idle + fix + radio["tx_ma"] * tx_us / _US_PER_HOUR

    def report(self, capacity_mah=None):
        """mAh used (total and per component), average current, projected battery life,
        and the ratio to the physical floor."""
        elapsed_us = self._clock_us() - self.start_us
        alive_us = self.alive_us()
        by_component = self.mah_by_component()
        used = sum(by_component.values())
        # Averaged over the time the cell had charge: a device that browned out draws
        # nothing while dead, and that time says nothing about how long a battery lasts.
        avg_ma = used * _US_PER_HOUR / alive_us if alive_us else 0.0
        capacity = capacity_mah if capacity_mah is not None else self.profile["battery"]["capacity_mah"]
        floor = self.floor_mah()
        return {
            "virtual_s": elapsed_us / 1e6,
            "alive_s": alive_us / 1e6,
            "energy_mah": used,
            "by_component_mah": by_component,
            "avg_current_ma": avg_ma,
            "projected_battery_days": capacity / avg_ma / 24 if avg_ma else float("inf"),
            "floor_mah": floor,
            "board_mah": self.board_mah(),
            # The floor counts each fix at its hot-start cost; a GNSS that searched and
            # never got a fix (indoors) gives it no GNSS cost while any firmware must spend
            # some looking, and the ratio meant nothing (448): left out (None).
            "floor_ratio": None if self._searched_in_vain() else
            (used / floor if floor else float("inf")),
            "counters": dict(self.counters),
        }
