"""`vigil decode [FILE|-] [--hex] [--json] [--key-file F] [--test-mode]`: one line per frame.

Input is a raw byte stream as it crossed the link (COBS frames, 0x00 delimiters, noise and
log text in between), or with --hex text lines of hex digits (whitespace ignored, `#` starts a
comment; a line that does not end in 00 is closed as if it did). The key file is the
`host.keys` JSON format: [{"device_id": 1, "key_id": 1, "key": "<32 hex digits>"}, ...].

With keys, each frame is opened exactly as a receiver would (CRC, tag, direction, flags,
decryption, replay window per device and direction), uplinks and downlinks alike.
Without keys, framing, CRC and the routing header are still decoded, and each frame says
`tag unverified`; its type and payload are sealed (protocol v2) and shown as such. A frame is invalid if a receiver
would refuse it (SPEC 10 reasons); a final block with no delimiter is reported `truncated`.

Exit status: 0 every frame valid, 1 some invalid, 2 unusable input (one line on stderr).
"""
import argparse
import json
import sys

from host.keys import KeyFileError, load_keys
from protocol import codec, framing, host_fast
from protocol.host_make_vectors import to_jsonable

_FLAG_NAMES = ((codec.FLAG_ACK_REQ, "ack_req"), (codec.FLAG_DOWNLINK, "downlink"),
               (codec.FLAG_TEST, "test"))


class UsageError(Exception):
    """Input that cannot be decoded at all: one line for the user, exit 2."""


def _parser():
    parser = argparse.ArgumentParser(
        prog="vigil decode", description="Decode vigil protocol frames, one line per frame.")
    parser.add_argument("file", nargs="?", default="-", help="input file, or - for stdin")
    parser.add_argument("--hex", action="store_true", help="input is lines of hex digits")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--key-file", metavar="F", help="JSON device keys (see host/keys.py)")
    parser.add_argument("--test-mode", action="store_true",
                        help="accept TEST_INJECT under the test key id, as a test build does")
    return parser


def _read(path):
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError("%s: cannot read (%s)" % (path, e.strerror or e)) from None


def parse_hex(text, source):
    """Hex lines -> one byte stream; raises UsageError naming the first bad line."""
    out = bytearray()
    for number, line in enumerate(text.splitlines(), 1):
        digits = "".join(line.split("#", 1)[0].split())
        if not digits:
            continue
        try:
            data = bytes.fromhex(digits)
        except ValueError:
            raise UsageError("%s:%d: not hex digits" % (source, number)) from None
        out += data
        if not data.endswith(b"\x00"):
            out += b"\x00"
    return bytes(out)


def blocks(stream):
    """(offset, block, delimited) for every non-empty block between 0x00 delimiters; only a
    last block cut off by the end of input has delimited False."""
    start = 0
    length = len(stream)
    while start < length:
        zero = stream.find(b"\x00", start)
        end = length if zero < 0 else zero
        if end > start:
            yield start, stream[start:end], zero >= 0
        if zero < 0:
            return
        start = zero + 1


def _flags_text(flags):
    return [name for bit, name in _FLAG_NAMES if flags & bit]


class Decoder:
    """Turns blocks into result dicts: {"ok": bool, ...}."""

    def __init__(self, keystore=None, test_mode=False):
        self.keyed = keystore is not None
        if self.keyed:
            ring = host_fast.Keyring()
            for device_id in keystore.devices():
                for key_id in keystore.key_ids(device_id):
                    ring.add(device_id, key_id, keystore.get(device_id, key_id))
            self.receivers = {
                downlink: host_fast.FastReceiver(ring, downlink=downlink, test_mode=test_mode)
                for downlink in (False, True)}

    def decode(self, block):
        if len(block) > codec.MAX_WIRE - 1:
            return {"ok": False, "reason": "oversize", "detail": "%d stuffed bytes" % len(block)}
        try:
            body = framing.cobs_decode(block)
        except ValueError as e:
            return {"ok": False, "reason": "bad_cobs", "detail": str(e)}
        downlink = len(body) > 1 and body[1] == 1  # the clear direction byte (SPEC 3.1)
        if self.keyed:
            try:
                frame = self.receivers[downlink].open(block)
            except codec.FrameError as e:
                result = {"ok": False, "reason": e.reason, "detail": e.detail}
                if e.frame is not None:
                    result.update(self._frame_dict(e.frame, "verified"))
                    result["ok"] = False
                return result
            return self._frame_dict(frame, "verified")
        return self._unkeyed(body)

    def _unkeyed(self, body):
        """Every check a receiver makes that needs no key (SPEC 9, steps 1-6). In protocol v2
        the type, flags and payload are sealed: without a key only the routing header shows."""
        size = len(body)
        if size < 22:
            return {"ok": False, "reason": "truncated", "detail": "%d bytes" % size}
        if size > codec.MAX_FRAME:
            return {"ok": False, "reason": "oversize", "detail": "%d bytes" % size}
        if framing.crc16(body[:-2]) != body[-2] << 8 | body[-1]:
            return {"ok": False, "reason": "bad_crc", "detail": ""}
        if body[0] != codec.VERSION:
            return {"ok": False, "reason": "bad_version", "detail": codec._version_detail(body[0])}
        if size < codec.MIN_FRAME:
            return {"ok": False, "reason": "truncated", "detail": "%d bytes" % size}
        direction, key_id = body[1], body[2]
        device_id = int.from_bytes(body[3:7], "big")
        counter = int.from_bytes(body[7:11], "big")
        return {"ok": True, "name": "SEALED", "type": None, "flags": [],
                "direction": "down" if direction == 1 else "up",
                "device_id": device_id, "key_id": key_id, "counter": counter,
                "tag": "unverified", "fields": None}

    @staticmethod
    def _frame_dict(frame, tag):
        return {"ok": True, "name": frame.name, "type": frame.type,
                "flags": _flags_text(frame.flags), "direction": "down" if frame.downlink
                else "up", "device_id": frame.device_id, "key_id": frame.key_id,
                "counter": frame.counter, "tag": tag, "fields": to_jsonable(frame.fields)}


def _text_line(result):
    where = "#%d @%d" % (result["index"], result["offset"])
    if not result["ok"] and "name" not in result:
        detail = result.get("detail")
        return "%s INVALID %s%s" % (where, result["reason"], " (%s)" % detail if detail else "")
    head = "%s %s %s dev=%d key=%d ctr=%d flags=%s" % (
        where, result["name"], result["direction"], result["device_id"], result["key_id"],
        result["counter"], ",".join(result["flags"]) or "-")
    fields = result["fields"]
    body = ("payload encrypted (no key)" if fields is None else
            " ".join("%s=%s" % (k, json.dumps(v, separators=(",", ":")))
                     for k, v in fields.items()))
    tail = "tag %s" % result["tag"]
    if not result["ok"]:
        tail = "INVALID %s: %s" % (result["reason"], "authentic duplicate, delivered once")
    return "%s %s [%s]" % (head, body, tail)


def run(stream, decoder, out, as_json):
    """Decode `stream`; write one line per frame to `out`; return (valid, invalid)."""
    valid = invalid = 0
    for index, (offset, block, delimited) in enumerate(blocks(stream), 1):
        if delimited:
            result = decoder.decode(block)
        else:
            result = {"ok": False, "reason": "truncated", "detail": "no 0x00 before end of input"}
        result = dict(result, index=index, offset=offset)
        if result["ok"]:
            valid += 1
        else:
            invalid += 1
        out.write((json.dumps(result) if as_json else _text_line(result)) + "\n")
    return valid, invalid


def main(argv=None):
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed by argparse
        return e.code if isinstance(e.code, int) else 2
    try:
        keystore = None
        if args.key_file:
            try:
                keystore = load_keys(args.key_file)
            except (KeyFileError, ValueError) as e:  # ValueError: e.g. a file that is not UTF-8
                raise UsageError(str(e) if isinstance(e, KeyFileError) else
                                 "%s: not a key file (%s)" % (args.key_file, e)) from None
        data = _read(args.file)
        if args.hex:
            source = "<stdin>" if args.file == "-" else args.file
            try:
                text = data.decode("ascii")
            except UnicodeDecodeError:
                raise UsageError("%s: --hex input is not ASCII text" % source) from None
            data = parse_hex(text, source)
    except UsageError as e:
        print("vigil decode: %s" % e, file=sys.stderr)
        return 2
    valid, invalid = run(data, Decoder(keystore, test_mode=args.test_mode), sys.stdout,
                         args.json)
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
