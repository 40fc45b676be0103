"""Scenario files: TOML describing devices, routes, offenders, button scripts, battery, link
faults, duration and seed. `load(path_or_name)` validates against SCHEMA and returns plain
dicts with defaults filled in; any problem is a ScenarioError whose message is one line naming
the file, the field and what is wrong.
"""
import os

from protocol.messages import CONFIG_KEYS

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "scenarios")


class ScenarioError(ValueError):
    """A scenario file cannot be used; the message is one line for the user."""


# --- a small schema language: each field is (check, default); REQUIRED marks no default.
REQUIRED = object()


def number(low=None, high=None, integer=False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if integer and not isinstance(value, int):
            return "must be a whole number"
        if low is not None and value < low:
            return "must be >= %s" % low
        if high is not None and value > high:
            return "must be <= %s" % high
        return None
    return check


def text(choices=None):
    def check(value):
        if not isinstance(value, str):
            return "must be a string"
        if choices and value not in choices:
            return "must be one of " + ", ".join(choices)
        return None
    return check


def boolean(value):
    return None if isinstance(value, bool) else "must be true or false"


def latlon(value):
    if (not isinstance(value, list) or len(value) != 2 or
            any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        return "must be [latitude, longitude] in degrees"
    if not -90 <= value[0] <= 90 or not -180 <= value[1] <= 180:
        return "latitude must be within ±90 and longitude within ±180"
    return None


def waypoints(value):
    """[latitude, longitude] points; [latitude, longitude, dwell_s] stands still there first."""
    if not isinstance(value, list) or len(value) < 2:
        return "must list at least two [latitude, longitude] points"
    for point in value:
        if isinstance(point, list) and len(point) == 3:
            dwell = point[2]
            if isinstance(dwell, bool) or not isinstance(dwell, (int, float)) or dwell < 0:
                return "a third value is the dwell in seconds and must be a number >= 0"
            point = point[:2]
        problem = latlon(point)
        if problem:
            return "every point " + problem
    return None


def table(fields):
    return ("table", fields)


def array_of(fields):
    return ("array", fields)


SPAN = {"start_s": (number(0), REQUIRED), "duration_s": (number(0, integer=False), REQUIRED)}

ROUTE = {
    "start_s": (number(0), 0),
    "speed_kmh": (number(0.1, 200), 5.0),
    "waypoints": (waypoints, None),
    "gpx": (text(), None),  # a GPX file's track, relative to the scenario file
}

# [device.config]: CONFIG settings provisioned on the device's flash before its first boot, by
# their protocol.messages.CONFIG_KEYS names, range-checked as the firmware would; None (left
# out) = the firmware's default.
DEVICE_CONFIG = {name: (number(low, high, integer=True), None)
                 for name, low, high, _default in CONFIG_KEYS.values()}

SCHEMA = {
    "scenario": (table({
        "name": (text(), REQUIRED),
        "description": (text(), ""),
        "duration_s": (number(1, 30 * 86400), REQUIRED),
        "seed": (number(0, 2**32 - 1, integer=True), 1),
        "profile": (text(), "esp32-devkitc"),
        "start_utc_ms": (number(0, integer=True), 1767600000000),  # 2026-01-05 08:00 UTC
    }), REQUIRED),
    "centre": (table({
        "operator_ack_delay_s": (number(0, 3600), 5),
        "warning_m": (number(1, 100000), 1000),
        "alarm_m": (number(1, 100000), 500),
        "heartbeat_s": (number(60, 86400), 900),
    }), {}),
    "link": (table({
        "loss": (number(0, 0.95), 0.0),
        "duplicate": (number(0, 1), 0.0),
        "reorder": (number(0, 1), 0.0),
        "corrupt": (number(0, 1), 0.0),
        "latency_ms": (number(0, 60000), 50),
        "jitter_ms": (number(0, 60000), 20),
        "outages": (array_of(SPAN), []),
    }), {}),
    "device": (array_of({
        "id": (number(1, 2**32 - 1, integer=True), REQUIRED),
        "offender": (number(1, 2**32 - 1, integer=True), None),
        "location": (latlon, REQUIRED),
        "route": (table(ROUTE), None),
        "battery_pct": (number(0, 100), 90),
        "battery_mah": (number(1, 100000), 1500),
        "indoor": (array_of(SPAN), []),
        "button": (array_of({"at_s": (number(0), REQUIRED),
                             "hold_ms": (number(0, 60000, integer=True), 2000)}), []),
        "charger": (array_of({"at_s": (number(0), REQUIRED),
                              "plugged": (boolean, REQUIRED)}), []),
        "config": (table(DEVICE_CONFIG), {}),
    }), REQUIRED),
    "offender": (array_of({
        "id": (number(1, 2**32 - 1, integer=True), REQUIRED),
        "location": (latlon, REQUIRED),
        "route": (table(ROUTE), None),
        "report_s": (number(15, 60), 30),
        "accuracy_m": (number(1, 1000), 10),
    }), []),
}


def _validate(fields, data, where, source):
    if not isinstance(data, dict):
        raise ScenarioError("%s: %s must be a table" % (source, where or "the file"))
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ScenarioError("%s: unknown field %s (expected one of: %s)" % (
                source, _join(where, key), known))
    out = {}
    for key, (check, default) in fields.items():
        name = _join(where, key)
        if key not in data:
            if default is REQUIRED:
                raise ScenarioError("%s: missing required field %s" % (source, name))
            if isinstance(check, tuple) and default is not None:
                default = _validate_nested(check, default, name, source)
            out[key] = default
            continue
        out[key] = _validate_nested(check, data[key], name, source) if isinstance(check, tuple) \
            else _checked(check, data[key], name, source)
    return out


def _validate_nested(check, value, name, source):
    kind, fields = check
    if kind == "table":
        return _validate(fields, value, name, source)
    if not isinstance(value, list):
        raise ScenarioError("%s: %s must be an array of tables" % (source, name))
    return [_validate(fields, item, "%s[%d]" % (name, i), source) for i, item in enumerate(value)]


def _checked(check, value, name, source):
    problem = check(value)
    if problem:
        raise ScenarioError("%s: %s %s, got %r" % (source, name, problem, value))
    return value


def _join(where, key):
    return key if not where else where + "." + key


def _routes(scenario):
    for kind in ("device", "offender"):
        for i, item in enumerate(scenario[kind]):
            if item["route"] is not None:
                yield "%s[%d].route" % (kind, i), item["route"]


def _cross_check(scenario, source):
    for where, route in _routes(scenario):
        if (route["waypoints"] is None) == (route["gpx"] is None):
            raise ScenarioError("%s: %s needs either waypoints or gpx (one of them)" % (
                source, where))
    ids = set()
    offenders = {o["id"] for o in scenario["offender"]}
    for i, device in enumerate(scenario["device"]):
        if device["id"] in ids:
            raise ScenarioError("%s: device[%d].id %d is used twice" % (source, i, device["id"]))
        ids.add(device["id"])
        if device["offender"] is not None and device["offender"] not in offenders:
            raise ScenarioError("%s: device[%d].offender %d names no [[offender]]" % (
                source, i, device["offender"]))
    if not scenario["device"]:
        raise ScenarioError("%s: a scenario needs at least one [[device]]" % source)
    centre = scenario["centre"]
    if centre["alarm_m"] >= centre["warning_m"]:
        raise ScenarioError("%s: centre.alarm_m must be below centre.warning_m" % source)
    from host.emulator.energy import profile_names  # the board profiles the emulator has

    profile = scenario["scenario"]["profile"]
    if profile not in profile_names():
        raise ScenarioError("%s: scenario.profile %r is no board profile (expected one of: %s)"
                            % (source, profile, ", ".join(profile_names())))


def builtin_names():
    return sorted(n[:-5] for n in os.listdir(BUILTIN_DIR) if n.endswith(".toml"))


def resolve(name_or_path):
    """A built-in scenario name or a path to a TOML file -> the file's path."""
    if os.path.sep not in name_or_path and not name_or_path.endswith(".toml"):
        path = os.path.join(BUILTIN_DIR, name_or_path + ".toml")
        if not os.path.exists(path):
            raise ScenarioError("%s: no such built-in scenario (try `vigil scenarios`)" %
                                name_or_path)
        return path
    return name_or_path


def parse(text_toml, source="<scenario>"):
    try:
        data = tomllib.loads(text_toml)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("%s: not valid TOML: %s" % (source, e)) from None
    scenario = _validate(SCHEMA, data, "", source)
    _cross_check(scenario, source)
    return scenario


def load(name_or_path):
    path = resolve(name_or_path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ScenarioError("%s: cannot read scenario: %s" % (path, e.strerror or e)) from None
    try:
        text_toml = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ScenarioError("%s: not a UTF-8 text file" % path) from None
    scenario = parse(text_toml, path)
    base = os.path.dirname(os.path.abspath(path))
    for where, route in _routes(scenario):
        if route["gpx"] is not None:
            route["gpx"] = os.path.join(base, route["gpx"])
            if not os.path.isfile(route["gpx"]):
                raise ScenarioError("%s: %s.gpx: no such file %s" % (path, where, route["gpx"]))
            from host.emulator import Route
            try:
                Route.from_gpx(route["gpx"])
            except (ValueError, OSError, UnicodeDecodeError) as e:
                raise ScenarioError("%s: %s.gpx: %s" % (path, where, e)) from None
    return scenario
