"""The scenario file schema, as pydantic models: the one place that says what a scenario TOML
file may contain. `host.scenario` validates with it and `host.scenario_doc` writes
docs/SCENARIOS.md from it.

Why pydantic (v2) rather than msgspec: its errors carry the field path as a tuple
(`("device", 0, "button", 1, "hold_ms")`), which becomes the `device[0].button[1].hold_ms` our
one-line errors name; `allow_inf_nan=False` refuses nan and inf in every float at once; and
the models keep descriptions, units, ranges and examples that the doc generator reads back.
Validation speed does not matter for files this small.

Rules kept everywhere: every number has a lower and an upper bound and must be finite (TOML
allows nan, inf and integers past 2**63); `extra="forbid"` so a misspelt field is an error,
not a silently ignored one; strict types, so `true` is not 1 and "5" is not 5. An integer is
accepted where a float is expected.
"""
from typing import Annotated, Literal, Optional, Union

from annotated_types import Ge, Le
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from protocol.config_keys import CONFIG_KEYS

MAX_DURATION_S = 30 * 86400  # the longest scenario; every time within one is below it
U32_MAX = 2**32 - 1
# An integer stays an integer (runs and their trace hashes do not change with the schema).
Num = Union[int, float]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False,
                              frozen=True)


LATLON_RANGE = "latitude -90 .. 90, longitude -180 .. 180"


def _field(default, description, example, unit=None, limits=None, **kw):
    """A field with what the doc shows: description, example, unit, and a range in words
    where the type's own bounds cannot say it."""
    extra = {"unit": unit} if unit else {}
    if limits:
        extra["range"] = limits
    return Field(default, description=description, examples=[example],
                 json_schema_extra=extra or None, **kw)


_UNITS = (("_cmps", "cm/s"), ("_kmh", "km/h"), ("_mah", "mAh"), ("_pct", "%"), ("_ms", "ms"),
          ("_s", "s"), ("_m", "m"))


def unit_of(name):
    """The unit a field's name ends in (`heartbeat_s` -> "s"), or None."""
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return unit
    return None


def _point(point):
    """[latitude, longitude] or [latitude, longitude, dwell_s]."""
    if len(point) not in (2, 3):
        raise ValueError("must be [latitude, longitude] or [latitude, longitude, dwell_s]")
    if not -90 <= point[0] <= 90 or not -180 <= point[1] <= 180:
        raise ValueError("latitude must be within ±90 and longitude within ±180")
    if len(point) == 3 and not 0 <= point[2] <= MAX_DURATION_S:
        raise ValueError("a third value is the dwell in seconds and must be 0..%d"
                         % MAX_DURATION_S)
    return point


def _location(point):
    if len(point) != 2:
        raise ValueError("must be [latitude, longitude] in degrees")
    return _point(point)


Location = Annotated[list[Num], AfterValidator(_location)]
Waypoint = Annotated[list[Num], AfterValidator(_point)]
TimeS = Annotated[Num, Ge(0), Le(MAX_DURATION_S)]


class Span(Strict):
    """A time span from the start of the run."""
    start_s: TimeS = _field(..., "when the span starts, from the start of the run", 1800,
                            unit="s")
    duration_s: TimeS = _field(..., "how long it lasts", 3600, unit="s")


class Route(Strict):
    """A route: waypoints or a GPX file (one of them), walked at a constant speed."""
    start_s: TimeS = _field(0, "when the wearer sets off", 600, unit="s")
    speed_kmh: Annotated[Num, Ge(0.1), Le(200)] = _field(
        5.0, "speed along the route", 5.0, unit="km/h")
    waypoints: Optional[Annotated[list[Waypoint], Field(min_length=2, max_length=100_000)]] = \
        _field(None, "[latitude, longitude] points in degrees; a third value is a dwell in "
               "seconds spent standing there before going on",
               [[52.0907, 5.1214], [52.0930, 5.1150, 600], [52.0907, 5.1214]], unit="degrees",
               limits="2 .. 100000 points; " + LATLON_RANGE + ", dwell 0 .. %d s"
               % MAX_DURATION_S)
    gpx: Optional[Annotated[str, Field(min_length=1, max_length=4096)]] = _field(
        None, "a GPX file's track, relative to the scenario file", "walk.gpx")


class Press(Strict):
    """A button press."""
    at_s: TimeS = _field(..., "when the button goes down", 120, unit="s")
    hold_ms: Annotated[int, Ge(0), Le(60_000)] = _field(
        2000, "how long it is held (a panic needs the firmware's long_press_ms)", 2000,
        unit="ms")


class ModeChange(Strict):
    """The device's scheme switched over the air (COMMAND MODE) by the operator or a court
    order: aware (panic to the police) or paired with an offender's tag (panic and proximity
    to the probation operator)."""
    at_s: TimeS = _field(..., "when the switch is made at the centre", 1800, unit="s")
    mode: Literal["aware", "paired"] = _field(..., "the new scheme", "paired")
    offender: Optional[Annotated[int, Ge(1), Le(U32_MAX)]] = _field(
        None, "paired: the [[offender]] id", 9004)
    valid_for_s: Optional[TimeS] = _field(
        None, "paired: the pairing ends by itself this long after at_s (left out = no end)",
        3600, unit="s")
    by: Literal["operator", "court"] = _field("operator", "who made the change (evidence)",
                                              "court")


class ChargerStep(Strict):
    """The charger plugged in or out."""
    at_s: TimeS = _field(..., "when the charger is plugged in or out", 3600, unit="s")
    plugged: bool = _field(..., "true = plugged in, false = unplugged", True)


# [device.config]: CONFIG settings provisioned on the device's flash before its first boot,
# by their protocol.config_keys.CONFIG_KEYS names and ranges, as the firmware would check them;
# left out = the firmware's default.
DeviceConfig = create_model(  # type: ignore[call-overload]
    "DeviceConfig", __base__=Strict, __doc__="CONFIG values provisioned before the first boot.",
    **{name: (Optional[Annotated[int, Ge(low), Le(high)]], _field(
        None, "CONFIG %s (firmware default %d)" % (name, default), default,
        unit=unit_of(name)))
       for name, low, high, default in CONFIG_KEYS.values()})


class Device(Strict):
    """An emulated victim device: the unchanged firmware on an emulated ESP32."""
    id: Annotated[int, Ge(1), Le(U32_MAX)] = _field(..., "the device id (u32)", 1004)
    offender: Optional[Annotated[int, Ge(1), Le(U32_MAX)]] = _field(
        None, "the id of the [[offender]] this victim is paired with", 9004)
    location: Location = _field(..., "home: where the device is when it has no route",
                                [52.0907, 5.1214], unit="degrees", limits=LATLON_RANGE)
    route: Optional[Route] = _field(None, "where the wearer goes", None)
    battery_pct: Annotated[Num, Ge(0), Le(100)] = _field(90, "charge at the start", 90,
                                                           unit="%")
    battery_mah: Annotated[Num, Ge(1), Le(100_000)] = _field(1500, "battery capacity", 1500,
                                                               unit="mAh")
    indoor: Annotated[list[Span], Field(max_length=10_000)] = _field(
        [], "spans with no GNSS sky view", [{"start_s": 1800, "duration_s": 3600}])
    button: Annotated[list[Press], Field(max_length=10_000)] = _field(
        [], "button presses", [{"at_s": 120, "hold_ms": 2000}])
    charger: Annotated[list[ChargerStep], Field(max_length=10_000)] = _field(
        [], "charger plugged in or out", [{"at_s": 3600, "plugged": True}])
    mode_change: Annotated[list[ModeChange], Field(max_length=1000)] = _field(
        [], "scheme switches during the run (the device starts paired when `offender` is "
        "set, else aware)", [{"at_s": 1800, "mode": "paired", "offender": 9004,
                              "valid_for_s": 3600, "by": "court"}])
    config: DeviceConfig = _field(DeviceConfig(), "CONFIG values provisioned on flash",  # type: ignore[valid-type]
                                  {"reachability_s": 600})


class Offender(Strict):
    """An offender's ankle tag, reporting its position to the centre."""
    id: Annotated[int, Ge(1), Le(U32_MAX)] = _field(..., "the ankle tag's offender id", 9004)
    location: Location = _field(..., "where the offender is when he has no route",
                                [52.1180, 5.1214], unit="degrees", limits=LATLON_RANGE)
    route: Optional[Route] = _field(None, "where the offender goes", None)
    report_s: Annotated[Num, Ge(15), Le(60)] = _field(30, "the tag's report interval", 15,
                                                        unit="s")
    accuracy_m: Annotated[Num, Ge(1), Le(1000)] = _field(
        10, "the tag's stated accuracy; its reports scatter within it", 10, unit="m")


class Scenario(Strict):
    """[scenario]: what the run is."""
    name: Annotated[str, Field(min_length=1, max_length=200)] = _field(
        ..., "a short name", "offender-approach")
    description: Annotated[str, Field(max_length=2000)] = _field(
        "", "one line for `vigil scenarios`", "The offender walks past")
    duration_s: Annotated[Num, Ge(1), Le(MAX_DURATION_S)] = _field(
        ..., "virtual time the run lasts", 7200, unit="s")
    seed: Annotated[int, Ge(0), Le(U32_MAX)] = _field(1, "random seed (`--seed` overrides)", 4)
    profile: Annotated[str, Field(min_length=1, max_length=200)] = _field(
        "esp32-devkitc", "board profile in host/emulator/profiles/", "esp32-devkitc")
    start_utc_ms: Annotated[int, Ge(0), Le(4102444800000)] = _field(
        1767600000000, "UTC at the start of the run (default 2026-01-05 08:00 UTC)",
        1767600000000, unit="ms")


class Centre(Strict):
    """[centre]: the monitoring centre's thresholds."""
    operator_ack_delay_s: Annotated[Num, Ge(0), Le(3600)] = _field(
        5, "the operator acks an alarm this long after it arrives", 8, unit="s")
    operator_clear_s: Optional[Annotated[Num, Ge(0), Le(MAX_DURATION_S)]] = _field(
        None, "the operator clears (COMMAND clear_alarm) each panic alarm this long after it "
        "arrives; left out = never, and the device's panic stays active", 600, unit="s")
    warning_m: Annotated[Num, Ge(1), Le(100_000)] = _field(
        1000, "proximity warning radius", 1000, unit="m")
    alarm_m: Annotated[Num, Ge(1), Le(100_000)] = _field(
        500, "proximity alarm radius (below warning_m)", 500, unit="m")
    heartbeat_s: Annotated[Num, Ge(60), Le(86400)] = _field(
        900, "expected heartbeat interval; two missed = NOT REPORTING", 900, unit="s")


class Link(Strict):
    """[link]: faults of every device's link to the centre, both ways."""
    kind: Literal["uart", "ble"] = _field(
        "uart", "the link: the link UART's peer (docs/LINK.md), or the wearer's phone over BLE",
        "ble")
    loss: Annotated[Num, Ge(0), Le(0.95)] = _field(0.0, "probability a frame is lost", 0.3)
    duplicate: Annotated[Num, Ge(0), Le(1)] = _field(
        0.0, "probability a frame arrives twice", 0.05)
    reorder: Annotated[Num, Ge(0), Le(1)] = _field(
        0.0, "probability a frame is held back behind later ones", 0.05)
    corrupt: Annotated[Num, Ge(0), Le(1)] = _field(
        0.0, "probability one bit of a frame flips", 0.01)
    latency_ms: Annotated[Num, Ge(0), Le(60_000)] = _field(50, "one-way latency", 150,
                                                             unit="ms")
    jitter_ms: Annotated[Num, Ge(0), Le(60_000)] = _field(
        20, "mean of the exponential extra delay", 300, unit="ms")
    outages: Annotated[list[Span], Field(max_length=10_000)] = _field(
        [], "spans when every frame either way is lost",
        [{"start_s": 3600, "duration_s": 3600}])


class ScenarioFile(Strict):
    """A whole scenario file."""
    scenario: Scenario = _field(..., "what the run is", None)
    centre: Centre = _field(Centre(), "the centre's thresholds", None)
    link: Link = _field(Link(), "link faults", None)
    device: Annotated[list[Device], Field(min_length=1, max_length=1000)] = _field(
        ..., "the emulated devices (at least one)", None)
    offender: Annotated[list[Offender], Field(max_length=1000)] = _field(
        [], "offenders' ankle tags", None)
