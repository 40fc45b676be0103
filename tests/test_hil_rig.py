"""The rig's own layers, with fakes: board descriptions, the strategy, the plugin's
capability skips and board specs, and `vigil device`'s one-line errors."""
import pytest

from hil import board as boards
from hil import drivers
from hil.plugin import capabilities
from hil.rig import RigError, parse_spec
from hil.strategy import STATES, Strategy, StrategyError
from protocol import codec


def test_builtin_boards_load():
    for name in ("emu", "pty", "devkitc-bench"):
        b = boards.load(name)
        assert b.name == name and b.device_id == 1004
    assert boards.load("devkitc-bench").wake == "rts"


@pytest.mark.parametrize("text, words", [
    ("[board]\nname='x'\n", "[board] needs name and kind"),
    ("[board]\nname='x'\nkind='usb'\n", "board.kind 'usb' is not one of"),
    ("[board]\nname='x'\nkind='emu'\ncapabilities=['lasers']\n", "unknown 'lasers'"),
    ("[board]\nname='x'\nkind='emu'\n[link]\nwake='dtr'\n", "link.wake 'dtr'"),
    ("[board]\nname='x'\nkind='emu'\ndevice_id='7'\n", "board.device_id must be a int"),
    ("[board]\nname='x'\nkind='emu'\n[lab]\n", "unknown table [lab]"),
    ("[board\n", "not TOML"),
])
def test_bad_board_files_are_one_line(text, words):
    with pytest.raises(boards.BoardError) as info:
        boards.parse(text, "b.toml")
    assert words in str(info.value) and str(info.value).startswith("b.toml: ")
    assert "\n" not in str(info.value)


def test_missing_board_file(tmp_path):
    with pytest.raises(boards.BoardError, match="nope.toml"):
        boards.load(tmp_path / "nope.toml")


def test_strategy_walks_each_state_once_in_order():
    done = []
    steps = {s: (lambda s=s: done.append(s)) for s in STATES[1:]}
    strategy = Strategy(steps)
    assert strategy.transition("provisioned") == "provisioned"
    assert done == ["flashed", "deployed", "provisioned"]
    strategy.transition("linked")
    strategy.transition("booted")          # already past it: nothing runs again
    assert done == list(STATES[1:])
    strategy.fall_back("provisioned")      # a power cut
    strategy.transition("linked")
    assert done[-2:] == ["booted", "linked"]


def test_strategy_failure_keeps_the_last_state():
    def fail():
        raise OSError("no port\nat all")
    strategy = Strategy({"flashed": lambda: None, "deployed": fail})
    with pytest.raises(StrategyError) as info:
        strategy.transition("linked")
    assert strategy.state == "flashed"
    assert str(info.value) == "flashed -> deployed failed: no port at all"
    with pytest.raises(StrategyError):
        strategy.transition("asleep")


def test_fakes_record_calls():
    button, power, gps = drivers.FakeButton(), drivers.FakePower(), drivers.FakeGps()
    button.press(2000)
    power.cut()
    power.reset()
    gps.set_route([(52.0, 5.0)], 4.0, False)
    assert button.calls == [("press", (2000,))]
    assert [c[0] for c in power.calls] == ["cut", "reset"]
    assert gps.calls == [("set_route", ([(52.0, 5.0)], 4.0, False))]
    outputs = drivers.FakeOutputs({"haptic": [(10.0, 300.0), (900.0, 100.0)]})
    assert outputs.pulses("haptic", 500) == [(900.0, 100.0)]


def test_board_specs():
    assert parse_spec("emu") == ("emu", "")
    assert parse_spec("serial:/dev/ttyUSB0,/dev/ttyUSB1") == ("serial", "/dev/ttyUSB0,/dev/ttyUSB1")
    assert parse_spec("rfc2217:lab:4000") == ("rfc2217", "lab:4000")
    assert parse_spec("labgrid:bench-3") == ("labgrid", "bench-3")
    for bad in ("serial:/dev/ttyUSB0", "wifi", "labgrid:"):
        with pytest.raises(RigError):
            parse_spec(bad)


def test_capabilities_decide_the_skips():
    name, have = capabilities("emu")
    assert {"gps", "button", "power", "outputs"} <= have and "ble" not in have
    name, have = capabilities("serial:/dev/a,/dev/b")
    assert "power" not in have and "devkitc-bench" in name
    assert "wake_line" in capabilities("emu")[1] and "wake_line" in capabilities("pty")[1]
    assert "wake_line" in have                       # the bench adapter's RTS
    name, have = capabilities("ble")
    assert "ble" in have and "wake_line" not in have   # reached in its listen windows only
    name, have = capabilities("ble:AA:BB:CC:DD:EE:FF")
    assert have == {"ble"} and name == "ble:AA:BB:CC:DD:EE:FF"


def test_ble_board_specs_parse():
    assert parse_spec("ble") == ("ble", "")
    assert parse_spec("ble:vigil-1004") == ("ble", "vigil-1004")
    assert parse_spec("ble:AA:BB:CC:DD:EE:FF") == ("ble", "AA:BB:CC:DD:EE:FF")
    with pytest.raises(RigError):
        parse_spec("ble:")


@pytest.mark.skipif(__import__("os").path.exists("/run/dbus/system_bus_socket"),
                    reason="a system D-Bus is here: BlueZ may have an adapter to scan with")
def test_a_real_ble_board_without_an_adapter_is_one_line():
    pytest.importorskip("bleak")
    from hil.rig import open_dut

    with pytest.raises(RigError) as e:
        open_dut("ble:AA:BB:CC:DD:EE:FF")
    text = str(e.value)
    assert "ble:AA:BB:CC:DD:EE:FF" in text and "no Bluetooth adapter" in text
    assert "\n" not in text


@pytest.mark.parametrize("argv, words", [
    (["--listen", "tcp"], "only pty"),
    (["--listen", "pty", "--runtime", "micropython"], "--runtime micropython"),
    (["--listen", "pty", "--clock", "fast"], "--clock fast"),
    (["--listen", "pty", "--scenario", "no-such-scenario"], "no-such-scenario"),
])
def test_vigil_device_errors_are_one_line(argv, words, capsys):
    from host import cli

    assert cli.main(["device"] + argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_failing_tests_artifacts_include_the_session_report(tmp_path):
    from hil.plugin import write_artifacts
    from hil.rig import open_dut

    dut = open_dut("emu", seed=3)
    try:
        dut.press_button(2500)
        dut.wait(20_000)
        folder = write_artifacts(dut, tmp_path / "failing_test")
    finally:
        dut.close()
    page = (folder / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert (folder / "traffic.jsonl").read_text().strip()
    assert (folder / "console.log").exists()
    # traffic.pcapng: the link's frames on the wire, both ways, on the rig's (virtual) clock
    from host.recording import read_all

    reader, packets = read_all(str(folder / "traffic.pcapng"))
    assert reader.error is None and reader.meta["clock"] == "virtual"
    assert reader.meta["devices"] == [dut.device_id]
    assert [(p.direction, p.data) for p in packets] == [(d, w) for _t, d, w in dut.wire]
    ring = codec.Keyring()
    ring.add(dut.device_id, 0, dut.key)
    names = {(p.direction, f.name) for p in packets for f in codec.Receiver(
        ring, downlink=p.direction == "down", check_replay=False).feed(p.data)
        if hasattr(f, "fields")}
    assert {("up", "HELLO"), ("up", "ALARM"), ("down", "ACK")} <= names
    times = [p.time_ns for p in packets]
    assert times == sorted(times) and times[0] >= dut.utc0_ms * 1_000_000
