"""Scenario files: TOML describing devices, routes, offenders, button scripts, battery, link
faults, duration and seed. `load(path_or_name)` validates against the pydantic schema in
`host.scenario_schema` (documented in docs/SCENARIOS.md, generated from it) and returns plain
dicts with defaults filled in; any problem is a ScenarioError whose message is one line naming
the file, the field path and what is wrong. Files are read bounded (MAX_FILE_BYTES).
"""
import os

from pydantic import ValidationError

from host import scenario_schema as schema

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "scenarios")


class ScenarioError(ValueError):
    """A scenario file cannot be used; the message is one line for the user."""


MAX_FILE_BYTES = 1 << 20  # a scenario is a few kB; more is a mistake (or /dev/zero)
MAX_GPX_BYTES = 64 << 20


def _where(loc):
    """A pydantic error location -> `device[0].button[1].hold_ms`. Union branches add a tag
    (`int`, `float`, `function-after[...]`) to the path; those are not fields."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += "[%d]" % part
        elif part in ("int", "float", "str", "bool") or "[" in part or "(" in part:
            continue
        else:
            out += ("." if out else "") + part
    return out


def _problem(error, fields_of):
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        known = fields_of(error["loc"][:-1])
        return "unknown field" + (" (expected one of: %s)" % ", ".join(known) if known else "")
    if kind == "missing":
        return "missing required field"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        sign = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">",
                "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return "must be %s %s, got %r" % (sign, bound, error["input"])
    if kind == "finite_number":
        return "must be a finite number, got %r" % (error["input"],)
    if kind in ("int_type", "int_from_float"):
        return "must be a whole number, got %r" % (error["input"],)
    if kind == "float_type":
        return "must be a number, got %r" % (error["input"],)
    if kind == "bool_type":
        return "must be true or false, got %r" % (error["input"],)
    if kind == "string_type":
        return "must be a string, got %r" % (error["input"],)
    if kind in ("model_type", "dict_type"):
        return "must be a table"
    if kind == "list_type":
        return "must be an array"
    if kind in ("too_short", "too_long"):
        return "must have %s %s item(s)" % (
            "at least" if kind == "too_short" else "at most",
            ctx.get("min_length", ctx.get("max_length")))
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"][:1].lower() + error["msg"][1:]


def _fields_of(loc):
    """The field names of the model at a location, for "expected one of"."""
    model = schema.ScenarioFile
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        inner = info.annotation
        for _ in range(4):  # unwrap Optional[...] and list[...]
            if isinstance(inner, type) and issubclass(inner, schema.BaseModel):
                break
            args = [a for a in getattr(inner, "__args__", ()) if a is not type(None)]
            inner = args[0] if args else None
        if not (isinstance(inner, type) and issubclass(inner, schema.BaseModel)):
            return []
        model = inner
    return sorted(model.model_fields)


def _one_line(e, source):
    """The first error of a pydantic ValidationError as one line naming file and field.
    Union branches report one error each for the same field: the last (float) one is the
    most telling ("must be a finite number" rather than "must be a whole number")."""
    errors = e.errors()
    first = _where(errors[0]["loc"])
    chosen = [err for err in errors if _where(err["loc"]) == first][-1]
    problem = _problem(chosen, _fields_of)
    others = len({_where(err["loc"]) for err in errors}) - 1
    more = " (and %d more problem%s)" % (others, "s" if others > 1 else "") if others else ""
    if chosen["type"] == "extra_forbidden":  # the wording the hand-written checks used
        return ("%s: unknown field %s%s%s" % (source, first, problem[len("unknown field"):],
                                              more)).replace("\n", " ")
    if not first:
        return "%s: the file %s%s" % (source, problem, more)
    return ("%s: %s: %s%s" % (source, first, problem, more)).replace("\n", " ")


def _routes(scenario):
    for kind in ("device", "offender"):
        for i, item in enumerate(scenario[kind]):
            if item["route"] is not None:
                yield "%s[%d].route" % (kind, i), item["route"]


def _cross_check(scenario, source):
    """Rules between fields, which the schema cannot say field by field."""
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
        for k, change in enumerate(device.get("mode_change") or ()):
            where = "%s: device[%d].mode_change[%d]" % (source, i, k)
            if change["mode"] == "paired" and change["offender"] is None:
                raise ScenarioError("%s: a paired mode needs offender" % where)
            if change["mode"] == "aware" and (change["offender"] is not None or
                                              change["valid_for_s"] is not None):
                raise ScenarioError("%s: aware takes no offender or valid_for_s" % where)
            if change["offender"] is not None and change["offender"] not in offenders:
                raise ScenarioError("%s.offender %d names no [[offender]]" % (
                    where, change["offender"]))
    named = {d["offender"] for d in scenario["device"]} | {
        c["offender"] for d in scenario["device"] for c in d.get("mode_change") or ()}
    seen = set()
    for i, offender in enumerate(scenario["offender"]):
        if offender["id"] in seen:
            raise ScenarioError("%s: offender[%d].id %d is used twice" % (
                source, i, offender["id"]))
        seen.add(offender["id"])
        if offender["id"] not in named:
            # It would walk about and report, and nothing would ever be compared with it.
            raise ScenarioError("%s: offender[%d].id %d: no [[device]] names this offender "
                                "(set offender = %d on the victim's device)" % (
                                    source, i, offender["id"], offender["id"]))
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
    if len(text_toml) > MAX_FILE_BYTES:
        raise ScenarioError("%s: larger than %d bytes; a scenario is a few kB" % (
            source, MAX_FILE_BYTES))
    try:
        data = tomllib.loads(text_toml)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("%s: not valid TOML: %s" % (source, e)) from None
    except RecursionError:
        raise ScenarioError("%s: not valid TOML: arrays or tables nested too deeply" %
                            source) from None
    return validate(data, source)


def validate(data, source="<scenario>"):
    """Parsed TOML (plain dicts and lists) -> the scenario with defaults filled in."""
    try:
        model = schema.ScenarioFile.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(_one_line(e, source)) from None
    except RecursionError:
        raise ScenarioError("%s: values nested too deeply" % source) from None
    scenario = model.model_dump()
    _cross_check(scenario, source)
    return scenario


def load(name_or_path):
    path = resolve(name_or_path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # bounded: a device or /dev/zero is no scenario
    except OSError as e:
        raise ScenarioError("%s: cannot read scenario: %s" % (path, e.strerror or e)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError("%s: larger than %d bytes; a scenario is a few kB" % (
            path, MAX_FILE_BYTES))
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
            if os.path.getsize(route["gpx"]) > MAX_GPX_BYTES:
                raise ScenarioError("%s: %s.gpx: %s is larger than %d bytes" % (
                    path, where, route["gpx"], MAX_GPX_BYTES))
            from host.emulator import Route
            try:
                Route.from_gpx(route["gpx"])  # checks every point's range (nan too)
            except (ValueError, OSError, UnicodeDecodeError) as e:
                raise ScenarioError("%s: %s.gpx: %s" % (path, where, e)) from None
    return scenario
