"""`vigil report RUN.pcapng [--key-file F] -o report.html` (issue 14 reading issue 13's
recordings): the report of a recorded session, with the numbers `vigil emulate --json` gave
for the same run, and without keys nothing the wire does not show in the clear."""
import json
import re

import pytest

from host import cli, emulate
from host import scenario as scenarios
from host.recording import read_all
from host.report.recording import records_of_recording


@pytest.fixture(scope="module")
def panic_walk(tmp_path_factory):
    out = tmp_path_factory.mktemp("panic-walk")
    record, keys = out / "run.pcapng", out / "keys.json"
    sc = scenarios.load("panic-walk")
    summary, _timeline = emulate.run(sc, record_path=str(record))
    from host.recording import emu

    keys.write_text(emu.session_keys(sc, sc["scenario"]["seed"]).to_json())
    return summary, record, keys


def _report(argv, capsys):
    code = cli.main(["report"] + argv)
    return code, capsys.readouterr().err


def _summary(page):
    m = re.search(r'<script type="application/json" id="summary-json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_report_of_a_recording_has_the_runs_json_numbers(panic_walk, tmp_path, capsys):
    summary, record, keys = panic_walk
    out = tmp_path / "r.html"
    code, err = _report([str(record), "--key-file", str(keys), "-o", str(out)], capsys)
    assert code == 0, err
    page = out.read_text()
    shown = _summary(page)
    for key in ("frames_up", "frames_down", "alarms_raised", "alarms_acked", "devices"):
        assert shown[key] == summary[key], key
    assert summary["alarms_raised"] == summary["alarms_acked"] == 1
    # the map has the victim's fixes and the alarm; the timeline the press and the alarm
    assert re.search(r"0 tracks, [1-9][0-9]* fix dots, 0 rings, 1 markers", page), \
        re.findall(r"\d+ tracks[^<]*", page)
    assert "button held 2.0 s" in page and "alarm raised 1" in page
    assert "decrypted with the device keys" in page
    # the same file twice gives the same bytes
    again = tmp_path / "again.html"
    assert _report([str(record), "--key-file", str(keys), "-o", str(again)], capsys)[0] == 0
    assert again.read_bytes() == out.read_bytes()


def test_without_keys_the_report_shows_only_the_routing_headers(panic_walk, tmp_path, capsys):
    summary, record, _keys = panic_walk
    out = tmp_path / "r.html"
    assert _report([str(record), "-o", str(out)], capsys)[0] == 0
    page = out.read_text()
    shown = _summary(page)
    assert (shown["frames_up"], shown["frames_down"]) == (summary["frames_up"],
                                                          summary["frames_down"])
    assert shown["alarms_raised"] == 0  # sealed: an eavesdropper cannot tell an alarm
    assert "without keys" in page and "This trace holds no positions" in page
    victim = [p for p in scenarios.load("panic-walk")["device"]][0]
    assert victim["id"] in [int(d) for d in re.findall(r"device (\d+)", page)]


def test_a_recording_cut_short_reports_what_came_before(panic_walk, tmp_path, capsys):
    _summary_, record, keys = panic_walk
    data = record.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:len(data) * 2 // 3 + 5])
    reader, packets = read_all(str(cut))
    assert reader.error and packets
    records = records_of_recording(str(cut))
    frames = [r for r in records if r["kind"] in ("uplink", "downlink")]
    assert len(frames) == sum(not p.interface.is_stimuli for p in packets)
    out = tmp_path / "r.html"
    assert _report([str(cut), "--key-file", str(keys), "-o", str(out)], capsys)[0] == 0
    assert "the file is cut short" in out.read_text()


def test_report_of_a_recording_errors_are_one_line(panic_walk, tmp_path, capsys):
    _summary_, record, keys = panic_walk
    bad_keys = tmp_path / "bad.json"
    bad_keys.write_text("not json")
    code, err = _report([str(record), "--key-file", str(bad_keys), "-o",
                         str(tmp_path / "r.html")], capsys)
    assert code == 2 and err.count("\n") == 1 and "--key-file" in err
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"t_ms": 0, "device": 1, "kind": "boot", "detail": "power_on"}\n')
    code, err = _report([str(trace), "--key-file", str(keys), "-o", str(tmp_path / "r.html")],
                        capsys)
    assert code == 2 and err.count("\n") == 1 and "not pcapng" in err
    empty = tmp_path / "empty.pcapng"
    empty.write_bytes(record.read_bytes()[:40])
    code, err = _report([str(empty), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
