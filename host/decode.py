"""`vigil decode [FILE|-] [--hex] [--json|--csv] [--key-file F] [--test-mode]`: one line per
frame, printed as each frame arrives.

Input is detected:
- a pcapng recording (host/recording): one line per packet, both directions, with its time,
  and the stimuli in it;
- a raw byte stream as it crossed the link (COBS frames, 0x00 delimiters, noise and log text
  in between);
- with --hex, text lines of hex digits (whitespace ignored, `#` starts a comment; a line that
  does not end in 00 is closed as if it did).
Input is streamed in chunks with bounded memory: `decode -` prints each frame as soon as its
delimiter arrives, and a device such as /dev/zero is never read into memory. The key file is
the `host.keys` JSON format: [{"device_id": 1, "key_id": 1, "key": "<32 hex digits>"}, ...].

Each frame gets one status:
- `ok`: opened exactly as a receiver would (CRC, tag, direction, flags, decryption, replay
  window per device and direction), uplinks and downlinks alike;
- `retransmission`: the same bytes as an earlier frame (SPEC 3.3: a resend reuses its counter
  and bytes), so not a replay;
- `unverified`: no key for it, so its tag was not checked; framing, CRC and the routing
  header (device, key id, counter, direction) are still decoded, but the type, flags and
  payload are sealed (protocol v2) and shown as `SEALED`. Never `ok`;
- `invalid`: a receiver would refuse it (SPEC 10 reasons); a final block with no delimiter is
  `truncated`.

Exit status: 0 no frame invalid, 1 some invalid (or a recording that stops early: its valid
packets are printed, then one line on stderr says where it stopped), 2 unusable input (one
line on stderr), 130 interrupted.
"""
import argparse
import csv
import datetime
import io
import json
import sys

from host.keys import KeyFileError, load_keys
from protocol import codec, framing, host_fast, host_tables
from protocol.host_make_vectors import to_jsonable

_FLAG_NAMES = ((host_tables.FLAG_ACK_REQ, "ack_req"), (host_tables.FLAG_DOWNLINK, "downlink"),
               (host_tables.FLAG_TEST, "test"))
CHUNK = 65536
MAX_HEX_LINE = 65536  # characters; a longer line is not a frame's hex
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
# Frames remembered per device and direction to tell a retransmission from a replay.
SEEN_PER_STREAM = 4096
CSV_COLUMNS = ("index", "time", "offset", "status", "name", "direction", "device_id",
               "key_id", "counter", "flags", "reason", "detail", "fields")


class UsageError(Exception):
    """Input that cannot be decoded at all: one line for the user, exit 2."""


def _parser():
    parser = argparse.ArgumentParser(
        prog="vigil decode", description="Decode vigil protocol frames, one line per frame.")
    parser.add_argument("file", nargs="?", default="-",
                        help="a pcapng recording, a raw capture, or - for stdin")
    parser.add_argument("--hex", action="store_true", help="input is lines of hex digits")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per line")
    out.add_argument("--csv", action="store_true", help="CSV with a header row")
    parser.add_argument("--key-file", metavar="F", help="JSON device keys (see host/keys.py)")
    parser.add_argument("--test-mode", action="store_true",
                        help="accept TEST_INJECT under the test key id, as a test build does")
    return parser


def parse_hex(text, source):
    """Hex lines -> one byte stream; raises UsageError naming the first bad line."""
    out = bytearray()
    for number, line in enumerate(text.splitlines(), 1):
        out += _hex_line(line, source, number)
    return bytes(out)


def _hex_line(line, source, number):
    digits = "".join(line.split("#", 1)[0].split())
    if not digits:
        return b""
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        raise UsageError("%s:%d: not hex digits" % (source, number)) from None
    return data if data.endswith(b"\x00") else data + b"\x00"


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


class Oversize:
    """A run of bytes longer than any frame, with no delimiter: dropped, only counted."""

    def __init__(self, length):
        self.length = length

    def __len__(self):
        return self.length


def stream_blocks(read, chunk=CHUNK):
    """blocks() over a stream read in chunks: memory stays under one chunk plus one frame.
    A block longer than a frame is yielded as Oversize(length) and not kept."""
    limit = host_tables.MAX_WIRE - 1
    pending = bytearray()
    oversize = 0  # > 0 while discarding a block longer than limit
    block_start = 0
    base = 0
    while True:
        data = read(chunk)
        if not data:
            break
        pos = 0
        size = len(data)
        while pos < size:
            zero = data.find(b"\x00", pos)
            end = size if zero < 0 else zero
            if oversize:
                oversize += end - pos
            elif end > pos:
                if not pending:
                    block_start = base + pos
                pending += data[pos:end]
                if len(pending) > limit:
                    oversize = len(pending)
                    pending.clear()
            if zero < 0:
                break
            if oversize:
                yield block_start, Oversize(oversize), True
                oversize = 0
            elif pending:
                yield block_start, bytes(pending), True
                pending.clear()
            pos = zero + 1
        base += size
    if oversize:
        yield block_start, Oversize(oversize), False
    elif pending:
        yield block_start, bytes(pending), False


def stream_hex(read, source, chunk=CHUNK):
    """Hex lines from a stream -> (offset, block, delimited), line by line, bounded."""
    pending = b""
    number = 0
    base = 0
    while True:
        data = read(chunk)
        lines = (pending + data).split(b"\n") if data else [pending]
        pending = lines.pop() if data else b""
        if len(pending) > MAX_HEX_LINE:
            raise UsageError("%s:%d: line longer than %d characters" % (
                source, number + len(lines) + 1, MAX_HEX_LINE))
        for line in lines:
            number += 1
            try:
                text = line.decode("ascii")
            except UnicodeDecodeError:
                raise UsageError("%s:%d: --hex input is not ASCII text" % (source, number)) \
                    from None
            for offset, block, delimited in blocks(_hex_line(text, source, number)):
                yield base + offset, block, delimited
            base += len(line) + 1
        if not data:
            return


def _flags_text(flags):
    return [name for bit, name in _FLAG_NAMES if flags & bit]


class Decoder:
    """Turns blocks into result dicts: {"status": ok|retransmission|unverified|invalid,
    "ok": bool, ...}. `ok` is true only for a frame whose tag was verified."""

    def __init__(self, keystore=None, test_mode=False, check_replay=True):
        self.keyed = keystore is not None
        self._seen = {}  # (device_id, downlink) -> {counter: (body, index)}
        if self.keyed:
            ring = host_fast.Keyring()
            for device_id in keystore.devices():
                for key_id in keystore.key_ids(device_id):
                    ring.add(device_id, key_id, keystore.get(device_id, key_id))
            self.receivers = {
                downlink: host_fast.FastReceiver(ring, downlink=downlink, test_mode=test_mode,
                                                 check_replay=check_replay)
                for downlink in (False, True)}

    def decode(self, block, index=0):
        if isinstance(block, Oversize) or len(block) > host_tables.MAX_WIRE - 1:
            return _invalid("oversize", "%d stuffed bytes" % len(block))
        try:
            body = framing.cobs_decode(block)
        except ValueError as e:
            return _invalid("bad_cobs", str(e))
        downlink = len(body) > 1 and body[1] == 1  # the clear direction byte (SPEC 3.1)
        if not self.keyed:
            return self._unkeyed(body)
        try:
            frame = self.receivers[downlink].open(block)
        except codec.FrameError as e:
            result = _invalid(e.reason, e.detail)
            if e.frame is not None:
                result.update(self._frame_dict(e.frame))
                earlier = self._seen.get((e.frame.device_id, downlink), {}).get(
                    e.frame.counter)
                if earlier is not None and earlier[0] == e.frame.raw:
                    result.update(status="retransmission", ok=True, reason=None,
                                  detail="same bytes as #%d" % earlier[1])
                else:
                    result.update(status="invalid", ok=False, detail=(
                        "counter %d reused with different content" % e.frame.counter
                        if earlier is not None else "counter %d is older than the replay "
                        "window" % e.frame.counter))
            return result
        self._remember(frame, downlink, index)
        return self._frame_dict(frame)

    def _remember(self, frame, downlink, index):
        seen = self._seen.get((frame.device_id, downlink))
        if seen is None:
            seen = self._seen[(frame.device_id, downlink)] = {}
        seen[frame.counter] = (frame.raw, index)
        if len(seen) > 2 * SEEN_PER_STREAM:  # forget the oldest half (dicts keep order)
            for counter in list(seen)[:SEEN_PER_STREAM]:
                del seen[counter]

    def _unkeyed(self, body):
        """Every check a receiver makes that needs no key (SPEC 9, steps 1-6). In protocol v2
        the type, flags and payload are sealed: without a key only the routing header shows."""
        size = len(body)
        if size < 22:
            return _invalid("truncated", "%d bytes" % size)
        if size > host_tables.MAX_FRAME:
            return _invalid("oversize", "%d bytes" % size)
        if framing.crc16(body[:-2]) != body[-2] << 8 | body[-1]:
            return _invalid("bad_crc", "")
        if body[0] != host_tables.VERSION:
            return _invalid("bad_version", host_tables.version_detail(body[0]))
        if size < host_tables.MIN_FRAME:
            return _invalid("truncated", "%d bytes" % size)
        direction, key_id = body[1], body[2]
        device_id = int.from_bytes(body[3:7], "big")
        counter = int.from_bytes(body[7:11], "big")
        return {"status": "unverified", "ok": False, "name": "SEALED", "type": None,
                "flags": [], "direction": "down" if direction == 1 else "up",
                "device_id": device_id, "key_id": key_id, "counter": counter,
                "tag": "unverified", "fields": None}

    @staticmethod
    def _frame_dict(frame):
        return {"status": "ok", "ok": True, "name": frame.name, "type": frame.type,
                "flags": _flags_text(frame.flags), "direction": "down" if frame.downlink
                else "up", "device_id": frame.device_id, "key_id": frame.key_id,
                "counter": frame.counter, "tag": "verified",
                "fields": to_jsonable(frame.fields)}


def _invalid(reason, detail):
    return {"status": "invalid", "ok": False, "reason": reason, "detail": detail}


def format_time(time_ns):
    stamp = datetime.datetime.fromtimestamp(time_ns // 1_000_000_000, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % (time_ns // 1000 % 1_000_000)


def _text_line(result):
    where = "#%d @%d" % (result["index"], result["offset"])
    if "time" in result:
        where += " " + result["time"]
    if result.get("kind") == "stimulus":
        record = dict(result["stimulus"] or {})
        return "%s STIMULUS dev=%s %s %s" % (
            where, record.pop("device", "-"), record.pop("kind", "?"),
            " ".join("%s=%s" % (k, json.dumps(v, separators=(",", ":")))
                     for k, v in sorted(record.items())))
    if "name" not in result:
        detail = result.get("detail")
        return "%s INVALID %s%s" % (where, result["reason"], " (%s)" % detail if detail else "")
    head = "%s %s %s dev=%d key=%d ctr=%d flags=%s" % (
        where, result["name"], result["direction"], result["device_id"], result["key_id"],
        result["counter"], ",".join(result["flags"]) or "-")
    fields = result["fields"]
    body = ("type and payload sealed (no key)" if fields is None else
            " ".join("%s=%s" % (k, json.dumps(v, separators=(",", ":")))
                     for k, v in fields.items()))
    status = result["status"]
    if status == "ok":
        tail = "tag verified"
    elif status == "unverified":
        tail = "UNVERIFIED: no key for device %d key %d, tag not checked" % (
            result["device_id"], result["key_id"])
    elif status == "retransmission":
        tail = "retransmission: %s, tag verified" % result["detail"]
    else:
        tail = "INVALID %s: %s" % (result["reason"], result["detail"])
    return "%s %s [%s]" % (head, body, tail)


class Output:
    """Writes results as text, JSON lines or CSV; flushes when the input may be live."""

    def __init__(self, out, fmt, live):
        self.out = out
        self.fmt = fmt
        self.live = live
        self.valid = self.invalid = self.unverified = 0
        self._csv = None
        if fmt == "csv":
            self._csv = csv.writer(out, lineterminator="\n")
            self._csv.writerow(CSV_COLUMNS)

    def write(self, result):
        try:
            self._write(result)
        except BrokenPipeError:
            raise  # the reader went away (| head): not an error (host/cli.py)
        except OSError as e:  # e.g. /dev/full
            raise UsageError("cannot write the output (%s)" % (e.strerror or e)) from None

    def flush(self):
        self.write(None)

    def _write(self, result):
        if result is None:
            self.out.flush()
            return
        status = result.get("status")
        if status == "invalid":
            self.invalid += 1
        elif status == "unverified":
            self.unverified += 1
        elif status is not None:
            self.valid += 1
        if self.fmt == "json":
            self.out.write(json.dumps(result) + "\n")
        elif self.fmt == "csv":
            row = dict(result, status=status or result.get("kind"),
                       name=result.get("name", "STIMULUS" if status is None else ""),
                       flags=",".join(result.get("flags") or ()),
                       fields=json.dumps(result.get("fields", result.get("stimulus")),
                                         separators=(",", ":")))
            self._csv.writerow([row.get(c, "") if row.get(c) is not None else ""
                                for c in CSV_COLUMNS])
        else:
            self.out.write(_text_line(result) + "\n")
        if self.live:
            self.out.flush()


def run(stream, decoder, out, as_json):
    """Decode a byte string; write one line per frame to `out`; return (valid, invalid)."""
    output = Output(out, "json" if as_json else "text", live=False)
    _decode_blocks(blocks(stream), decoder, output)
    return output.valid + output.unverified, output.invalid


def _decode_blocks(items, decoder, output):
    for index, (offset, block, delimited) in enumerate(items, 1):
        if delimited:
            result = decoder.decode(block, index)
        else:
            result = _invalid("truncated", "no 0x00 before end of input")
        result["index"] = index
        result["offset"] = offset
        output.write(result)


def _decode_recording(reader, decoder, output):
    from host.recording import RecordingError

    index = 0
    try:
        for packet in reader:
            index += 1
            if packet.interface.is_stimuli:
                result = {"kind": "stimulus", "stimulus": packet.stimulus()}
            else:
                data = packet.data[:-1] if packet.data.endswith(b"\x00") else packet.data
                result = (decoder.decode(data, index) if data and b"\x00" not in data
                          else _invalid("bad_cobs", "packet is not one frame"))
                if packet.direction and "direction" in result and \
                        packet.direction != result["direction"]:
                    result["recorded_direction"] = packet.direction  # the tap disagrees
            result["index"] = index
            result["offset"] = packet.offset
            result["time_ns"] = packet.time_ns
            result["time"] = format_time(packet.time_ns)
            if packet.interface.device_id is not None:
                result.setdefault("link_device_id", packet.interface.device_id)
            output.write(result)
    except RecordingError as e:
        raise UsageError(str(e)) from None
    return reader.error


class _Prefixed(io.RawIOBase):
    """A binary stream with bytes already read put back in front (for format detection)."""

    def __init__(self, first, stream):
        self._first = first
        self._stream = stream
        self.name = getattr(stream, "name", "<stdin>")

    def readable(self):
        return True

    def read1(self, size=-1):
        if self._first:
            data, self._first = self._first, b""
            return data
        return _read1(self._stream)(size if size and size > 0 else CHUNK)

    read = read1


def _read1(stream):
    return getattr(stream, "read1", stream.read)


def _open_input(path):
    try:
        if path == "-":
            stream = sys.stdin.buffer if sys.stdin is not None else None
            if stream is None:
                raise UsageError("<stdin>: no standard input")
            return stream, False
        return open(path, "rb"), True
    except OSError as e:
        raise UsageError("%s: cannot read (%s)" % (path, e.strerror or e)) from None
    except ValueError as e:  # a closed stdin
        raise UsageError("%s: cannot read (%s)" % (path, e)) from None


def main(argv=None):
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed by argparse
        return e.code if isinstance(e.code, int) else 2
    source = "<stdin>" if args.file == "-" else args.file
    stream = None
    own = False
    try:
        keystore = None
        if args.key_file:
            try:
                keystore = load_keys(args.key_file)
            except (KeyFileError, ValueError) as e:  # ValueError: e.g. a file that is not UTF-8
                raise UsageError(str(e) if isinstance(e, KeyFileError) else
                                 "%s: not a key file (%s)" % (args.key_file, e)) from None
        stream, own = _open_input(args.file)
        decoder = Decoder(keystore, test_mode=args.test_mode)
        fmt = "json" if args.json else "csv" if args.csv else "text"
        if sys.stdout is None:
            raise UsageError("no standard output to write to")
        output = Output(sys.stdout, fmt, live=not own)
        read = _read1(stream)
        try:
            first = read(CHUNK)
        except OSError as e:
            raise UsageError("%s: cannot read (%s)" % (source, e.strerror or e)) from None
        stopped = None
        if first[:4] == PCAPNG_MAGIC and not args.hex:
            from host.recording import Reader, RecordingError
            try:
                reader = Reader(_Prefixed(first, stream), name=source)
            except RecordingError as e:
                raise UsageError(str(e)) from None
            stopped = _decode_recording(reader, decoder, output)
        else:
            chained = _Prefixed(first, stream).read1
            items = (stream_hex(chained, source) if args.hex else stream_blocks(chained))
            try:
                _decode_blocks(items, decoder, output)
            except OSError as e:
                raise UsageError("%s: cannot read (%s)" % (source, e.strerror or e)) from None
        output.flush()
    except UsageError as e:
        if sys.stderr is not None:
            print("vigil decode: %s" % e, file=sys.stderr)
        return 2
    finally:
        if own and stream is not None:
            stream.close()
    if stopped:
        print("vigil decode: %s: %s" % (source, stopped), file=sys.stderr)
        return 1
    return 1 if output.invalid else 0


if __name__ == "__main__":
    sys.exit(main())
