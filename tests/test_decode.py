"""`vigil decode` through `host.decode.main(argv)`: lines, JSON, exit codes, and no traceback
or hang on any input."""
import io
import json
import os
import tempfile

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from host import decode
from protocol import codec, host_make_vectors, host_tables

VECTORS = json.loads(host_make_vectors.VECTORS_PATH.read_text())
# Device 1's frames: their counters rise in each direction, so none is a replay of another.
GOOD = [f for f in VECTORS["frames"] if f["device_id"] == 1 and f["message"] != "TEST_INJECT"]
GOOD_WIRES = [bytes.fromhex(f["wire"]) for f in GOOD]


def _write(directory, name, data):
    path = os.path.join(directory, name)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def _keys(directory):
    return _write(directory, "keys.json", json.dumps(VECTORS["keys"]))


def test_valid_stream_exits_0_with_one_line_per_frame(tmp_path, capsys):
    path = _write(tmp_path, "capture.bin", b"".join(GOOD_WIRES))
    assert decode.main([path, "--key-file", _keys(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(GOOD_WIRES)
    assert all(line.endswith("[tag verified]") for line in lines)
    assert lines[0].startswith("#1 @0 HELLO up dev=1 key=1 ctr=1")


def test_json_lines_carry_fields(tmp_path, capsys):
    path = _write(tmp_path, "capture.bin", b"".join(GOOD_WIRES))
    assert decode.main([path, "--json", "--key-file", _keys(tmp_path)]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["fields"] for o in objects] == [f["fields"] for f in GOOD]
    assert [o["counter"] for o in objects] == [f["counter"] for f in GOOD]
    assert {o["tag"] for o in objects} == {"verified"}


def test_bad_frames_name_their_reason_and_exit_1(tmp_path, capsys):
    keys = _keys(tmp_path)
    # decode opens each frame with the receiver of the direction its flag names, so a good
    # downlink is not "wrong_direction" there, and TEST_INJECT needs --test-mode.
    # The same bytes twice are a retransmission, not a replay (test below).
    skip = {"wrong-direction", "test-only", "replayed"}
    for vector in VECTORS["bad_frames"]:
        if vector["name"] in skip:
            continue
        data = b"".join(bytes.fromhex(p) for p in vector["prior"]) + bytes.fromhex(vector["wire"])
        path = _write(tmp_path, "bad.bin", data)
        assert decode.main([path, "--json", "--key-file", keys]) == 1, vector["name"]
        last = json.loads(capsys.readouterr().out.splitlines()[-1])
        expected = vector["reason"]
        assert (last["ok"], last["reason"]) == (False, expected), vector["name"]


def test_text_names_the_reason(tmp_path, capsys):
    data = bytes.fromhex(VECTORS["bad_frames"][0]["wire"]) + GOOD_WIRES[0] + b"\x05\x01"
    path = _write(tmp_path, "mixed.bin", data)
    assert decode.main([path, "--key-file", _keys(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "INVALID bad_crc" in lines[0]
    assert "HELLO" in lines[1]
    assert "INVALID truncated" in lines[2]


def test_without_keys_the_tag_is_unverified(tmp_path, capsys):
    path = _write(tmp_path, "capture.bin", b"".join(GOOD_WIRES))
    assert decode.main([path, "--json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {o["tag"] for o in objects} == {"unverified"}
    # Protocol v2 seals the type and every payload: without a key only routing shows.
    assert {o["name"] for o in objects} == {"SEALED"}
    assert {o["fields"] is None for o in objects} == {True}
    assert all(o["device_id"] >= 0 and o["counter"] > 0 for o in objects)


def test_hex_lines(tmp_path, capsys):
    text = "# two frames\n%s\n  %s  \n" % (GOOD_WIRES[0].hex(), GOOD_WIRES[1][:-1].hex(" "))
    path = _write(tmp_path, "frames.hex", text)
    assert decode.main([path, "--hex", "--key-file", _keys(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_unusable_input_exits_2_with_one_line(tmp_path, capsys):
    keys = _keys(tmp_path)
    cases = [
        [str(tmp_path / "missing.bin")],
        [str(tmp_path)],  # a directory
        [_write(tmp_path, "x.hex", "00zz\n"), "--hex"],
        [_write(tmp_path, "y.hex", b"\xff\xfe\n"), "--hex"],
        [_write(tmp_path, "ok.bin", GOOD_WIRES[0]), "--key-file", str(tmp_path / "nokeys")],
        [_write(tmp_path, "ok.bin", GOOD_WIRES[0]), "--key-file",
         _write(tmp_path, "k1", b"\x00\xa2garbage")],
        [_write(tmp_path, "ok.bin", GOOD_WIRES[0]), "--key-file", _write(tmp_path, "k2", "{}")],
    ]
    for argv in cases:
        assert decode.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1, captured.err
        assert "Traceback" not in captured.err
    assert decode.main(["--no-such-option"]) == 2
    assert keys


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(st.lists(st.sampled_from(GOOD_WIRES) | st.binary(max_size=300), max_size=6),
       st.booleans(), st.booleans(), st.booleans())
def test_any_input_gives_lines_and_0_or_1(capsys, parts, as_hex, as_json, keyed):
    data = b"".join(parts)
    # Bytes that open with pcapng's magic are a recording, not a raw capture: a broken one
    # is a one-line error (test_a_truncated_recording_is_one_line_and_exit_1).
    assume(as_hex or not data.startswith(decode.PCAPNG_MAGIC))
    with tempfile.TemporaryDirectory() as directory:
        argv = []
        if as_hex:
            argv.append("--hex")
            path = _write(directory, "in.hex", data.hex() + "\n" if data else "")
        else:
            path = _write(directory, "in.bin", data)
        argv.append(path)
        if as_json:
            argv.append("--json")
        if keyed:
            argv += ["--key-file", _keys(directory)]
        capsys.readouterr()
        code = decode.main(argv)
    out = capsys.readouterr().out.splitlines()
    assert code in (0, 1)
    assert (code == 1) == any(
        ("INVALID" in line) if not as_json else json.loads(line)["status"] == "invalid"
        for line in out)
    if not keyed:  # never "ok" without a key
        assert not any("tag verified" in line if not as_json else json.loads(line)["ok"]
                       for line in out)
    stream = decode.parse_hex(data.hex(), "x") if as_hex and data else data
    assert len(out) == len(list(decode.blocks(stream)))


def test_a_retransmission_is_reported_as_such_not_as_a_replay(tmp_path, capsys):
    path = _write(tmp_path, "dup.bin", GOOD_WIRES[1] * 2)
    assert decode.main([path, "--json", "--key-file", _keys(tmp_path)]) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["status"] == "ok" and second["status"] == "retransmission"
    assert second["fields"] == first["fields"] and second["detail"] == "same bytes as #1"
    assert decode.main([path, "--key-file", _keys(tmp_path)]) == 0
    assert "[retransmission: same bytes as #1, tag verified]" in capsys.readouterr().out


def test_a_counter_reused_with_other_content_is_a_replay(tmp_path, capsys):
    key = bytes(range(16))
    keys = _write(tmp_path, "k.json", json.dumps([{"device_id": 9, "key_id": 0,
                                                    "key": key.hex()}]))
    sender = codec.Sender(9, 0, key)
    fields = dict(GOOD[1]["fields"])
    first = sender.seal("HEARTBEAT", fields)
    fields["battery_mv"] += 1
    forged = sender.seal("HEARTBEAT", fields, counter=1)
    path = _write(tmp_path, "replay.bin", first + forged)
    assert decode.main([path, "--json", "--key-file", keys]) == 1
    one, two = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert one["status"] == "ok"
    assert (two["status"], two["reason"]) == ("invalid", "replayed")
    assert "reused with different content" in two["detail"]
    assert host_tables.REASONS  # every reason printed comes from this list


def test_without_a_key_frames_are_unverified_never_ok(tmp_path, capsys):
    path = _write(tmp_path, "capture.bin", b"".join(GOOD_WIRES))
    assert decode.main([path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all("[UNVERIFIED: no key for device 1 key 1, tag not checked]" in line
                         for line in lines)
    assert decode.main([path, "--json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(o["status"], o["ok"]) for o in objects} == {("unverified", False)}


# ---- streaming, bounded input, Ctrl-C, recordings -------------------------------------------
def _vigil(*args, **kwargs):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "host.cli", "decode", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(__file__)), **kwargs)


def _readline(stream, timeout_s=20):
    import select

    ready, _, _ = select.select([stream], [], [], timeout_s)
    return stream.readline() if ready else b""


def test_decode_stdin_prints_each_frame_as_it_arrives(tmp_path):
    import subprocess

    proc = _vigil("-", "--key-file", _keys(tmp_path), stdin=subprocess.PIPE)
    try:
        for wire in GOOD_WIRES[:3]:
            proc.stdin.write(wire)
            proc.stdin.flush()
            line = _readline(proc.stdout)  # before any more input, and before EOF
            assert b"[tag verified]" in line, line
        proc.stdin.close()
        assert proc.wait(20) == 0
    finally:
        proc.kill()


def _bytes_read(pid):
    with open("/proc/%d/io" % pid) as f:
        return int(next(line for line in f if line.startswith("rchar")).split()[1])


def test_decode_of_dev_zero_stays_small_and_ctrl_c_exits_130():
    import signal
    import time

    proc = _vigil("/dev/zero")
    try:
        # Interrupt only once it is decoding (50 MB read): on a loaded machine the interpreter
        # may still be starting after a fixed sleep, before the CLI's handler is in place.
        deadline = time.monotonic() + 60
        while _bytes_read(proc.pid) < 50_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        with open("/proc/%d/status" % proc.pid) as f:
            rss_kb = int(next(line for line in f if line.startswith("VmRSS")).split()[1])
        assert rss_kb < 150_000, rss_kb
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
        err = proc.stderr.read().decode()
        assert err.strip() == "vigil decode: interrupted"
    finally:
        proc.kill()


def test_closed_stdin_stdout_and_a_full_disk_are_one_line_exit_2(tmp_path):
    import subprocess

    proc = _vigil("-", stdin=subprocess.DEVNULL)
    assert proc.wait(20) == 0  # empty input: nothing to decode, nothing invalid
    path = _write(tmp_path, "capture.bin", b"".join(GOOD_WIRES))
    for args, kwargs, message in (
            (["-"], dict(preexec_fn=lambda: os.close(0)), "vigil decode: -: cannot read "
                                                         "(standard input is closed)"),
            # (host/cli.py checks the standard streams before any command runs)
            ([path], dict(preexec_fn=lambda: os.close(1)), "vigil: standard output is closed; "
                                                          "nothing could be printed"),
            ([path], dict(stdout=open("/dev/full", "wb")), "vigil decode: cannot write the "
                                                           "output (No space left on device)")):
        import sys

        kwargs.setdefault("stdout", subprocess.PIPE)
        proc = subprocess.Popen([sys.executable, "-m", "host.cli", "decode", *args],
                                stderr=subprocess.PIPE,
                                cwd=os.path.dirname(os.path.dirname(__file__)), **kwargs)
        _out, err = proc.communicate(timeout=20)
        assert proc.returncode == 2, (args, err)
        assert err.decode().strip() == message


def test_a_long_run_without_delimiter_is_one_oversize_line(tmp_path, capsys):
    path = _write(tmp_path, "noise.bin", b"\x01" * 100_000 + b"\x00" + GOOD_WIRES[0])
    assert decode.main([path, "--json", "--key-file", _keys(tmp_path)]) == 1
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (first["reason"], first["detail"]) == ("oversize", "100000 stuffed bytes")
    assert second["status"] == "ok" and second["offset"] == 100_001


def test_stream_blocks_match_blocks_at_every_chunk_size():
    data = b"".join(GOOD_WIRES) + b"\x00\x00noise\x00" + b"\x07" * 300 + b"\x00tail"
    want = [(o, b if len(b) <= host_tables.MAX_WIRE - 1 else len(b), d)
            for o, b, d in decode.blocks(data)]
    for chunk in (1, 2, 3, 7, 64, 4096):
        stream = io.BytesIO(data)
        got = [(o, b if isinstance(b, bytes) else len(b), d)
               for o, b, d in decode.stream_blocks(stream.read, chunk)]
        assert got == want, chunk


def _recording(tmp_path, wires, name="s.pcapng"):
    from host.recording import Writer

    path = str(tmp_path / name)
    with Writer(path, meta={"clock": "wall"}) as writer:
        link = writer.interface("dev1", meta={"device_id": 1})
        for i, wire in enumerate(wires):
            writer.frame(link, 1_767_225_600_000_000_000 + i * 1_500_000, wire,
                         "down" if GOOD[i]["downlink"] else "up")
    return path


def test_decode_a_recording_with_times_and_csv(tmp_path, capsys):
    import csv

    path = _recording(tmp_path, GOOD_WIRES)
    assert decode.main([path, "--key-file", _keys(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(GOOD_WIRES)
    assert " 2026-01-01T00:00:00.001500Z HEARTBEAT " in lines[1]
    assert decode.main([path, "--csv", "--key-file", _keys(tmp_path)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["name"] for r in rows] == [f["message"] for f in GOOD]
    assert {r["status"] for r in rows} == {"ok"}
    assert rows[1]["time"] == "2026-01-01T00:00:00.001500Z"


def test_decode_a_truncated_recording_keeps_the_frames_before_the_cut(tmp_path, capsys):
    path = _recording(tmp_path, GOOD_WIRES)
    with open(path, "rb") as f:
        data = f.read()
    cut = _write(tmp_path, "cut.pcapng", data[:-10])
    assert decode.main([cut, "--key-file", _keys(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == len(GOOD_WIRES) - 1
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "stopped at byte" in err[0] and "truncated block" in err[0]
    with open(path, "rb") as f:  # the same from a pipe: detection needs no seek
        import subprocess

        proc = _vigil("-", "--json", "--key-file", _keys(tmp_path), stdin=f)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and len(out.splitlines()) == len(GOOD_WIRES)
    assert subprocess  # imported for the pipe above


def test_a_truncated_recording_is_one_line_and_exit_1(tmp_path, capsys):
    path = _write(str(tmp_path), "in.bin", decode.PCAPNG_MAGIC)   # the magic and nothing else
    assert decode.main([path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "vigil decode: %s: stopped at byte 0: corrupt section " \
        "header (length 0)" % path
