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


GPX = """<?xml version="1.0"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
<trkpt lat="52.0907" lon="5.1214"/><trkpt lat="52.0950" lon="5.1250"/>
</trkseg></trk></gpx>
"""


def test_a_route_from_a_gpx_file_next_to_the_scenario(tmp_path):
    (tmp_path / "walk.gpx").write_text(GPX)
    path = tmp_path / "walk.toml"
    path.write_text(VALID + 'route = { gpx = "walk.gpx", speed_kmh = 5.0 }\n')
    loaded = scenario.load(str(path))
    assert loaded["device"][0]["route"]["gpx"] == str(tmp_path / "walk.gpx")
    from host import emulate
    summary, _timeline = emulate.run(loaded)
    assert summary["crashes"] == 0 and summary["frames_up"] > 0


@pytest.mark.parametrize("route, message", [
    ('route = { speed_kmh = 5.0 }', "needs either waypoints or gpx"),
    ('route = { gpx = "missing.gpx" }', "no such file"),
    ('route = { gpx = "bad.gpx" }', "not valid XML"),
])
def test_bad_gpx_routes_are_one_line_errors(tmp_path, route, message):
    (tmp_path / "bad.gpx").write_text("<gpx><trk>")
    path = tmp_path / "s.toml"
    path.write_text(VALID + route + "\n")
    with pytest.raises(scenario.ScenarioError, match=message) as info:
        scenario.load(str(path))
    assert "\n" not in str(info.value) and "device[0].route" in str(info.value)


def test_a_waypoint_can_dwell_before_the_route_goes_on():
    from host import emulate

    loaded = scenario.parse(VALID + 'route = { speed_kmh = 3.6, waypoints = '
                            '[[52.0, 5.0], [52.001, 5.0, 600], [52.0, 5.0]] }\n')
    route = emulate._route(loaded["device"][0]["route"], loaded["device"][0]["location"])
    leg_s = 111.2                                   # 0.001 degree of latitude at 1 m/s
    there = route.at((leg_s + 300) * 1000)
    assert there[:2] == (52.001, 5.0) and there[3] == 0.0, "standing still while dwelling"
    back = route.at((leg_s + 600 + 50) * 1000)
    assert 52.0 < back[0] < 52.001 and back[3] > 0, "moving again after the dwell"
    with pytest.raises(scenario.ScenarioError, match="dwell in seconds"):
        scenario.parse(VALID + 'route = { waypoints = [[52.0, 5.0], [52.001, 5.0, -1]] }\n',
                       "my.toml")
