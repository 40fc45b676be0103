"""`vigil diff A B [--key-file F] [--timing]`: compare two recorded sessions.

Frames are aligned by direction, device, message type and counter (and the occurrence of that
key, so a retransmission pairs with a retransmission). A frame only in one session, or one
whose bytes differ, is a difference; with a key the differing fields are named. Frames whose
framing is broken are aligned by their position among the broken ones. With --timing, a frame
sent at another time is a difference too (the golden-session check uses this).
Exit status: 0 the same, 1 they differ, 2 unusable input.
"""
import argparse
import sys

from host.decode import Decoder, format_time
from host.keys import KeyFileError, load_keys
from protocol import framing, host_tables

MAX_SHOWN = 40


def _identity(block, decoder):
    """(type name or '?', counter or None, decoded dict or None) of one block."""
    data = block[:-1] if block.endswith(b"\x00") else block
    if not data or b"\x00" in data:
        return "?", None, None
    result = decoder.decode(data)
    if "name" in result:
        return result["name"], result["counter"], result
    try:
        body = framing.cobs_decode(data)
    except ValueError:
        return "?", None, None
    if len(body) >= host_tables.HEADER_SIZE:  # the routing header is clear (its counter ends it)
        return "?", int.from_bytes(body[host_tables.HEADER_SIZE - 4:host_tables.HEADER_SIZE], "big"), None
    return "?", None, None


def _index(items, keys):
    """items: [(t_ns, direction, device_id, block)] -> {align key: (t_ns, block, decoded)}."""
    decoder = Decoder(keys, check_replay=False) if keys is not None else Decoder(None)
    out = {}
    occurrences = {}
    for t_ns, direction, device_id, block in items:
        name, counter, decoded = _identity(block, decoder)
        if decoded is not None:  # the frame's own device id (a centre link carries several)
            device_id = decoded["device_id"]
        base = (direction, device_id, name, counter)
        n = occurrences[base] = occurrences.get(base, 0) + 1
        out[base + (n,)] = (t_ns, block, decoded)
    return out


def _describe(key, t_ns):
    direction, device_id, name, counter, n = key
    text = "%s dev=%s %s ctr=%s at %s" % (direction, device_id, name,
                                          "-" if counter is None else counter,
                                          format_time(t_ns))
    return text + (" (copy %d)" % n if n > 1 else "")


def _field_changes(a, b):
    if not a or not b or a.get("fields") is None or b.get("fields") is None:
        return "bytes differ"
    changes = []
    for name in sorted(set(a["fields"]) | set(b["fields"])):
        va, vb = a["fields"].get(name), b["fields"].get(name)
        if va != vb:
            changes.append("%s %s -> %s" % (name, _short(va), _short(vb)))
    for name in ("flags",):
        if a.get(name) != b.get(name):
            changes.append("%s %s -> %s" % (name, a.get(name), b.get(name)))
    return "; ".join(changes) or "bytes differ"


def _short(value):
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def compare(items_a, items_b, keys=None, timing=True):
    """Differences between two sessions, as readable lines ([] = the same)."""
    a, b = _index(items_a, keys), _index(items_b, keys)
    lines = []
    for key in sorted(set(a) | set(b), key=lambda k: (a.get(k) or b[k])[0]):
        if key not in b:
            lines.append("only in A: " + _describe(key, a[key][0]))
        elif key not in a:
            lines.append("only in B: " + _describe(key, b[key][0]))
        else:
            (ta, block_a, dec_a), (tb, block_b, dec_b) = a[key], b[key]
            if block_a != block_b:
                lines.append("differs:   %s: %s" % (_describe(key, ta),
                                                    _field_changes(dec_a, dec_b)))
            elif timing and ta != tb:
                lines.append("moved:     %s: sent %+.3f ms later in B"
                             % (_describe(key, ta), (tb - ta) / 1e6))
    return lines


def session_items(path):
    """[(t_ns, direction, device_id, block)] of a recording's frames; raises RecordingError."""
    from host.recording import Reader, RecordingError

    with Reader(path) as reader:
        items = [(p.time_ns, p.direction, p.interface.device_id, p.data) for p in reader
                 if not p.interface.is_stimuli]
        if reader.error:
            raise RecordingError("%s: %s" % (path, reader.error))
    return items


def main(argv=None):
    from host.recording import RecordingError

    parser = argparse.ArgumentParser(prog="vigil diff", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", metavar="A.pcapng")
    parser.add_argument("b", metavar="B.pcapng")
    parser.add_argument("--key-file", metavar="F", help="device keys, to name changed fields")
    parser.add_argument("--timing", action="store_true",
                        help="a frame sent at another time is a difference too")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        keys = load_keys(args.key_file) if args.key_file else None
        items_a, items_b = session_items(args.a), session_items(args.b)
    except (KeyFileError, RecordingError) as e:
        print("vigil diff: %s" % e, file=sys.stderr)
        return 2
    lines = compare(items_a, items_b, keys, timing=args.timing)
    for line in lines[:MAX_SHOWN]:
        print(line)
    if len(lines) > MAX_SHOWN:
        print("... %d more differences" % (len(lines) - MAX_SHOWN))
    print("%s: %d frames in A, %d in B, %d differences" % (
        "same" if not lines else "DIFFERENT", len(items_a), len(items_b), len(lines)))
    return 1 if lines else 0
