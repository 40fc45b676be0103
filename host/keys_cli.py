"""`vigil keys`: a key store file of device keys, the same JSON list the centre (`--keys`) and
the decoder (`--key-file`) read:

    vigil keys new STORE --device 1004 [--key-id N]   # a fresh random key (key id: next free)
    vigil keys list STORE                              # device, key id, fingerprint; no keys
    vigil keys export STORE [--device ID ...] [--out FILE]   # a key file, to stdout or FILE

The store is written with mode 0600, atomically (a temporary file in the same directory, then
a rename), so a crash never leaves half a store; `export --out` writes 0600 too. A key is
never printed by `list`: only its fingerprint (the first 8 hex digits of its SHA-256).
"""
import hashlib
import os
import secrets
import sys
import tempfile

from host.cliutil import OneLineParser, whole
from host.keys import KeyFileError, KeyStore, load_keys

FILE_MODE = 0o600


def fingerprint(key):
    return hashlib.sha256(key).hexdigest()[:8]


def write_private(path, text):
    """Write `text` to `path` with mode 0600, atomically; OSError on failure."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=directory)  # mkstemp makes it 0600
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load(path, missing_ok=False):
    if missing_ok and not os.path.exists(path):
        return KeyStore()
    return load_keys(path)


def _parser():
    parser = OneLineParser(prog="vigil keys", description=(
        "Make, list and export device keys in a key store file (JSON list of "
        '{"device_id", "key_id", "key"}, mode 0600).'))
    sub = parser.add_subparsers(dest="action", metavar="new|list|export")
    sub.required = True
    new = sub.add_parser("new", help="add a fresh random key for a device")
    new.add_argument("store", help="key store file (created if missing)")
    new.add_argument("--device", type=whole(0, 0xFFFFFFFF), required=True, metavar="ID")
    new.add_argument("--key-id", type=whole(0, 0xFF), metavar="N",
                     help="key id (default: one above the device's highest, else 0)")
    listing = sub.add_parser("list", help="list the keys (fingerprints, never the keys)")
    listing.add_argument("store")
    export = sub.add_parser("export", help="write a key file for `vigil centre`/`vigil decode`")
    export.add_argument("store")
    export.add_argument("--device", type=whole(0, 0xFFFFFFFF), action="append", metavar="ID",
                        help="only this device (repeatable; default: all)")
    export.add_argument("--out", metavar="FILE", help="write here (mode 0600), not to stdout")
    for p in (new, listing, export):
        p.prog = "vigil keys " + p.prog.split()[-1]
        p.__class__ = OneLineParser
    return parser


def main(argv):
    args = _parser().parse_args(argv)
    try:
        return ACTIONS[args.action](args)
    except KeyFileError as e:
        print("vigil keys: %s" % e, file=sys.stderr)
    except OSError as e:
        print("vigil keys: %s: %s" % (getattr(e, "filename", None) or args.store,
                                      e.strerror or e), file=sys.stderr)
    return 2


def _new(args):
    store = _load(args.store, missing_ok=True)
    existing = store.key_ids(args.device)
    key_id = args.key_id if args.key_id is not None else (existing[-1] + 1 if existing else 0)
    if key_id > 0xFF:
        print("vigil keys: device %d has key id 255 already; give --key-id" % args.device,
              file=sys.stderr)
        return 2
    if store.get(args.device, key_id) is not None:
        print("vigil keys: %s: device %d already has key %d (keys are never overwritten)"
              % (args.store, args.device, key_id), file=sys.stderr)
        return 2
    key = secrets.token_bytes(16)
    store.add(args.device, key_id, key)
    write_private(args.store, store.to_json() + "\n")
    print("device %d key %d added to %s (fingerprint %s)" % (
        args.device, key_id, args.store, fingerprint(key)))
    return 0


def _list(args):
    store = _load(args.store)
    for device_id in store.devices():
        for key_id in store.key_ids(device_id):
            print("device %d key %d fingerprint %s" % (
                device_id, key_id, fingerprint(store.get(device_id, key_id))))
    return 0


def _export(args):
    store = _load(args.store)
    wanted = set(args.device or store.devices())
    missing = sorted(wanted - set(store.devices()))
    if missing:
        print("vigil keys: %s: no key for device %d" % (args.store, missing[0]),
              file=sys.stderr)
        return 2
    out = KeyStore((d, k, store.get(d, k)) for d in sorted(wanted) for k in store.key_ids(d))
    text = out.to_json() + "\n"
    if args.out:
        write_private(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


ACTIONS = {"new": _new, "list": _list, "export": _export}
