"""The vigil HIL pytest plugin (entry point `pytest11`: vigil_hil).

    pytest hil/tests --vigil-board=emu          # default; also pty, serial:CONSOLE,LINK,
                                                # rfc2217:HOST:PORT, labgrid:PLACE, board.toml
Fixtures: `dut` (a fresh board per test, linked: its HELLO answered), `centre` (the rig's
host.centre.Centre), `clock` (the rig's clock: virtual on emulated boards, wall time on
real ones).

Markers: needs_gps, needs_ble, needs_power, needs_battery, needs_button, needs_outputs,
needs_deep_sleep, needs_safe_mode, needs_wake_line (the peer can wake the device: LINK_WAKE),
needs_button_line (a wire on the button itself, a relay or the emulator's pin, not a
TEST_INJECT press): a test whose board lacks the capability is skipped, and the skip says
which board lacks what. `waits_for_main(reason)`: behaviour the lead's issue-7 firmware provides;
until it has landed the test is an expected failure with that reason.

Reports: when --vigil-board is given, a JUnit file goes to --vigil-report (default
hil-report/junit.xml) unless --junitxml names one; each failing test leaves
<report dir>/<test>/traffic.jsonl (every uplink and downlink, time, hex, decoded),
traffic.pcapng (the same frames as on the wire, refused ones too, for `vigil decode` and
Wireshark; times on the rig's clock), console.log and, for an emulated board, report.html
(the session report, host.report) next to it.
"""
import json
import re
from pathlib import Path

import pytest

from hil import board as boards

CAPABILITY_MARKERS = {
    "needs_gps": "gps",
    "needs_ble": "ble",
    "needs_power": "power",
    "needs_battery": "battery",
    "needs_button": "button",
    "needs_button_line": "button_line",
    "needs_outputs": "outputs",
    "needs_deep_sleep": "deep_sleep",
    "needs_safe_mode": "safe_mode",
    # The peer can wake the device (LINK_WAKE, docs/LINK.md). A BLE board has none: it is
    # reachable only in its own listen windows.
    "needs_wake_line": "wake_line",
}


def pytest_addoption(parser):
    group = parser.getgroup("vigil", "vigil HIL rig")
    group.addoption("--vigil-board", default=None,
                    help="emu (default) | pty | ble | ble:NAME-or-ADDRESS | "
                         "serial:CONSOLE,LINK | rfc2217:HOST:PORT | "
                         "labgrid:PLACE | path/to/board.toml")
    group.addoption("--vigil-seed", type=int, default=0, help="seed of emulated boards")
    group.addoption("--vigil-test-keys", default=None,
                    help="bench boards' test keys for TEST_INJECT (vigil provision --test-key)")
    group.addoption("--vigil-report", default="hil-report",
                    help="directory for the JUnit file and failing tests' traffic and logs")


def pytest_configure(config):
    for marker, capability in CAPABILITY_MARKERS.items():
        config.addinivalue_line("markers", "%s: skip unless the board has %s"
                                % (marker, capability))
    config.addinivalue_line("markers", "waits_for_main(reason): needs the lead's issue-7 "
                                       "firmware; an expected failure until it lands")
    if config.getoption("--vigil-board") and not getattr(config.option, "xmlpath", None):
        report = Path(config.getoption("--vigil-report"))
        report.mkdir(parents=True, exist_ok=True)
        config.option.xmlpath = str(report / "junit.xml")


def board_spec(config):
    return config.getoption("--vigil-board") or "emu"


def capabilities(spec):
    """What a --vigil-board spec's board can do, known before it is opened."""
    from hil.rig import parse_spec

    kind, arg = parse_spec(spec)
    if kind in ("emu", "pty"):
        found = boards.load(kind)
        return found.name, set(found.capabilities) | {"outputs", "deep_sleep", "wake_line",
                                                      "button_line"}
    if kind == "ble" and not arg:
        found = boards.load(kind)
        return found.name, set(found.capabilities) | {"outputs", "deep_sleep", "button_line"}
    if kind == "ble":
        found = boards.load("ble")
        return "ble:%s" % arg, {"ble"}           # a real board: only its link is known
    if kind == "toml":
        found = boards.load(arg)
        return found.name, set(found.capabilities) | _wake_line(found)
    found = boards.load("devkitc-bench")
    return "%s (%s)" % (spec, found.name), set(found.capabilities) | _wake_line(found)


def _wake_line(board):
    return {"wake_line"} if board.wake != "none" else set()


def _skip_for_capabilities(item, spec):
    name, have = capabilities(spec)
    for marker, capability in CAPABILITY_MARKERS.items():
        if item.get_closest_marker(marker) and capability not in have:
            pytest.skip("board %s has no %s (it has: %s)"
                        % (name, capability, ", ".join(sorted(have)) or "nothing"))


@pytest.fixture
def dut(request):
    from hil.rig import open_dut

    spec = board_spec(request.config)
    _skip_for_capabilities(request.node, spec)
    instance = open_dut(spec, seed=request.config.getoption("--vigil-seed"),
                        test_keys=request.config.getoption("--vigil-test-keys"))
    request.node._vigil_dut = instance
    yield instance
    instance.close()


@pytest.fixture
def centre(dut):
    return dut.centre


@pytest.fixture
def clock(dut):
    return dut.clock


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("waits_for_main")
        if marker is not None:
            reason = marker.args[0] if marker.args else "waits for the issue-7 firmware on main"
            item.add_marker(pytest.mark.xfail(reason="waits for main: " + reason, strict=False))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    dut_ = getattr(item, "_vigil_dut", None)
    if dut_ is None or not report.failed or not item.config.getoption("--vigil-board"):
        return
    try:
        folder = Path(item.config.getoption("--vigil-report")) / re.sub(r"[^\w.-]+", "_",
                                                                       item.nodeid)
        write_artifacts(dut_, folder)
        report.sections.append(("vigil", "traffic and console log in %s" % folder))
    except Exception as e:  # noqa: BLE001 - a report problem must not hide the failure
        report.sections.append(("vigil", "could not write the traffic report: %s" % e))


def write_artifacts(dut_, folder):
    """traffic.jsonl (uplinks as decoded frames, downlinks as hex) and console.log."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"t_ms": round(t, 3), "dir": "up", "type": f.name, "counter": f.counter,
             "fields": f.fields, "historic": f.historic} for t, f in dut_.frames]
    rows += [{"t_ms": round(t, 3), "dir": "down", "hex": wire.hex()} for t, wire in dut_.downlinks]
    rows += [{"t_ms": round(t, 3), "dir": "up", "refused": reason} for t, reason in dut_.refused]
    rows.sort(key=lambda r: r["t_ms"])
    with open(folder / "traffic.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=repr) + "\n")
    try:
        lines = dut_.log
    except NotImplementedError:
        lines = ["(this board has no console driver)"]
    (folder / "console.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_pcapng(dut_, folder / "traffic.pcapng")
    world = _emulated_world(dut_)
    if world is not None:
        # The session report (host.report) of an emulated board's run, next to its traffic.
        from host.report import write_report
        write_report(list(world.trace), folder / "report.html")
    return folder


def write_pcapng(dut_, path):
    """The frames the dut's link moved, as a vigil recording (host/recording): the rig's
    clock from the UTC the rig started at. The device key is not written next to it."""
    from host.recording import Writer
    from host.recording.emu import firmware_version
    from protocol import messages

    virtual = bool(getattr(dut_.clock, "virtual", False))
    meta = {"clock": "virtual" if virtual else "wall", "epoch_utc_ms": dut_.utc0_ms,
            "firmware": firmware_version(), "schema_hash": messages.SCHEMA_HASH,
            "devices": [dut_.device_id], "transport": dut_.link.url, "source": "hil"}
    with Writer(str(path), meta=meta) as writer:
        link = writer.interface("dev%d" % dut_.device_id, description="vigil link %s"
                                % dut_.link.url, meta={"device_id": dut_.device_id,
                                                       "transport": dut_.link.url})
        for t_ms, direction, wire in dut_.wire:
            writer.frame(link, int(round((dut_.utc0_ms + t_ms) * 1_000_000)), wire, direction)
    return path


def _emulated_world(dut_):
    """The World behind an emulated board's drivers, or None (a real board has none)."""
    for driver in getattr(dut_, "drivers", {}).values():
        device = getattr(driver, "device", None)
        world = getattr(device, "world", None)
        if world is not None and hasattr(world, "trace"):
            return world
    return None
