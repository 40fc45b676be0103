"""Batch decoding of a whole recording: every frame's tag verified, its sealed part decrypted
and its payload decoded, in batches instead of frame by frame (bench/recording.py: a
million frames).

    result = decode_file("run.pcapng", keystore)
    result.frames, result.valid, result.refused      # counts; refused by reason
    result.groups[("POSITION", 28)]["fixes.0.lat_e7"]  # numpy arrays, one row per frame
    result.fields(i)                                 # frame i as codec.Frame.fields would be

Same checks as `host_fast.FastReceiver.open` (SPEC 9) except the replay window, which is
per-frame state: use `vigil decode` for that. Per frame, Python does only what has no batch
form in the standard library (HMAC-SHA256 with pre-absorbed pads, one nonce per frame);
COBS, CRC, header parsing, AES (one ECB call per key and batch) and payload decoding
(numpy structured views, one per message type and length) run over whole batches.
tests/test_bulk.py checks it against FastReceiver on the golden sessions and fuzzed frames.
"""
import gc
import struct
from binascii import crc_hqx
from itertools import repeat

import numpy as np
from cobs.cobs import DecodeError
from cobs.cobs import decode as _cobs_decode

from protocol import codec, messages
from protocol.host_fast import FastKeys

from . import pcapng

_HEADER = struct.Struct(">BBBII")
_NONCE = struct.Struct(">IBIB")
_TAILS = tuple((b"",) + tuple(bytes(4) + i.to_bytes(2, "big") for i in range(n))
               for n in range(16))
_DTYPE_CHARS = {"B": "u1", "H": ">u2", "h": ">i2", "I": ">u4", "i": ">i4", "Q": ">u8",
                "q": ">i8"}
_SIZE_OF_LENGTH = np.zeros(256, dtype=np.int16)  # payload length -> sealed size (0: none)
for _n in range(codec.MAX_PAYLOAD + 1):
    _SIZE_OF_LENGTH[_n] = codec.sealed_size(_n)
BATCH = 65536
_MIN_BODY = 22


def _struct_fields(fmt, names, prefix, offset):
    out = []
    for name, char in zip(names, fmt.lstrip(">"), strict=True):
        out.append((prefix + name, _DTYPE_CHARS[char], offset))
        offset += struct.calcsize(">" + char)
    return out, offset


def _layout(spec, length):
    """[(path, dtype, offset)] of a payload of `length` bytes, or None if that length cannot
    be this message (then the per-frame decoder gives the reason)."""
    code, name, _direction, fmt, head_size, names, kind = spec
    fields, offset = _struct_fields(fmt, names, "", 0)
    if kind == "":
        return fields if length == offset else None
    if kind == "fix":
        if length != offset + 1 + messages.FIX_SIZE:
            return None
        fields.append(("has_fix", "u1", offset))
        more, _end = _struct_fields(messages.FIX_FORMAT, messages.FIX_FIELDS,
                                    messages.FIX_NAME[name] + ".", offset + 1)
        return fields + more
    if kind == "fixes":
        count, rest = divmod(length - offset - 1, messages.FIX_SIZE)
        if rest or not 1 <= count <= messages.MAX_FIXES:
            return None
        fields.append(("count", "u1", offset))
        at = offset + 1
        for k in range(count):
            more, at = _struct_fields(messages.FIX_FORMAT, messages.FIX_FIELDS,
                                      "fixes.%d." % k, at)
            fields += more
        return fields
    return None  # items, data: variable shapes, decoded per frame


class BulkResult:
    def __init__(self):
        self.frames = 0
        self.valid = 0
        self.refused = {}
        self.groups = {}  # (name, payload length) -> {"index": array, path: array}
        self.singles = {}  # frame index -> fields, for payloads without a batch layout
        self._where = {}  # frame index -> (group key, row)

    def refuse(self, reason, count=1):
        if count:
            self.refused[reason] = self.refused.get(reason, 0) + count

    def fields(self, index):
        """Frame `index` (0-based, all frames) as codec.Frame.fields, or None if refused."""
        if index in self.singles:
            return self.singles[index]
        where = self._where_of(index)
        if where is None:
            return None
        key, row = where
        group = self.groups[key]
        spec = messages.BY_NAME[key[0]]
        flat = {path: group[path][row].item() for path in group if path != "index"}
        out = {name: flat[name] for name in spec[5]}
        kind = spec[6]
        if kind == "fix":
            fix_name = messages.FIX_NAME[key[0]]
            out[fix_name] = ({f: flat[fix_name + "." + f] for f in messages.FIX_FIELDS}
                             if flat["has_fix"] else None)
        elif kind == "fixes":
            out["fixes"] = [{f: flat["fixes.%d.%s" % (k, f)] for f in messages.FIX_FIELDS}
                            for k in range(flat["count"])]
        return out

    def _where_of(self, index):
        if not self._where:
            for key, group in self.groups.items():
                for row, i in enumerate(group["index"].tolist()):
                    self._where[i] = (key, row)
        return self._where.get(index)


def read_frames(path):
    """(times_ns, datas) of every frame packet of a recording, read in one pass (the reader
    of host.recording, whose error is raised as RecordingError)."""
    from host.recording import Reader, RecordingError

    times, datas = [], []
    with Reader(path) as reader:
        for packet in reader:
            if not packet.interface.is_stimuli:
                times.append(packet.time_ns)
                datas.append(packet.data)
        if reader.error:
            raise RecordingError("%s: %s" % (path, reader.error))
    return times, datas


def _unstuff(blocks):
    try:
        return list(map(_cobs_decode, blocks))
    except DecodeError:
        out = []
        for block in blocks:
            try:
                out.append(_cobs_decode(block))
            except DecodeError:
                out.append(b"")
        return out


def decode(datas, keys, result=None, base=0):
    """Decode wire frames (each with or without its 0x00); keys: {(device, key_id): FastKeys}
    or a host.keys.KeyStore. Returns a BulkResult (accumulated into `result` if given)."""
    if not isinstance(keys, dict):
        keys = {(d, k): FastKeys(keys.get(d, k)) for d in keys.devices() for k in keys.key_ids(d)}
    result = result or BulkResult()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a million small immutable objects, no cycles
    try:
        for start in range(0, len(datas), BATCH):
            _decode_batch(datas[start:start + BATCH], keys, result, base + start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return result


def _decode_batch(datas, keys, result, base):
    result.frames += len(datas)
    blocks = [d[:-1] if d[-1:] == b"\x00" else d for d in datas]
    bodies = _unstuff(blocks)
    # Framing, size, CRC and version, each over the batch.
    idx = [i for i, b in enumerate(bodies) if _MIN_BODY <= len(b) <= codec.MAX_FRAME]
    result.refuse("framing", len(bodies) - len(idx))
    crc_ok = [i for i, bad in zip(idx, map(crc_hqx, [bodies[i] for i in idx],
                                           repeat(0xFFFF)), strict=True) if not bad]
    result.refuse("bad_crc", len(idx) - len(crc_ok))
    ok = [i for i in crc_ok if bodies[i][0] == codec.VERSION and
          len(bodies[i]) >= codec.MIN_FRAME]
    result.refuse("bad_version_or_truncated", len(crc_ok) - len(ok))
    # Tags and nonces: the per-frame part. The sealed part is taken with the tag bytes after
    # it up to a whole AES block (every sealed size plus its tag reaches one), so no frame
    # needs padding before the batch XOR; bytes past the sealed size are ignored.
    lookup = keys.get
    by_key = {}
    refused_key = refused_tag = refused_route = 0
    sealed_sizes = frozenset(codec.SEALED_SIZES)
    unpack = _HEADER.unpack_from
    pack_nonce = _NONCE.pack
    tails = _TAILS
    for i in ok:
        body = bodies[i]
        _v, direction, key_id, device_id, counter = unpack(body)
        k = lookup((device_id, key_id))
        if k is None:
            refused_key += 1
            continue
        inner = k._inner.copy()
        inner.update(body[:-10])
        outer = k._outer.copy()
        outer.update(inner.digest())
        if outer.digest()[:8] != body[-10:-2]:
            refused_tag += 1
            continue
        size = len(body) - 21
        if direction > 1 or not counter or size not in sealed_sizes:
            refused_route += 1
            continue
        entry = by_key.get(k)
        if entry is None:
            entry = by_key[k] = ([], [], [], [], [])
        blocks16 = (size + 15) >> 4
        entry[0].append(i)
        entry[1].append(pack_nonce(device_id, direction, counter, key_id).join(tails[blocks16]))
        entry[2].append(body[11:11 + (blocks16 << 4)])
        entry[3].append(size)
        entry[4].append(direction)
    result.refuse("unknown_key", refused_key)
    result.refuse("bad_tag", refused_tag)
    result.refuse("bad_payload", refused_route)
    # Decrypt: one ECB call per key; XOR the whole batch at once.
    order, streams, parts, size_list, directions = [], [], [], [], []
    for k, (frames, nonces, sealed_parts, frame_sizes, frame_dirs) in by_key.items():
        order += frames
        streams.append(k._ecb(b"".join(nonces)))
        parts += sealed_parts
        size_list += frame_sizes
        directions += frame_dirs
    if not order:
        return
    sealed = np.frombuffer(b"".join(parts), dtype=np.uint8) ^ np.frombuffer(
        b"".join(streams), dtype=np.uint8)
    sizes = np.array(size_list, dtype=np.int64)
    blocks16 = (sizes + 15) // 16 * 16
    offsets = np.concatenate(([0], np.cumsum(blocks16)[:-1]))
    frame_index = np.asarray(order, dtype=np.int64) + base
    downlink = np.array(directions, dtype=np.uint8)
    code = sealed[offsets]
    flags = sealed[offsets + 1]
    length = sealed[offsets + 2].astype(np.int64)
    good = (_SIZE_OF_LENGTH[length] == sizes) & ((flags & ~np.uint8(17)) == 0)
    for size in np.unique(sizes):  # padding must be zero
        rows = np.nonzero(sizes == size)[0]
        block = sealed[offsets[rows, None] + np.arange(size)]
        pad = np.arange(size)[None, :] >= (codec.INNER_SIZE + length[rows])[:, None]
        good[rows] &= ~(block & pad).any(axis=1)
    result.refuse("bad_payload", int((~good).sum()))
    for type_code in np.unique(code[good]).tolist():
        spec = messages.BY_TYPE.get(type_code)
        rows_of_type = np.nonzero(good & (code == type_code))[0]
        if spec is None:
            result.refuse("unknown_type", len(rows_of_type))
            continue
        want_down = spec[2] == messages.DOWN
        if spec[2] != messages.BOTH:
            wrong = (downlink[rows_of_type] == 1) != want_down
            result.refuse("wrong_direction", int(wrong.sum()))
            rows_of_type = rows_of_type[~wrong]
        if spec[1] == "TEST_INJECT":
            result.refuse("test_only", len(rows_of_type))
            continue
        for n in np.unique(length[rows_of_type]).tolist():
            rows = rows_of_type[length[rows_of_type] == n]
            _payloads(spec, n, rows, sealed, offsets, frame_index, result)


def _payloads(spec, n, rows, sealed, offsets, frame_index, result):
    layout = _layout(spec, n)
    data = sealed[offsets[rows, None] + codec.INNER_SIZE + np.arange(n)] if n else None
    if layout is None:
        for row in rows.tolist():  # CONFIG items, TEST_INJECT data, or a bad length
            payload = bytes(sealed[offsets[row] + 3:offsets[row] + 3 + n])
            try:
                _name, fields = messages.decode(spec[0], payload)
            except messages.PayloadError:
                result.refuse("bad_payload")
                continue
            result.singles[int(frame_index[row])] = fields
            result.valid += 1
        return
    view = np.ascontiguousarray(data).view(np.dtype({
        "names": [p for p, _t, _o in layout], "formats": [t for _p, t, _o in layout],
        "offsets": [o for _p, _t, o in layout], "itemsize": n})).reshape(-1)
    ok = np.ones(len(rows), dtype=bool)
    if spec[6] == "fix":
        ok &= view["has_fix"] <= 1
    result.refuse("bad_payload", int((~ok).sum()))
    group = {"index": frame_index[rows][ok]}
    for path, _t, _o in layout:
        group[path] = view[path][ok]
    key = (spec[1], n)
    if key in result.groups:
        old = result.groups[key]
        group = {p: np.concatenate((old[p], group[p])) for p in group}
    result.groups[key] = group
    result.valid += int(ok.sum())


def epb_datas(buf):
    """Frame packets of an in-memory recording written by vigil (the benchmark's input):
    (interface ids, datas). Walks the blocks with the pcapng declarations' fast path."""
    reader_head = pcapng.unpack_epb_head
    pos = 0
    size = len(buf)
    ifaces, datas = [], []
    while pos + 12 <= size:
        block_type, length = struct.unpack_from("<II", buf, pos)
        if length < 12 or pos + length > size:
            break
        if block_type == pcapng.EPB_TYPE:
            head = reader_head(buf, pos)
            ifaces.append(head[2])
            datas.append(buf[pos + 28:pos + 28 + head[5]])
        pos += length
    return ifaces, datas


def decode_file(path, keys):
    _times, datas = read_frames(path)
    return decode(datas, keys)
