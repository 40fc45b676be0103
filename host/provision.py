"""`vigil provision --port P --device-id N [--keys keys.json] [--key-id 0]`: write the
device id and a fresh random key to the board (/keys/device.key, firmware.persist's format)
and add them to the centre's key file (a JSON list of {"device_id", "key_id", "key"}; the
entry for that device and key id is replaced). The key never appears on stdout.

`--test-key RIG_KEYS` also provisions a bench board's test build: a second fresh key under
the test key id 0xFF in /keys/test.key (firmware/inject.py accepts TEST_INJECT under it),
added to RIG_KEYS, the rig's file (`pytest --vigil-test-keys RIG_KEYS`), never to the
centre's: the test key opens no centre and is never provisioned on a wearer's device."""
import argparse
import json
import os
import sys
from pathlib import Path

from host.board_port import PortError, open_repl, run
from host.keys import device_key_file_bytes

KEY_PATH = "/keys/device.key"
TEST_KEY_PATH = "/keys/test.key"
TEST_KEY_ID = 0xFF  # protocol.codec.TEST_KEY_ID (SPEC 4.1)


def add_to_key_file(path, device_id, key_id, key):
    path = Path(path)
    entries = []
    if path.exists():
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise PortError("%s: not a key file: %s" % (path, " ".join(str(e).split()))) from None
        if not isinstance(entries, list):
            raise PortError("%s: not a key file (expected a JSON list)" % path)
    entries = [e for e in entries if not (e.get("device_id") == device_id and
                                          e.get("key_id", 0) == key_id)]
    entries.append({"device_id": device_id, "key_id": key_id, "key": key.hex()})
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def provision(port, device_id, keys_path, key_id=0, root="", timeout_s=5, test_keys_path=None):
    if not 1 <= device_id <= 0xFFFFFFFF:
        raise PortError("--device-id must be 1..4294967295")
    if key_id == TEST_KEY_ID:
        raise PortError("--key-id 255 is the test key id; use --test-key")
    key = os.urandom(16)
    writes = [(KEY_PATH, device_key_file_bytes(device_id, {key_id: key}))]
    test_key = None
    if test_keys_path:
        test_key = os.urandom(16)
        writes.append((TEST_KEY_PATH, device_key_file_bytes(device_id, {TEST_KEY_ID: test_key})))
    link = open_repl(port, timeout_s)
    try:
        run(link, "import os\ntry:\n os.mkdir(%r)\nexcept OSError:\n pass\n" % (root + "/keys"))
        for path, blob in writes:
            link.fs_writefile(root + path, blob)
            back = link.fs_readfile(root + path)
            if back != blob:
                raise PortError("%s: the key file read back differs (flash full?)" % port)
    finally:
        try:
            link.exit_raw_repl()
        finally:
            link.close()
    add_to_key_file(keys_path, device_id, key_id, key)
    if test_key is not None:
        add_to_key_file(test_keys_path, device_id, TEST_KEY_ID, test_key)
    return key


def main(argv):
    parser = argparse.ArgumentParser(prog="vigil provision", description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True)
    parser.add_argument("--device-id", type=int, required=True)
    parser.add_argument("--key-id", type=int, default=0)
    parser.add_argument("--keys", default="keys.json", help="the centre's key file to add to")
    parser.add_argument("--test-key", metavar="RIG_KEYS",
                        help="also a test key (id 255, /keys/test.key) for a test build, added "
                             "to this rig key file")
    parser.add_argument("--device-root", default="", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        provision(args.port, args.device_id, args.keys, args.key_id, args.device_root,
                  args.timeout, args.test_key)
    except PortError as e:
        print("vigil provision: %s" % e, file=sys.stderr)
        return 2
    print("provisioned device %d (key id %d) on %s; key added to %s"
          % (args.device_id, args.key_id, args.port, args.keys))
    return 0
