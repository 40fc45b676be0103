"""`vigil provision --port P --device-id N [--keys keys.json] [--key-id 0]`: write the
device id and a fresh random key to the board (/keys/device.key, firmware.persist's format)
and add them to the centre's key file (a JSON list of {"device_id", "key_id", "key"}; the
entry for that device and key id is replaced). The key never appears on stdout."""
import argparse
import json
import os
import sys
from pathlib import Path

from firmware import persist
from host.board_port import PortError, open_repl, run

KEY_PATH = "/keys/device.key"


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


def provision(port, device_id, keys_path, key_id=0, root="", timeout_s=5):
    if not 1 <= device_id <= 0xFFFFFFFF:
        raise PortError("--device-id must be 1..4294967295")
    key = os.urandom(16)
    blob = persist.key_file_bytes(device_id, {key_id: key})
    link = open_repl(port, timeout_s)
    try:
        run(link, "import os\ntry:\n os.mkdir(%r)\nexcept OSError:\n pass\n" % (root + "/keys"))
        link.fs_writefile(root + KEY_PATH, blob)
        back = link.fs_readfile(root + KEY_PATH)
        if back != blob:
            raise PortError("%s: the key file read back differs (flash full?)" % port)
    finally:
        try:
            link.exit_raw_repl()
        finally:
            link.close()
    add_to_key_file(keys_path, device_id, key_id, key)
    return key


def main(argv):
    parser = argparse.ArgumentParser(prog="vigil provision", description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True)
    parser.add_argument("--device-id", type=int, required=True)
    parser.add_argument("--key-id", type=int, default=0)
    parser.add_argument("--keys", default="keys.json", help="the centre's key file to add to")
    parser.add_argument("--device-root", default="", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        provision(args.port, args.device_id, args.keys, args.key_id, args.device_root,
                  args.timeout)
    except PortError as e:
        print("vigil provision: %s" % e, file=sys.stderr)
        return 2
    print("provisioned device %d (key id %d) on %s; key added to %s"
          % (args.device_id, args.key_id, args.port, args.keys))
    return 0
