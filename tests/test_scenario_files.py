"""Scenario files: built-ins validate, and every kind of mistake is one clear line."""
import pytest

from host import scenario

VALID = """
[scenario]
name = "t"
duration_s = 60

[[device]]
id = 7
location = [52.0, 5.0]
"""


@pytest.mark.parametrize("name", scenario.builtin_names())
def test_builtin_scenarios_validate(name):
    loaded = scenario.load(name)
    assert loaded["scenario"]["name"] == name
    assert loaded["device"], "every built-in has a device"


def test_builtins_cover_the_issue_list():
    assert {"quiet-day", "commute", "panic-walk", "offender-approach", "lossy-link",
            "low-battery", "indoor-no-fix"} <= set(scenario.builtin_names())


def test_defaults_are_filled_in():
    loaded = scenario.parse(VALID)
    assert loaded["scenario"]["seed"] == 1
    assert loaded["link"]["loss"] == 0.0
    assert loaded["device"][0]["battery_pct"] == 90
    assert loaded["centre"]["warning_m"] == 1000


@pytest.mark.parametrize("edit, field", [
    (VALID.replace("duration_s = 60", "duration_s = -1"), "scenario.duration_s"),
    (VALID.replace("id = 7", "id = 'seven'"), "device[0].id"),
    (VALID.replace("location = [52.0, 5.0]", "location = [95.0, 5.0]"), "device[0].location"),
    (VALID + "colour = 'red'\n", "device[0].colour"),
    (VALID.replace('name = "t"\n', ""), "scenario.name"),
    (VALID + "\n[link]\nloss = 1.5\n", "link.loss"),
    (VALID.replace("id = 7", "id = 7\noffender = 3"), "device[0].offender"),
    (VALID + "\n[[device]]\nid = 7\nlocation = [1, 1]\n", "device[1].id"),
    ("[scenario\n", "not valid TOML"),
])
def test_bad_files_get_one_line_naming_file_and_field(edit, field):
    with pytest.raises(scenario.ScenarioError) as info:
        scenario.parse(edit, "my.toml")
    message = str(info.value)
    assert message.startswith("my.toml: ")
    assert field in message
    assert "\n" not in message


def test_missing_file_and_unknown_builtin(tmp_path):
    with pytest.raises(scenario.ScenarioError, match="cannot read"):
        scenario.load(str(tmp_path / "nope.toml"))
    with pytest.raises(scenario.ScenarioError, match="no such built-in"):
        scenario.load("no-such-scenario")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(scenario.ScenarioError, match="UTF-8"):
        scenario.load(str(binary))
