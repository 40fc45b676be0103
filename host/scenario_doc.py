"""docs/SCENARIOS.md, written from the scenario schema (host/scenario_schema.py).

    python -m host.scenario_doc            # print the document
    python -m host.scenario_doc --write    # rewrite docs/SCENARIOS.md
    python -m host.scenario_doc --check    # exit 1 if docs/SCENARIOS.md is stale

Every field gets its type, unit, default, range and an example, all read from the models, so
the document cannot drift from what `vigil emulate` accepts (tests/test_scenario_schema.py
runs --check).
"""
import json
import sys
import types
import typing
from pathlib import Path

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from host import scenario_schema as schema

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "SCENARIOS.md"

# A complete scenario that uses most tables; the test validates it.
EXAMPLE = """\
[scenario]
name = "my-evening"
description = "A walk home; the offender comes within 800 m; one panic press"
duration_s = 7200
seed = 7

[centre]
operator_ack_delay_s = 8

[link]
loss = 0.1
outages = [{ start_s = 3000, duration_s = 600 }]

[[device]]
id = 1004
offender = 9004
location = [52.0907, 5.1214]
route = { start_s = 600, speed_kmh = 5.0, waypoints = [[52.0907, 5.1214], [52.0960, 5.1100, 900], [52.0907, 5.1214]] }
indoor = [{ start_s = 5400, duration_s = 1800 }]
button = [{ at_s = 4000, hold_ms = 2500 }]
charger = [{ at_s = 6000, plugged = true }]

[device.config]
reachability_s = 30

[[offender]]
id = 9004
location = [52.1180, 5.1214]
report_s = 15
route = { start_s = 1200, speed_kmh = 6.0, waypoints = [[52.1180, 5.1214], [52.0980, 5.1214]] }
"""

# Where each model sits in a file, and how it is written there.
SECTIONS = [
    ("[scenario]", schema.Scenario, "required"),
    ("[centre]", schema.Centre, "optional"),
    ("[link]", schema.Link, "optional"),
    ("[[link.outages]] / `outages = [{...}]`", schema.Span, "in [link]"),
    ("[[device]]", schema.Device, "one or more"),
    ("`route = {...}` in a [[device]] or [[offender]]", schema.Route, "optional"),
    ("`indoor = [{...}]` in a [[device]]", schema.Span, "optional"),
    ("`button = [{...}]` in a [[device]]", schema.Press, "optional"),
    ("`charger = [{...}]` in a [[device]]", schema.ChargerStep, "optional"),
    ("[device.config]", schema.DeviceConfig, "optional"),
    ("[[offender]]", schema.Offender, "zero or more; each must be named by a device"),
]


def _unwrap(annotation, bounds):
    """(type text, bounds) of an annotation; Annotated constraints go into bounds."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        for meta in annotation.__metadata__:
            _bound(meta, bounds)
        return _unwrap(args[0], bounds)
    if origin in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        if set(real) == {int, float}:
            return "number", bounds
        text = " or ".join(_unwrap(a, bounds)[0] for a in real)
        return text, bounds
    if origin is list:
        inner, _ = _unwrap(args[0], {})
        return "array of " + inner, bounds
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table", bounds
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(
        annotation, str(annotation)), bounds


def _bound(meta, bounds):
    for cls, key in ((Ge, "ge"), (Gt, "gt"), (Le, "le"), (Lt, "lt"),
                     (MinLen, "min_length"), (MaxLen, "max_length")):
        if isinstance(meta, cls):
            bounds[key] = getattr(meta, key)
    for inner in getattr(meta, "metadata", ()):  # a pydantic Field(...) inside Annotated
        _bound(inner, bounds)


def _range(bounds, kind):
    low = ">= %s" % _num(bounds["ge"]) if "ge" in bounds else (
        "> %s" % _num(bounds["gt"]) if "gt" in bounds else None)
    high = "<= %s" % _num(bounds["le"]) if "le" in bounds else (
        "< %s" % _num(bounds["lt"]) if "lt" in bounds else None)
    if low and high and "ge" in bounds and "le" in bounds:
        text = "%s .. %s" % (_num(bounds["ge"]), _num(bounds["le"]))
    else:
        text = ", ".join(t for t in (low, high) if t)
    lengths = []
    if "min_length" in bounds:
        lengths.append("at least %d" % bounds["min_length"])
    if "max_length" in bounds:
        lengths.append("at most %d" % bounds["max_length"])
    if lengths:
        what = "items" if kind.startswith("array") else "characters"
        text = ", ".join(t for t in (text, "%s %s" % (" and ".join(lengths), what)) if t)
    return text or "-"


def _num(value):
    return "%d" % value if float(value).is_integer() else "%g" % value


def _value(value):
    if value is PydanticUndefined:
        return "**required**"
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_defaults=True)
    if value is None:
        return "none"
    if value == {}:
        return "`{}`"
    return "`%s`" % _toml(value)


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join("%s = %s" % (k, _toml(v)) for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def field_rows(model):
    """(name, type, unit, default, range, example, description) of each field of a model."""
    rows = []
    for name, info in model.model_fields.items():
        bounds = {}
        for meta in info.metadata:
            _bound(meta, bounds)
        kind, bounds = _unwrap(info.annotation, bounds)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        unit = extra.get("unit") or schema.unit_of(name) or "-"
        example = info.examples[0] if info.examples else None
        limits = extra.get("range") or _range(bounds, kind)
        rows.append((name, kind, unit, _value(info.default), limits,
                     _value(example) if example is not None else "see its table",
                     info.description or ""))
    return rows


def render():
    out = [
        "# Scenario files",
        "",
        "<!-- Generated by `python -m host.scenario_doc --write` from host/scenario_schema.py;",
        "     do not edit by hand (a test fails when this file is stale). -->",
        "",
        "A scenario is a TOML file (at most %d bytes) run by `vigil emulate FILE.toml`. The"
        % 1048576,
        "built-in ones are in `host/scenarios/` (`vigil scenarios` lists them). Every number",
        "must be finite and within its range; a field that is not listed here is an error; an",
        "integer may be written where a number is expected. Any problem stops the run with one",
        "line naming the file and the field path, e.g.",
        "",
        "```",
        "vigil emulate: my.toml: device[0].button[1].hold_ms: must be <= 60000, got 90000",
        "```",
        "",
        "Rules between fields: a route has either `waypoints` or `gpx`; device ids are unique;",
        "a device's `offender` names an `[[offender]]`, and every `[[offender]]` is named by a",
        "device; `centre.alarm_m` is below `centre.warning_m`. Times (`*_s`) count from the start",
        "of the run and are at most %d s (30 days)." % schema.MAX_DURATION_S,
        "",
        "## Example",
        "",
        "```toml",
        EXAMPLE.rstrip("\n"),
        "```",
    ]
    for title, model, presence in SECTIONS:
        summary = (model.__doc__ or "").strip().split("\n")[0]
        lead = "%s. %s" % (presence[:1].upper() + presence[1:], summary)
        out += ["", "## %s" % title, "", lead.rstrip(), ""]
        out.append("| field | type | unit | default | range | example | meaning |")
        out.append("|---|---|---|---|---|---|---|")
        for row in field_rows(model):
            out.append("| `%s` | %s | %s | %s | %s | %s | %s |" % tuple(
                str(cell).replace("|", "\\|") for cell in row))
    return "\n".join(out) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if argv == ["--write"]:
        DOC_PATH.write_text(text, encoding="utf-8")
        return 0
    if argv == ["--check"]:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print("docs/SCENARIOS.md is stale: run `python -m host.scenario_doc --write`",
                  file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: python -m host.scenario_doc [--write | --check]", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
