"""Golden sessions (tests/golden/README.md): replayed into the current firmware they give the
recorded uplinks; a changed session or firmware behaviour is caught; --update regenerates a
session byte for byte; `vigil diff` and `vigil decode` on the same files."""
import json
import shutil
from pathlib import Path

import pytest

from host import scenario as scenarios
from host.decode import main as decode_main
from host.recording import Reader, Writer, emu, read_all
from host.recording import diff as diff_mod
from host.recording import replay as replay_mod

GOLDEN = Path(__file__).parent / "golden"
SESSIONS = sorted(GOLDEN.glob("*.pcapng"))


def test_there_are_golden_sessions():
    assert len(SESSIONS) >= 3


@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.stem)
def test_golden_session_replays_identically(path, capsys):
    assert replay_mod.main([str(path), "--to", "emu://", "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("%s: same (" % path)


def rewrite(src, dst, transform):
    """Copy a recording, passing every frame packet through transform(packet) -> [data...]."""
    reader, packets = read_all(str(src))
    with Writer(str(dst), meta=reader.meta) as writer:
        for iface in reader.interfaces:
            writer.interface(iface.name, iface.linktype, iface.description, iface.meta)
        for packet in packets:
            if packet.interface.is_stimuli:
                writer.stimulus(packet.interface.index, packet.time_ns, packet.stimulus())
                continue
            for data in transform(packet):
                writer.frame(packet.interface.index, packet.time_ns, data, packet.direction)


def _keys_file(tmp_path, path):
    meta = Reader(str(path)).meta
    sc = scenarios.load(meta["scenario_source"])
    keys = tmp_path / "keys.json"
    keys.write_text(emu.session_keys(sc, meta["seed"]).to_json())
    return str(keys)


def test_lost_acks_change_what_the_firmware_sends(tmp_path, capsys):
    """Drop the centre's ACKs: the firmware must behave differently (it retransmits)."""
    src = GOLDEN / "panic-walk.pcapng"
    dst = tmp_path / "dropped.pcapng"
    from host.keys import load_keys

    decoder = diff_mod.Decoder(load_keys(_keys_file(tmp_path, src)), check_replay=False)
    dropped = []

    def drop_acks(packet):
        if packet.direction == "down" and diff_mod._identity(packet.data, decoder)[0] == "ACK":
            dropped.append(packet)
            return []
        return [packet.data]
    rewrite(src, dst, drop_acks)
    assert dropped
    assert replay_mod.main([str(dst), "--to", "emu://", "--check"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT" in out
    assert "only in" in out or "differs" in out or "moved" in out


def test_a_changed_uplink_is_a_difference_named_by_field(tmp_path, capsys):
    src = GOLDEN / "panic-walk.pcapng"
    dst = tmp_path / "changed.pcapng"
    keys = _keys_file(tmp_path, src)
    from host.keys import load_keys
    from protocol import host_fast

    store = load_keys(keys)
    sender = host_fast.FastSender(1003, 0, store.get(1003, 0))
    changed = []

    def bump_heartbeat(packet):
        result = diff_mod._identity(packet.data, diff_mod.Decoder(store, check_replay=False))
        if not changed and result[0] == "HEARTBEAT":
            fields = dict(result[2]["fields"], battery_mv=result[2]["fields"]["battery_mv"] + 1)
            changed.append(result[1])
            return [sender.seal("HEARTBEAT", fields, counter=result[1])]
        return [packet.data]
    rewrite(src, dst, bump_heartbeat)
    assert changed
    assert replay_mod.main([str(dst), "--to", "emu://", "--check"]) == 1
    out = capsys.readouterr().out
    assert "differs:   up dev=1003 HEARTBEAT ctr=%d" % changed[0] in out
    assert "battery_mv" in out
    # vigil diff says the same, and exits 1; a file against itself is the same (0).
    assert diff_mod.main([str(src), str(dst), "--key-file", keys]) == 1
    out = capsys.readouterr().out
    assert "HEARTBEAT ctr=%d" % changed[0] in out and "battery_mv" in out
    assert out.splitlines()[-1].startswith("DIFFERENT:")
    assert diff_mod.main([str(src), str(src)]) == 0
    assert capsys.readouterr().out.startswith("same:")


def test_diff_reports_frames_only_in_one_session(tmp_path, capsys):
    src = GOLDEN / "panic-walk.pcapng"
    dst = tmp_path / "fewer.pcapng"
    _reader, packets = read_all(str(src))
    last_up = [p for p in packets if p.direction == "up"][-1]
    rewrite(src, dst, lambda p: [] if p.offset == last_up.offset else [p.data])
    assert diff_mod.main([str(src), str(dst)]) == 1
    out = capsys.readouterr().out
    assert "only in A: up dev=1003" in out


def test_update_regenerates_the_same_bytes(tmp_path, capsys):
    src = GOLDEN / "offender-approach.pcapng"
    copy = tmp_path / "copy.pcapng"
    shutil.copy(src, copy)
    copy.write_bytes(copy.read_bytes()[:2000])  # a damaged file is re-recorded whole
    assert replay_mod.main([str(copy), "--to", "emu://", "--update"]) == 0
    assert "re-recorded" in capsys.readouterr().out
    assert copy.read_bytes() == src.read_bytes()


def test_a_changed_scenario_is_refused_in_one_line(tmp_path, capsys):
    src = GOLDEN / "panic-walk.pcapng"
    dst = tmp_path / "other.pcapng"
    reader, packets = read_all(str(src))
    meta = dict(reader.meta, scenario_sha256="0" * 64)
    with Writer(str(dst), meta=meta) as writer:
        for iface in reader.interfaces:
            writer.interface(iface.name, iface.linktype, iface.description, iface.meta)
    assert replay_mod.main([str(dst), "--to", "emu://", "--check"]) == 2
    err = capsys.readouterr().err
    assert "has changed since it was recorded" in err and len(err.strip().splitlines()) == 1


def test_decode_of_a_golden_session_with_its_keys(tmp_path, capsys):
    src = GOLDEN / "lossy-link.pcapng"
    keys = _keys_file(tmp_path, src)
    code = decode_main([str(src), "--json", "--key-file", keys])
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    frames = [r for r in results if r.get("kind") != "stimulus"]
    statuses = {r["status"] for r in frames}
    # A lossy link corrupts some frames (bad_crc) and duplicates others (retransmissions).
    assert "ok" in statuses and "retransmission" in statuses
    invalid = [r for r in frames if r["status"] == "invalid"]
    assert all(r["reason"] in ("bad_crc", "bad_cobs", "bad_tag", "truncated")
               for r in invalid), invalid[:3]
    assert code == (1 if invalid else 0)
    assert all(r["time"].startswith("20") and r["time"].endswith("Z") for r in results)
    assert any(r.get("kind") == "stimulus" and r["stimulus"]["kind"] == "button"
               for r in results)
