"""Virtual peripherals on the board's pins: the panic button, LED and haptic outputs, battery."""
import bisect

# The emulated board's wiring (device.WIRING, docs/LINK.md).
BUTTON_PIN = 33
LED_PIN = 26
HAPTIC_PIN = 25
BATTERY_ADC_PIN = 34
CHARGER_SENSE_PIN = 35


class Button:
    """An active-low push button to ground, with the pin's pull-up.

    `press`, `release`, `hold` and `click` act now or at a virtual time `at_ms`;
    `script([(t_ms, "press"|"release"), ...])` schedules a sequence.
    """

    def __init__(self, dev, pin=BUTTON_PIN, active_level=0):
        self.dev = dev
        self.pin = pin
        self.active_level = active_level
        self.events = []  # (t_ms, "press"|"release")
        dev.drive_pin(pin, 1 - active_level)

    @property
    def pressed(self):
        return self.dev.pin_level(self.pin) == self.active_level

    def _at(self, at_ms, fn):
        if at_ms is None:
            fn()
        else:
            self.dev.world.at(at_ms, fn)

    def _set(self, pressed):
        kind = "press" if pressed else "release"
        self.events.append((self.dev.world.now_ms, kind))
        self.dev.world.record(self.dev.device_id, "button", kind)
        self.dev.drive_pin(self.pin, self.active_level if pressed else 1 - self.active_level)

    def press(self, at_ms=None):
        self._at(at_ms, lambda: self._set(True))

    def release(self, at_ms=None):
        self._at(at_ms, lambda: self._set(False))

    def hold(self, duration_ms, at_ms=None):
        start = self.dev.world.now_ms if at_ms is None else at_ms
        self.press(at_ms)
        self.release(start + duration_ms)

    def click(self, at_ms=None, duration_ms=120):
        self.hold(duration_ms, at_ms)

    def script(self, steps):
        for t_ms, kind in steps:
            if kind not in ("press", "release"):
                raise ValueError("button script step %r: kind must be press or release" % (kind,))
            (self.press if kind == "press" else self.release)(t_ms)


class OutputRecorder:
    """Records the level the firmware drives on an output pin (LED, haptic motor) as
    (t_ms, level) edges, and charges its current to the energy model while on."""

    def __init__(self, dev, name, pin, on_ma):
        self.dev = dev
        self.name = name
        self.pin = pin
        self.on_ma = on_ma
        self.edges = []
        self.level = 0
        dev.energy.set(name, 0.0, "off")
        dev.on_output(pin, self._changed)

    def _changed(self, level):
        if level != self.level:
            self.level = level
            self.edges.append((self.dev.world.now_ms, 1 if level else 0))
            self.dev.world.record(self.dev.device_id, self.name,
                                  "floating" if level is None else level)
        self.power_changed()

    def power_changed(self):
        level = self.level
        if level is None and self.dev.energy.powered:
            # A floating gate: the worse case is a driver that conducts (docs/HARDWARE.md);
            # with the board unpowered nothing does.
            self.dev.energy.set(self.name, self.on_ma, "floating")
        else:
            self.dev.energy.set(self.name, self.on_ma if level else 0.0, "on" if level else "off")

    def pulses(self, since_ms=0):
        """(start_ms, duration_ms) of each on period that started at or after since_ms; an
        output still on has duration None."""
        out = []
        start = None
        for t_ms, level in self.edges:
            if level and start is None:
                start = t_ms
            elif not level and start is not None:
                if start >= since_ms:
                    out.append((start, t_ms - start))
                start = None
        if start is not None and start >= since_ms:
            out.append((start, None))
        return out

    def on_ms(self, since_ms=0, until_ms=None):
        """Total time on within [since_ms, until_ms]."""
        until = self.dev.world.now_ms if until_ms is None else until_ms
        total = 0.0
        for start, duration in self.pulses():
            end = until if duration is None else start + duration
            total += max(0.0, min(end, until) - max(start, since_ms))
        return total


_WATCH_US = 1_000_000  # how often a nearly empty cell is checked for a brown-out


class Battery:
    """A Li-ion cell: charge drawn by the energy model, voltage from the open-circuit curve
    minus I*R, seen by the firmware through a 2:1 divider on the ADC; a charger on the
    charger-sense pin. An empty cell browns the board out until the charger is plugged."""

    def __init__(self, dev, capacity_mah=None, soc_pct=100.0, charger=False, charge_ma=None,
                 ocv_curve=None, internal_mohm=None, adc_pin=BATTERY_ADC_PIN,
                 sense_pin=CHARGER_SENSE_PIN, check_interval_s=60):
        p = dev.profile["battery"]
        self.dev = dev
        self.capacity_mah = float(capacity_mah if capacity_mah is not None else p["capacity_mah"])
        self.charge_ma = float(charge_ma if charge_ma is not None else p["charge_ma"])
        curve = sorted(ocv_curve if ocv_curve is not None else p["ocv_curve"])
        self._soc_points = [float(s) for s, _ in curve]
        self._mv_points = [float(mv) for _, mv in curve]
        self.internal_mohm = float(internal_mohm if internal_mohm is not None else p["internal_mohm"])
        if not 0 <= soc_pct <= 100:
            raise ValueError("battery soc_pct %r: must be 0-100" % (soc_pct,))
        self._charge_mah = self.capacity_mah * soc_pct / 100
        self._charge_at_check_mah = self._charge_mah
        self._last_energy_mah = dev.energy.mah()
        self._last_us = dev.world.now_us
        self.plugged = bool(charger)
        self.sense_pin = sense_pin
        self.browned_out = False
        self.check_interval_us = int(check_interval_s * 1_000_000)
        # One sample per check for the session report: (t_ms, soc_pct, {component: mAh so
        # far}, {cpu state: seconds so far}); differences give each interval's current.
        self.samples = []
        dev.drive_pin(sense_pin, 1 if self.plugged else 0)
        dev.set_analog(adc_pin, lambda: self.voltage_mv() * 1000 // 2)
        dev.world.at_us(dev.world.now_us + self.check_interval_us, self._check)

    def _update(self):
        world = self.dev.world
        used = self.dev.energy.mah()
        self._charge_mah -= used - self._last_energy_mah
        if self.plugged:
            self._charge_mah += self.charge_ma * (world.now_us - self._last_us) / 3.6e9
        self._charge_mah = min(max(self._charge_mah, 0.0), self.capacity_mah)
        self._last_energy_mah = used
        self._last_us = world.now_us

    @property
    def soc_pct(self):
        self._update()
        return 100.0 * self._charge_mah / self.capacity_mah

    def ocv_mv(self, soc_pct):
        xs, ys = self._soc_points, self._mv_points
        if soc_pct <= xs[0]:
            return ys[0]
        if soc_pct >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, soc_pct)
        f = (soc_pct - xs[i - 1]) / (xs[i] - xs[i - 1])
        return ys[i - 1] + f * (ys[i] - ys[i - 1])

    def voltage_mv(self):
        sag = self.dev.energy.current_ma() * self.internal_mohm / 1000
        return int(round(self.ocv_mv(self.soc_pct) - sag))

    def set_soc(self, soc_pct):
        self._update()
        self._charge_mah = self.capacity_mah * soc_pct / 100

    def _set_plugged(self, plugged):
        self._update()
        self.plugged = plugged
        self.dev.world.record(self.dev.device_id, "charger", 1 if plugged else 0)
        self.dev.drive_pin(self.sense_pin, 1 if plugged else 0)
        if plugged and self.browned_out:
            self.browned_out = False
            self.dev.energy.cell_empty(False)
            self.dev.power_on()

    def plug(self, at_ms=None):
        if at_ms is None:
            self._set_plugged(True)
        else:
            self.dev.world.at(at_ms, self._set_plugged, True)

    def unplug(self, at_ms=None):
        if at_ms is None:
            self._set_plugged(False)
        else:
            self.dev.world.at(at_ms, self._set_plugged, False)

    def _check(self, _=None):
        energy = self.dev.energy
        self.samples.append((self.dev.world.now_ms, self.soc_pct, energy.mah_by_component(),
                             energy.state_seconds("cpu")))
        self._brownout_if_empty()
        drawn_mah = self._charge_at_check_mah - self._charge_mah  # over the last interval
        self._charge_at_check_mah = self._charge_mah
        world = self.dev.world
        next_us = world.now_us + self.check_interval_us
        world.at_us(next_us, self._check)
        # Near empty (less than two intervals' draw left), look every second until the next
        # sample: a brown-out found up to a minute late let a 1 mAh cell give 1.08 mAh.
        if not self.browned_out and not self.plugged and self._charge_mah < 2 * drawn_mah:
            for t_us in range(world.now_us + _WATCH_US, next_us, _WATCH_US):
                world.at_us(t_us, self._watch)

    def _watch(self, _=None):
        self._brownout_if_empty()

    def _brownout_if_empty(self):
        if self.soc_pct <= 0 and not self.plugged and not self.browned_out:
            self.browned_out = True
            self.dev.world.record(self.dev.device_id, "brownout", "battery empty")
            self.dev.power_cut()
            self.dev.energy.cell_empty(True)
