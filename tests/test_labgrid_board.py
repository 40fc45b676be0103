"""--vigil-board=labgrid:PLACE (hil/labgrid_board.py) and `make hil-labgrid`'s runner
(hil/labgrid_ci.py): the parts that need no exporter. The whole path, coordinator, exporter,
ser2net and part of the HIL suite, runs in `make hil-labgrid`."""
import subprocess
import time

import pytest

from hil import labgrid_ci
from hil.rig import RigError, open_dut

labgrid = pytest.importorskip("labgrid", reason="labgrid is not installed (extra 'labgrid')")


def test_an_unreachable_coordinator_is_one_line(monkeypatch):
    monkeypatch.setenv("LG_COORDINATOR", "127.0.0.1:1")
    start = time.monotonic()
    with pytest.raises(RigError) as err:
        open_dut("labgrid:bench-3")
    assert time.monotonic() - start < 30
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("labgrid coordinator 127.0.0.1:1:")


@pytest.fixture
def coordinator(tmp_path):
    farm = labgrid_ci.Farm(tmp_path)
    farm._start("coordinator", [labgrid_ci._tool("labgrid-coordinator"), "-l", farm.address],
                cwd=str(tmp_path))
    deadline = time.monotonic() + 30
    while subprocess.run([labgrid_ci._tool("labgrid-client"), "-x", farm.address, "places"],
                         capture_output=True).returncode:
        assert time.monotonic() < deadline, (tmp_path / "coordinator.log").read_text()
        time.sleep(0.3)
    yield farm
    farm.stop()


def test_an_unknown_place_or_one_without_resources_is_one_line(coordinator, monkeypatch):
    monkeypatch.setenv("LG_COORDINATOR", coordinator.address)
    with pytest.raises(RigError, match=r"^labgrid place nowhere: .*matches nothing"):
        open_dut("labgrid:nowhere")
    coordinator.client("-p", "empty", "create")
    with pytest.raises(RigError) as err:
        open_dut("labgrid:empty")
    assert str(err.value) == ("labgrid place empty: the place matches no resources "
                              "(labgrid-client add-match)")
    # a failed open released the place: the next one fails the same way, not "acquired"
    with pytest.raises(RigError) as again:
        open_dut("labgrid:empty")
    assert str(again.value) == str(err.value)


def test_a_place_without_a_console_or_link_names_what_it_has():
    from hil.labgrid_board import LabgridPlace

    place = object.__new__(LabgridPlace)
    place.name = "bench-3"
    place.resources = {"link": ("NetworkSerialPort", {"host": "10.0.0.7", "port": 4001}, True),
                       "power": ("NetworkPowerPort", {}, True)}
    assert place.url("link") == "rfc2217://10.0.0.7:4001?ign_set_control"
    with pytest.raises(RigError, match="no NetworkSerialPort named 'console' "
                                       r"\(it has: link NetworkSerialPort, power NetworkPowerPort\)"):
        place.url("console")


def test_the_runner_skips_with_the_reason_but_fails_under_ci(monkeypatch, capsys):
    monkeypatch.setattr(labgrid_ci, "missing", lambda: "ser2net is not installed")
    monkeypatch.delenv("CI", raising=False)
    assert labgrid_ci.main([]) == 0
    assert capsys.readouterr().out.strip() == "hil-labgrid: skipped: ser2net is not installed"
    monkeypatch.setenv("CI", "true")
    assert labgrid_ci.main([]) == 1
    assert "ser2net is not installed (CI must have it)" in capsys.readouterr().err
