"""Batch decoding of a whole recording: every frame's tag verified, its sealed part decrypted
and its payload decoded, in batches instead of frame by frame (bench/recording.py: a
million frames).

    result = decode_file("run.pcapng", keystore)     # workers=2: split over two processes
    result.frames, result.valid, result.refused      # counts; refused by reason
    result.groups[("POSITION", 28)]["fixes.0.lat_e7"]  # numpy arrays, one row per frame
    result.fields(i)                                 # frame i as codec.Frame.fields would be

Same checks as `host_fast.FastReceiver.open` (SPEC 9) except the replay window, which is
per-frame state: use `vigil decode` for that. No Python bytecode runs per frame (except on
the fallback for damaged input: blocks that do not chain):
- the file is mapped (mmap), its blocks found in numpy (each block's length gives the
  next one's place; see blocks.py), and each batch's stretch of the file copied once;
- COBS is undone in place over the whole batch (_unstuff_region: the code-byte chains of
  all frames walked together in numpy); headers, tags and sealed parts are rows of
  sliding-window views (one memcpy a row), the routing headers numpy columns;
- the signed part of every frame becomes a bytes object in one struct.unpack (a format
  of "skip N, take M" built in numpy); CRC-16 is crc_hqx over those, continued over the
  tag and CRC bytes in numpy;
- HMAC-SHA256, which has no batch form in the standard library, runs as C-level maps of
  hashlib's copy/update/digest over every frame, from its key's pre-absorbed pads;
- AES-CTR: the counter blocks of every frame of a key are built in numpy and encrypted by
  one ECB call per key and sealed size; decryption, the padding check and the payloads
  (numpy structured views, one per message type and length) are slices, not gathers.
- decode_file(workers=N) splits the block search and the decoding between N forked
  processes.
tests/test_bulk.py checks it against FastReceiver on the golden sessions, damaged copies
(refusal reasons too) and wrong keys, and bench/recording.py against the construct
reference decoder.
"""
import gc
import io
import mmap
import multiprocessing
import struct
import time
from binascii import crc_hqx
from collections import deque
from itertools import repeat
from operator import itemgetter

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from protocol import codec, host_tables, messages
from protocol.host_fast import FastKeys

from .blocks import as_words, candidates, epb_spans, find_section, frame_spans, tiling, walk_blocks

_HEADER = struct.Struct(">BBBII")
_NONCE = struct.Struct(">IBIB")
_TAILS = tuple((b"",) + tuple(bytes(4) + i.to_bytes(2, "big") for i in range(n))
               for n in range(16))
_DTYPE_CHARS = {"B": "u1", "H": ">u2", "h": ">i2", "I": ">u4", "i": ">i4", "Q": ">u8",
                "q": ">i8"}
_SIZE_OF_LENGTH = np.zeros(256, dtype=np.int16)  # payload length -> sealed size (0: none)
for _n in range(host_tables.MAX_PAYLOAD + 1):
    _SIZE_OF_LENGTH[_n] = codec.sealed_size(_n)
_SEALED_OK = np.zeros(256, dtype=bool)  # sealed size -> one of SEALED_SIZES
_SEALED_OK[list(codec.SEALED_SIZES)] = True
BATCH = 65536
_MIN_BODY = 22
_NONCE_FROM_HEADER = np.array([3, 4, 5, 6, 1, 7, 8, 9, 10, 2])


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
        if length != offset + 1 + host_tables.FIX_SIZE:
            return None
        fields.append(("has_fix", "u1", offset))
        more, _end = _struct_fields(messages.FIX_FORMAT, messages.FIX_FIELDS,
                                    messages.FIX_NAME[name] + ".", offset + 1)
        return fields + more
    if kind == "fixes":
        count, rest = divmod(length - offset - 1, host_tables.FIX_SIZE)
        if rest or not 1 <= count <= host_tables.MAX_FIXES:
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
        self.cpu_s = []  # process CPU time of each worker of decode_file(workers=N)

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
        spec = host_tables.BY_NAME[key[0]]
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


_LAST = itemgetter(-1)
_BUT_LAST = itemgetter(slice(None, -1))


def _blocks_of(datas):
    """Wire frames -> COBS blocks (the final 0x00 removed where there is one), in C when
    every frame ends in its delimiter, as recorded frames do."""
    try:
        if not bytes(map(_LAST, datas)).strip(b"\x00"):
            return list(map(_BUT_LAST, datas))
    except IndexError:  # an empty packet
        pass
    return [d[:-1] if d[-1:] == b"\x00" else d for d in datas]


def key_table(keys):
    """{(device, key_id): FastKeys} of a KeyStore (a dict is taken as it is)."""
    if isinstance(keys, dict):
        return keys
    return {(d, k): FastKeys(keys.get(d, k)) for d in keys.devices() for k in keys.key_ids(d)}


def decode(datas, keys, result=None, base=0):
    """Decode wire frames (each with or without its 0x00); keys: {(device, key_id): FastKeys}
    or a host.keys.KeyStore. Returns a BulkResult (accumulated into `result` if given)."""
    keys = key_table(keys)
    result = result or BulkResult()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a million small immutable objects, no cycles
    try:
        for start in range(0, len(datas), BATCH):
            _decode_batch(_blocks_of(datas[start:start + BATCH]), keys, result, base + start)
    finally:
        if gc_was_enabled:
            gc.enable()
    _sort_groups(result)
    return result


def decode_buffer(buf, keys, result=None):
    """Decode every frame packet of a whole recording in memory (bytes, or an mmap of the
    file): the blocks are walked once, and each frame is sliced straight out of `buf`
    without its delimiter. A recording this walk does not expect (not written by vigil,
    truncated, corrupt) goes through the general reader instead, which keeps its checks and
    its one-line error (RecordingError)."""
    spans = frame_spans(buf)
    if spans is None:
        from host.recording import Reader, RecordingError

        with Reader(io.BytesIO(bytes(buf))) as reader:
            datas = [p.data for p in reader if not p.interface.is_stimuli]
            if reader.error:
                raise RecordingError(reader.error)
        return decode(datas, keys, result)
    starts, ends = spans
    return _decode_spans(buf, starts, ends, key_table(keys), result or BulkResult(), 0)


def _decode_spans(buf, starts, ends, keys, result, base):
    """Decode the blocks at [starts, ends) of `buf` (arrays of byte offsets, in file
    order): each batch's stretch of the file is copied once and decoded in place."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    whole = np.frombuffer(buf, dtype=np.uint8)
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    try:
        for first in range(0, len(starts), BATCH):
            s, e = starts[first:first + BATCH], ends[first:first + BATCH]
            low = int(s[0])
            region = whole[low:int(e.max())].copy()
            _decode_region(region, s - low, e - low, keys, result, base + first)
    finally:
        del whole  # an exported buffer would keep the mmap from closing
        if gc_was_enabled:
            gc.enable()
    _sort_groups(result)
    return result


def _decode_batch(blocks, keys, result, base):
    """Decode COBS blocks (bytes, delimiters removed): laid end to end in one region."""
    lengths = np.fromiter(map(len, blocks), dtype=np.int64, count=len(blocks))
    ends = np.cumsum(lengths)
    region = np.frombuffer(bytearray(b"".join(blocks)), dtype=np.uint8)
    _decode_region(region, ends - lengths, ends, keys, result, base)


def _unstuff_region(region, starts, ends):
    """COBS-decode every block region[start:end] in place; returns which blocks were valid
    COBS of a body with a frame's length (22..MAX_FRAME bytes).

    A valid block's body is then region[start + 1:end]: decoding drops the first code byte
    and turns every later code byte into the zero it stands for, in place (no 0xFF code can
    occur below 254 body bytes, so none is skipped). The code chains of all blocks are
    walked together, one code byte of every block per numpy step; a block whose chain
    does not land exactly on its end, or that holds a zero, is not COBS (as cobs.decode
    says)."""
    size = ends - starts
    is_zero = np.zeros(len(region) + 1, dtype=bool)  # one more: an end may be len(region)
    np.equal(region, 0, out=is_zero[:-1])
    bounds = np.stack((starts, ends), axis=1).reshape(-1)
    no_zero = ~np.logical_or.reduceat(is_zero, bounds)[::2]  # (an empty block is refused)
    good = np.zeros(len(starts), dtype=bool)
    live = np.flatnonzero((size > _MIN_BODY) & (size <= host_tables.MAX_FRAME + 1) & no_zero)
    pos, end = starts[live], ends[live]
    while len(live):
        step = region[pos]
        region[pos] = 0
        pos = pos + step
        done = pos >= end
        good[live[done]] = pos[done] == end[done]
        more = ~done
        live, pos, end = live[more], pos[more], end[more]
    return good


def _crc_table():
    return np.array([crc_hqx(bytes([i]), 0) for i in range(256)], dtype=np.int64)


_CRC_TABLE = _crc_table()  # crc_hqx's: crc = (crc << 8 & 0xFF00) ^ table[crc >> 8 ^ byte]


def _slices(buf, at, size):
    """[bytes(buf[a:a + n]) for a, n in zip(at, size)] (at ascending, spans disjoint), in
    one struct.unpack: the format skips each gap ("Nx") and takes each span ("Ns"); its
    tokens are built in numpy, one fixed-width row per distinct (gap, size), padded with
    spaces (which struct ignores)."""
    if not len(at):
        return ()
    gap = at - np.concatenate(([0], at[:-1] + size[:-1]))
    pairs, which = np.unique((gap << 16) | size, return_inverse=True)
    texts = [(("%dx" % (pair >> 16) if pair >> 16 else "") + "%ds" % (pair & 0xFFFF)).encode()
             for pair in pairs.tolist()]
    tokens = np.full((len(texts), max(map(len, texts))), ord(" "), dtype=np.uint8)
    for row, text in enumerate(texts):
        tokens[row, :len(text)] = np.frombuffer(text, dtype=np.uint8)
    fmt = tokens[which.reshape(-1)].tobytes()
    return struct.unpack_from(fmt, buf)


def _rows(region, at, width):
    """region[a:a + width] for each a in `at`, as one (len(at), width) array (each row one
    memcpy from a sliding-window view, not a gather of every byte)."""
    return sliding_window_view(region, width)[at]


def _decode_region(region, starts, ends, keys, result, base):
    """Decode the COBS blocks at [starts, ends) of `region` (a writable uint8 array, changed
    in place; blocks in ascending order, disjoint); frame i of the batch is frame base + i
    of the result."""
    count = len(starts)
    result.frames += count
    framed = _unstuff_region(region, starts, ends)
    result.refuse("framing", int(count - framed.sum()))
    idx = np.flatnonzero(framed)
    if not len(idx):
        return
    at = starts[idx] + 1  # each body's first byte
    size = ends[idx] - at
    head = _rows(region, at, 11)  # the routing header (SPEC 3)
    # What the tag signs (all but the tag and the CRC), one bytes object a frame; the CRC
    # (SPEC 3) over those by crc_hqx, continued over the tail (tag and CRC) in numpy: the
    # CRC of a whole body with its CRC is 0.
    signed = _slices(region.data, at, size - 10)
    crc = np.fromiter(map(crc_hqx, signed, repeat(0xFFFF)), dtype=np.int64, count=len(idx))
    tail = _rows(region, at + size - 10, 10)
    for column in tail.T.astype(np.int64):
        crc = ((crc << 8) & 0xFF00) ^ _CRC_TABLE[(crc >> 8) ^ column]
    crc_ok = crc == 0
    result.refuse("bad_crc", int(len(idx) - crc_ok.sum()))
    ok = crc_ok & (head[:, 0] == host_tables.VERSION) & (size >= host_tables.MIN_FRAME)
    result.refuse("bad_version_or_truncated", int(crc_ok.sum() - ok.sum()))
    # Keys: one lookup per (device, key id) present, not per frame.
    device_id = np.ascontiguousarray(head[:, 3:7]).view(">u4").reshape(-1).astype(np.int64)
    pair, which = np.unique((device_id << 8) | head[:, 2], return_inverse=True)
    which = which.reshape(-1)
    table = [keys.get((p >> 8, p & 0xFF)) for p in pair.tolist()]
    known = np.array([k is not None for k in table], dtype=bool)[which]
    result.refuse("unknown_key", int(ok.sum() - (ok & known).sum()))
    ok &= known
    # HMAC-SHA256 of every frame (a damaged one's too: it is refused below, and computing
    # its tag costs less than leaving it out): C-level maps of hashlib's copy/update/digest
    # from each frame's key's pre-absorbed pads. A frame of an unknown key gets any key's
    # pads (its tag is never looked at).
    spare = next((k for k in table if k is not None), None)
    if spare is None:
        return
    inner = np.array([(k or spare)._inner for k in table], dtype=object)[which].tolist()
    outer = np.array([(k or spare)._outer for k in table], dtype=object)[which].tolist()
    hash_type = type(spare._inner)
    copy, update, digest = hash_type.copy, hash_type.update, hash_type.digest
    inners = list(map(copy, inner))
    deque(map(update, inners, signed), maxlen=0)
    del signed, inner
    outers = list(map(copy, outer))
    deque(map(update, outers, map(digest, inners)), maxlen=0)
    del inners, outer
    tags = np.frombuffer(b"".join(map(digest, outers)), dtype=np.uint8).reshape(-1, 32)
    del outers
    tag_ok = ok & (tags[:, :8] == tail[:, :8]).all(axis=1)
    result.refuse("bad_tag", int(ok.sum() - tag_ok.sum()))
    direction = head[:, 1]
    counter = np.ascontiguousarray(head[:, 7:11]).view(">u4").reshape(-1)
    sealed_size = size - 21
    route_ok = tag_ok & (direction <= 1) & (counter != 0) & _SEALED_OK[sealed_size]
    result.refuse("bad_payload", int(tag_ok.sum() - route_ok.sum()))
    keep = np.nonzero(route_ok)[0]
    if not len(keep):
        return
    # From here on by sealed size, then by key: each key's keystream of one size is one ECB
    # call, and the sealed parts of one size are one 2-D array, so decryption, the padding
    # check and the payloads are slices, not gathers.
    keep = keep[np.lexsort((which[keep], sealed_size[keep]))]
    idx, which, at, head = idx[keep], which[keep], at[keep], head[keep]
    sizes = sealed_size[keep]
    direction = direction[keep]
    # Counter blocks (SPEC 4.3): the frame's nonce (device id, direction, counter, key id:
    # header bytes 3-6, 1, 7-10, 2), four zero bytes and the block number, one row a block.
    blocks_each = (sizes + 15) >> 4
    nonce = head[:, _NONCE_FROM_HEADER]
    rows = np.repeat(np.arange(len(idx)), blocks_each)
    first_block = np.cumsum(blocks_each) - blocks_each
    number = np.arange(len(rows)) - first_block[rows]
    counter_blocks = np.zeros((len(rows), 16), dtype=np.uint8)
    counter_blocks[:, :10] = nonce[rows]
    counter_blocks[:, 14] = number >> 8
    counter_blocks[:, 15] = number & 0xFF
    changes = (np.flatnonzero((np.diff(which) != 0) | (np.diff(sizes) != 0)) + 1).tolist()
    block_bounds = [0] + first_block[changes].tolist() + [len(rows)]
    key_of = [table[w] for w in which[[0] + changes].tolist()]
    stream = b"".join(k._ecb(counter_blocks[a:b].tobytes())
                      for k, a, b in zip(key_of, block_bounds[:-1], block_bounds[1:],
                                         strict=True))
    # Each frame's sealed part (from byte 11) with the tag bytes after it up to a whole
    # block (every sealed size plus its tag reaches one); bytes past the sealed size are
    # ignored.
    size_bounds = (np.flatnonzero(np.diff(sizes)) + 1).tolist()
    parts = []
    for a, b in zip([0] + size_bounds, size_bounds + [len(idx)], strict=True):
        width = (int(sizes[a]) + 15) >> 4 << 4
        parts.append(_rows(region, at[a:b] + 11, width).reshape(-1))
    sealed = np.concatenate(parts) ^ np.frombuffer(stream, dtype=np.uint8)
    offsets = first_block * 16
    _open_sealed(sealed, sizes, offsets, idx + base, direction, result)


def _open_sealed(sealed, sizes, offsets, frame_index, downlink, result):
    """The decrypted sealed parts (at `offsets` in `sealed`, `sizes` long, each padded to a
    whole AES block, rows of one size consecutive) -> payloads."""
    code = sealed[offsets]
    flags = sealed[offsets + 1]
    length = sealed[offsets + 2].astype(np.int64)
    good = (_SIZE_OF_LENGTH[length] == sizes) & ((flags & ~np.uint8(17)) == 0)
    # Per size, the sealed parts as one 2-D view (a row a frame): no index arrays.
    by_size = {}
    bounds = (np.flatnonzero(np.diff(sizes)) + 1).tolist()
    for first, end in zip([0] + bounds, bounds + [len(sizes)], strict=True):
        size = int(sizes[first])
        width = (size + 15) >> 4 << 4
        start = int(offsets[first])
        block = sealed[start:start + (end - first) * width].reshape(end - first, width)
        by_size[size] = (first, block)
        pad = np.arange(size)[None, :] >= (host_tables.INNER_SIZE + length[first:end])[:, None]
        good[first:end] &= ~(block[:, :size] & pad).any(axis=1)  # padding must be zero
    result.refuse("bad_payload", int((~good).sum()))
    for type_code in np.unique(code[good]).tolist():
        spec = host_tables.BY_TYPE.get(type_code)
        rows_of_type = np.nonzero(good & (code == type_code))[0]
        if spec is None:
            result.refuse("unknown_type", len(rows_of_type))
            continue
        want_down = spec[2] == host_tables.DOWN
        if spec[2] != host_tables.BOTH:
            wrong = (downlink[rows_of_type] == 1) != want_down
            result.refuse("wrong_direction", int(wrong.sum()))
            rows_of_type = rows_of_type[~wrong]
        if spec[1] == "TEST_INJECT":
            result.refuse("test_only", len(rows_of_type))
            continue
        for n in np.unique(length[rows_of_type]).tolist():
            rows = rows_of_type[length[rows_of_type] == n]
            first, block = by_size[int(_SIZE_OF_LENGTH[n])]  # one length, one size
            data = block[rows - first, host_tables.INNER_SIZE:host_tables.INNER_SIZE + n]
            _payloads(spec, n, rows, data, frame_index, result)


def _payloads(spec, n, rows, data, frame_index, result):
    layout = _layout(spec, n)
    if layout is None:
        for row, payload in zip(rows.tolist(), map(bytes, data), strict=True):
            # CONFIG items, TEST_INJECT data, or a bad length
            try:
                fields = messages.decode(messages.find(spec[0]), payload)
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


def _sort_groups(result):
    """Rows of each group in frame order (batches are worked key by key)."""
    for key, group in result.groups.items():
        index = group["index"]
        if len(index) > 1 and (np.diff(index) < 0).any():
            order = np.argsort(index, kind="stable")
            result.groups[key] = {path: column[order] for path, column in group.items()}
    result._where = {}


def decode_file(path, keys, workers=1):
    """decode_buffer over the file, mapped into memory rather than read. With workers > 1
    the file is split between that many forked processes: each looks for block starts in
    its share of the file, this process checks that they chain, then each decodes its run
    of blocks, and the parts are merged: the same result, in frame order."""
    keys = key_table(keys)
    with open(path, "rb") as f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            return decode_buffer(b"", keys)
    with mapped:
        if (workers < 2 or len(mapped) < 2 * BATCH * _MIN_PACKET_BYTES or
                "fork" not in multiprocessing.get_all_start_methods()):
            return decode_buffer(mapped, keys)
        parts = _decode_parallel(path, mapped, keys, workers)
        return decode_buffer(mapped, keys) if parts is None else _merge(parts)


_MIN_PACKET_BYTES = 64  # no frame packet is smaller: a file below 2 * BATCH of them stays here
_FORKED = None


def _decode_parallel(path, mapped, keys, workers):
    """The parts of decode_file's split, or None if the file is not one the fast walk
    takes (decode_buffer then gives the general reader's verdict)."""
    global _FORKED
    word = as_words(mapped)
    if word is None:
        return None
    _FORKED = (path, keys)  # inherited by the forked workers, never pickled
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            cut = [len(word) * i // workers for i in range(workers + 1)]
            # Each worker's candidates come with their lengths and types, so that this
            # process does not have to read (fault in) every page of the file itself.
            found = pool.map(_candidates_part, list(zip(cut[:-1], cut[1:], strict=True)))
            candidate, length, types = (np.concatenate(c) for c in zip(*found, strict=True))
            at = tiling(len(word), candidate, length)
            if at is None:
                at, types = walk_blocks(word), None
            section = None if at is None else find_section(word, at, types)
            if section is None:
                return None
            cut = [len(at) * i // workers for i in range(workers + 1)]
            parts = pool.map(_decode_part, [(at[a:b], a, section)
                                            for a, b in zip(cut[:-1], cut[1:], strict=True)])
    finally:
        _FORKED = None
        del word  # an exported buffer would keep the mmap from closing
    return None if None in parts else parts


def _mapped_words(path):
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _candidates_part(bounds):
    with _mapped_words(_FORKED[0]) as mapped:
        word = as_words(mapped)
        found = candidates(word, *bounds)
        found = found, word[found + 1].astype(np.int64), word[found]
        del word
    return found


def _decode_part(task):
    """Decode the frame packets among one run of blocks (frame indexes from 0: _merge
    shifts them)."""
    at, first, section = task
    path, keys = _FORKED
    with _mapped_words(path) as mapped:
        word = as_words(mapped)
        spans = epb_spans(word, at, first, *section)
        del word
        if spans is None:
            return None
        part = _decode_spans(mapped, spans[0], spans[1], keys, BulkResult(), 0)
    # The worker's whole CPU time (a forked process starts from 0): its share of the block
    # search too.
    part.cpu_s = [time.process_time()]
    return part


def _merge(parts):
    result = BulkResult()
    for part in parts:  # in frame order: each part's frames follow the previous part's
        shift = result.frames
        result.frames += part.frames
        result.valid += part.valid
        for reason, count in part.refused.items():
            result.refuse(reason, count)
        result.singles.update((i + shift, fields) for i, fields in part.singles.items())
        result.cpu_s += part.cpu_s
        for key, group in part.groups.items():
            group["index"] = group["index"] + shift
            old = result.groups.get(key)
            result.groups[key] = group if old is None else {
                path: np.concatenate((old[path], group[path])) for path in group}
    return result
