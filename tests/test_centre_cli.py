"""`vigil centre --listen tcp://...` end to end: a real process, real sockets, Ctrl-C."""
import json
import signal
import sqlite3
import subprocess
import sys

import pytest

from host.keys import KeyFileError, load_keys, parse_keys
from host.transport import open_transport
from protocol import codec
from tests.test_centre import KEY, Dev, alarm, heartbeat, hello
from tests.vm import REPO


def write_keys(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"device_id": 7, "key_id": 1, "key": KEY.hex()},
                                {"device_id": 8, "key_id": 1, "key": KEY.hex()}]))
    return path


def recv_frames(transport, dev, want, timeout_ms=3000):
    """Frames until `want` names were seen (bounded by the transport timeout)."""
    got = []
    while not set(want) <= {f.name for f in got}:
        wire = transport.recv(timeout_ms=timeout_ms)
        assert wire is not None, "no reply within %d ms; got %r" % (timeout_ms, got)
        got.extend(dev.open([wire]))
    return got


def test_centre_over_tcp_two_devices_then_ctrl_c(tmp_path):
    db = tmp_path / "evidence.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "centre", "--listen", "tcp://127.0.0.1:0",
         "--keys", str(write_keys(tmp_path)), "--db", str(db), "--operator-delay-s", "0.05"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("listening on tcp://127.0.0.1:"), first
        url = first.split()[2]
        a, b = Dev(7), Dev(8)
        with open_transport(url, timeout_ms=3000) as link_a, \
                open_transport(url, timeout_ms=3000) as link_b:
            link_a.send(a.seal("HELLO", hello()))
            link_b.send(b.seal("HELLO", hello()))
            assert recv_frames(link_a, a, ["ACK"])[0].fields == {"highest": 1, "bitmap": 0}
            assert recv_frames(link_b, b, ["ACK"])[0].fields == {"highest": 1, "bitmap": 0}
            link_b.send(b.seal("HEARTBEAT", heartbeat()))
            link_a.send(a.seal("ALARM", alarm(alarm_id=3)))
            frames = recv_frames(link_a, a, ["ACK", "OPERATOR_ACK"])
            op = [f for f in frames if f.name == "OPERATOR_ACK"][0]
            assert op.fields["alarm_id"] == 3
            link_a.send(a.seal("ACK", {"highest": op.counter, "bitmap": 0}))
            assert recv_frames(link_b, b, ["ACK"])[-1].fields["highest"] == 2
            # A forged frame is refused and not answered.
            link_b.send(Dev(8, key=bytes(16)).seal("HEARTBEAT", heartbeat()))
            assert link_b.recv(timeout_ms=200) is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert any(" hello device=7 " in line for line in lines)
    assert any(" alarm_raised device=7 alarm_id=3 kind=panic" in line for line in lines)
    assert any(" alarm_acked device=7 alarm_id=3" in line for line in lines)
    assert any(" refused " in line and "reason=bad_tag" in line for line in lines)
    assert lines[-1].startswith("stopped: ")
    with sqlite3.connect(db) as conn:
        changes = [r[0] for r in conn.execute("SELECT change FROM alarms ORDER BY id")]
        outcomes = [r[0] for r in conn.execute("SELECT outcome FROM frames ORDER BY id")]
        refusals = list(conn.execute("SELECT outcome, count FROM refusals"))
    assert changes[:2] == ["raised", "acked"]
    assert outcomes.count("delivered") == 5
    assert refusals == [("refused:bad_tag", 1)]  # counted per link, written at its close


@pytest.mark.parametrize("argv, message", [
    (["--listen", "gopher://x"], "unknown scheme gopher://"),
    (["--listen", "tcp://127.0.0.1"], "expected tcp://HOST:PORT"),
])
def test_cli_bad_url_one_line(tmp_path, capsys, argv, message):
    from host.centre.cli import main
    assert main(argv + ["--keys", str(write_keys(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_cli_prealert_below_warning_radius_is_one_line(tmp_path, capsys):
    from host.centre.cli import main
    argv = ["--listen", "tcp://127.0.0.1:0", "--keys", str(write_keys(tmp_path)),
            "--prealert-m", "800"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "prealert_m 800: below warning_m 1000" in err and "\n" not in err


def test_cli_bad_key_file_one_line(tmp_path, capsys):
    from host.centre.cli import main
    bad = tmp_path / "bad.json"
    bad.write_text('[{"device_id": 7, "key_id": 1, "key": "abc"}]')
    assert main(["--listen", "tcp://127.0.0.1:0", "--keys", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.json: entry 0: key must be 32 hex digits" in err and "\n" not in err


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON"),
    ("{}", "must be a JSON list"),
    ('[{"device_id": -1, "key_id": 1, "key": "%s"}]' % KEY.hex(), "device_id must be"),
    ('[{"device_id": 1, "key_id": 256, "key": "%s"}]' % KEY.hex(), "key_id must be"),
    ('[{"device_id": 1, "key_id": 1, "key": "%s", "x": 1}]' % KEY.hex(), "unknown field x"),
    ('[{"device_id": 1, "key_id": 1, "key": "%s"}, {"device_id": 1, "key_id": 1, "key": "%s"}]'
     % (KEY.hex(), KEY.hex()), "listed twice"),
])
def test_key_file_errors(text, message):
    with pytest.raises(KeyFileError, match=message):
        parse_keys(text, "k.json")


def test_key_file_round_trip(tmp_path):
    store = load_keys(write_keys(tmp_path))
    assert store.get(7, 1) == KEY and store.devices() == [7, 8]
    assert parse_keys(store.to_json()).get(8, 1) == KEY
    ring = store.keyring()
    frame = codec.Receiver(ring).feed(Dev(8).seal("HEARTBEAT", heartbeat()))[0]
    assert frame.device_id == 8
    with pytest.raises(KeyFileError, match="cannot read"):
        load_keys(tmp_path / "missing.json")


def test_key_file_that_is_not_text_is_one_clear_error(tmp_path):
    path = tmp_path / "keys.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(KeyFileError, match="not a UTF-8 text file"):
        load_keys(path)
