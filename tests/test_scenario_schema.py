"""The scenario schema (host/scenario_schema.py, pydantic): finite numbers and ranges in every
field, unknown fields refused in every table, cross-field rules, bounded input, one-line
errors naming file and field path, and docs/SCENARIOS.md generated from it."""
import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest

from host import scenario, scenario_doc, scenario_schema

REPO = Path(__file__).resolve().parent.parent

# Every table and array of tables present, so every field can be reached.
FULL = {
    "scenario": {"name": "full", "duration_s": 600, "seed": 3},
    "centre": {"warning_m": 1000, "alarm_m": 500},
    "link": {"loss": 0.1, "outages": [{"start_s": 10, "duration_s": 20}]},
    "device": [{
        "id": 7, "offender": 9, "location": [52.0, 5.0],
        "route": {"start_s": 0, "speed_kmh": 5.0, "waypoints": [[52.0, 5.0], [52.01, 5.0, 60]]},
        "indoor": [{"start_s": 1, "duration_s": 2}],
        "button": [{"at_s": 120, "hold_ms": 2000}],
        "charger": [{"at_s": 300, "plugged": True}],
        "config": {"reachability_s": 30},
    }],
    "offender": [{"id": 9, "location": [52.1, 5.0],
                  "route": {"waypoints": [[52.1, 5.0], [52.05, 5.0]]}}],
}

# (path to a table in FULL, its model)
TABLES = [
    (("scenario",), scenario_schema.Scenario),
    (("centre",), scenario_schema.Centre),
    (("link",), scenario_schema.Link),
    (("link", "outages", 0), scenario_schema.Span),
    (("device", 0), scenario_schema.Device),
    (("device", 0, "route"), scenario_schema.Route),
    (("device", 0, "indoor", 0), scenario_schema.Span),
    (("device", 0, "button", 0), scenario_schema.Press),
    (("device", 0, "charger", 0), scenario_schema.ChargerStep),
    (("device", 0, "config"), scenario_schema.DeviceConfig),
    (("offender", 0), scenario_schema.Offender),
]


def where(path):
    text = ""
    for part in path:
        text += "[%d]" % part if isinstance(part, int) else ("." if text else "") + part
    return text


def numeric_fields():
    for path, model in TABLES:
        for name in model.model_fields:
            kind = scenario_doc.field_rows(model)
            row = next(r for r in kind if r[0] == name)
            if row[1] in ("number", "integer"):
                yield path, name


NUMERIC = list(numeric_fields())


def table_at(data, path):
    for part in path:
        data = data[part]
    return data


def refused(data, *names):
    with pytest.raises(scenario.ScenarioError) as info:
        scenario.validate(data, "my.toml")
    message = str(info.value)
    assert message.startswith("my.toml: ")
    assert "\n" not in message and "Traceback" not in message
    for name in names:
        assert name in message, (name, message)
    return message


def test_the_full_example_is_valid():
    loaded = scenario.validate(copy.deepcopy(FULL))
    assert loaded["device"][0]["config"]["reachability_s"] == 30
    assert loaded["device"][0]["config"]["heartbeat_s"] is None
    assert loaded["scenario"]["duration_s"] == 600 and isinstance(
        loaded["scenario"]["duration_s"], int), "integers stay integers"


def test_every_numeric_field_is_covered():
    assert len(NUMERIC) >= 45
    assert (("device", 0, "button", 0), "hold_ms") in NUMERIC
    assert (("scenario",), "seed") in NUMERIC


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**63, -2**63, True, "5"])
@pytest.mark.parametrize("path, name", NUMERIC, ids=lambda p: str(p))
def test_every_number_refuses_nan_inf_huge_bool_and_text(path, name, value):
    data = copy.deepcopy(FULL)
    table_at(data, path)[name] = value
    message = refused(data, where(path + (name,)))
    if isinstance(value, float) and not math.isfinite(value):
        assert "finite" in message or "whole number" in message


@pytest.mark.parametrize("path, model", TABLES, ids=lambda p: str(p))
def test_every_table_refuses_an_unknown_field(path, model):
    data = copy.deepcopy(FULL)
    table_at(data, path)["colour"] = "red"
    message = refused(data, where(path + ("colour",)), "unknown field")
    assert ", ".join(sorted(model.model_fields)) in message


def test_unknown_top_level_table():
    data = copy.deepcopy(FULL)
    data["devices"] = []
    refused(data, "devices", "unknown field")


@pytest.mark.parametrize("point, names", [
    ([math.nan, 5.0], ["device[0].location[0]", "finite"]),
    ([52.0, math.inf], ["device[0].location[1]", "finite"]),
    ([91.0, 5.0], ["device[0].location", "latitude"]),
    ([52.0, 5.0, 3.0], ["device[0].location", "[latitude, longitude]"]),
    ([52.0], ["device[0].location", "[latitude, longitude]"]),
])
def test_locations(point, names):
    data = copy.deepcopy(FULL)
    data["device"][0]["location"] = point
    refused(data, *names)


@pytest.mark.parametrize("waypoints, names", [
    ([[52.0, 5.0]], ["device[0].route.waypoints", "at least 2"]),
    ([[52.0, 5.0], [52.0, 5.0, math.nan]], ["device[0].route.waypoints[1][2]", "finite"]),
    ([[52.0, 5.0], [52.0, 5.0, -1]], ["device[0].route.waypoints[1]", "dwell"]),
    ([[52.0, 5.0], [52.0, 5.0, 2**63]], ["device[0].route.waypoints[1]", "dwell"]),
    ([[52.0, 5.0], [52.0, 5.0, 1, 2]], ["device[0].route.waypoints[1]"]),
])
def test_waypoints(waypoints, names):
    data = copy.deepcopy(FULL)
    data["device"][0]["route"]["waypoints"] = waypoints
    refused(data, *names)


def test_an_offender_that_no_device_names_is_an_error():
    data = copy.deepcopy(FULL)
    data["offender"].append({"id": 12, "location": [52.1, 5.0]})
    refused(data, "offender[1].id 12", "no [[device]] names this offender")
    data = copy.deepcopy(FULL)
    del data["device"][0]["offender"]
    refused(data, "offender[0].id 9")


def test_cross_field_rules_still_hold():
    data = copy.deepcopy(FULL)
    data["centre"]["alarm_m"] = 2000
    refused(data, "centre.alarm_m")
    data = copy.deepcopy(FULL)
    data["device"][0]["offender"] = 10
    refused(data, "device[0].offender 10")
    data = copy.deepcopy(FULL)
    data["device"] = []
    refused(data, "device", "at least 1")


def test_several_problems_are_still_one_line():
    data = copy.deepcopy(FULL)
    data["link"]["loss"] = math.nan
    data["centre"]["warning_m"] = -1
    refused(data, "centre.warning_m", "more problem")


@pytest.mark.parametrize("depth", [50_000, 600])
def test_a_deeply_nested_array_is_one_line(depth):
    text = '[scenario]\nname = "x"\nduration_s = 60\n[[device]]\nid = 1\n' \
           'location = ' + "[" * depth + "]" * depth + "\n"
    with pytest.raises(scenario.ScenarioError) as info:
        scenario.parse(text, "deep.toml")
    assert str(info.value).startswith("deep.toml: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "+nan", "9223372036854775808"])
def test_toml_literals_through_parse(literal):
    text = '[scenario]\nname = "x"\nduration_s = %s\n[[device]]\nid = 1\nlocation = [1, 2]\n'
    with pytest.raises(scenario.ScenarioError, match=r"scenario\.duration_s"):
        scenario.parse(text % literal, "lit.toml")


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of zeros
    with pytest.raises(scenario.ScenarioError, match="larger than"):
        scenario.load(str(big))


def test_dev_zero_is_refused_without_reading_it_all():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this system")
    with pytest.raises(scenario.ScenarioError, match="larger than"):
        scenario.load("/dev/zero")


def test_a_directory_is_one_line(tmp_path):
    with pytest.raises(scenario.ScenarioError, match="cannot read"):
        scenario.load(str(tmp_path) + "/")


# --- docs/SCENARIOS.md -------------------------------------------------------------------------
def test_the_scenarios_doc_is_up_to_date():
    assert scenario_doc.main(["--check"]) == 0, \
        "docs/SCENARIOS.md is stale: run `python -m host.scenario_doc --write`"


def test_the_check_fails_when_the_doc_is_stale(tmp_path, monkeypatch):
    stale = tmp_path / "SCENARIOS.md"
    stale.write_text(scenario_doc.render().replace("| `hold_ms` |", "| `hold` |"))
    monkeypatch.setattr(scenario_doc, "DOC_PATH", stale)
    assert scenario_doc.main(["--check"]) == 1


def test_the_doc_lists_every_field_with_type_unit_default_range_and_example():
    text = (REPO / "docs" / "SCENARIOS.md").read_text()
    for _path, model in TABLES:
        for row in scenario_doc.field_rows(model):
            name, kind, unit, default, limits, example, meaning = row
            assert "| `%s` | %s | %s | %s |" % (name, kind, unit, default) in text
            assert meaning, name
            assert example, name
            if kind in ("number", "integer"):
                assert ".." in limits, (name, limits)
                if name.endswith(("_s", "_ms", "_m", "_kmh", "_pct", "_mah")):
                    assert unit != "-", name


def test_the_docs_example_is_a_valid_scenario():
    loaded = scenario.parse(scenario_doc.EXAMPLE, "SCENARIOS.md")
    assert loaded["device"][0]["offender"] == loaded["offender"][0]["id"]
    assert scenario_doc.EXAMPLE in (REPO / "docs" / "SCENARIOS.md").read_text()


def test_the_doc_generator_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "host.scenario_doc"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == scenario_doc.render()
