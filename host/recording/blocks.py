"""A vigil recording's blocks found in numpy: the file as little-endian 32-bit words, the
block starts (each block's length gives the next one's place), the section and interface
blocks, and the byte spans of every frame packet. bulk.py decodes what these find;
anything that does not check out gives None, and the general reader (host.recording.pcapng)
judges it.
"""
import sys

import numpy as np

from . import pcapng

MAX_BLOCK_WORDS = (1 << 20) >> 2  # host.recording.MAX_BLOCK, the reader's bound


def frame_spans(buf, as_arrays=False):
    """([start], [end]) byte offsets in `buf` of every frame packet's COBS block (its 0x00
    delimiter left out), or None when `buf` is not a single-section little-endian vigil
    recording whose blocks all check out (then the general reader must judge it).
    as_arrays: numpy int64 arrays instead of lists."""
    word = as_words(buf)
    if word is None:
        return None
    at = block_starts(word)
    section = None if at is None else find_section(word, at)
    if section is None:
        return None
    spans = epb_spans(word, at, 0, *section)
    if spans is None or as_arrays:
        return spans
    return spans[0].tolist(), spans[1].tolist()


def as_words(buf):
    """`buf` as little-endian 32-bit words, or None if it cannot be a whole recording."""
    if sys.byteorder != "little" or len(buf) < 28 or len(buf) & 3:
        return None  # (a length not a multiple of 4: a truncated last block)
    return np.frombuffer(buf, dtype="<u4", count=len(buf) >> 2)


def find_section(word, at, types=None):
    """(indexes in `at` of the blocks that are not packets, the link type of each
    interface) of a recording of one section, or None if it is not one vigil writes.
    types: word[at], if known."""
    types = word[at] if types is None else types
    if types[0] != pcapng.SHB_TYPE or word[1 + 1] != pcapng.BYTE_ORDER_MAGIC:
        return None
    others = np.flatnonzero(types != pcapng.EPB_TYPE)
    linktypes = []
    for i in others[1:].tolist():
        if types[i] != pcapng.IDB_TYPE:
            return None  # another section, or a block vigil does not write
        linktypes.append(int(word[at[i] + 2]) & 0xFFFF)
    return others, np.asarray(linktypes, dtype=np.int64)


def epb_spans(word, at, first, others, linktypes):
    """(start, end) byte offsets of the frame packets among the blocks at word offsets
    `at` (blocks first, first + 1, ... of the file; `others` and `linktypes` from
    section), or None if a block does not check out."""
    lengths = word[at + 1].astype(np.int64)
    if not (word[at + (lengths >> 2) - 1] == lengths).all():
        return None  # a trailer that does not repeat its length
    is_epb = word[at] == pcapng.EPB_TYPE
    epb = at[is_epb]
    if not len(epb):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    iface = word[epb + 2].astype(np.int64)
    captured = word[epb + 5].astype(np.int64)
    later_idb = np.searchsorted(others, np.flatnonzero(is_epb) + first) - 1
    if (iface >= later_idb).any() or (captured > (lengths[is_epb] - 32)).any():
        return None  # an interface not described before its packets, or an overlong packet
    frames = linktypes[iface] == pcapng.LINKTYPE_USER0
    start = (epb[frames].astype(np.int64) << 2) + 28
    end = start + captured[frames]
    body = word.view(np.uint8)
    nonempty = end > start
    end[nonempty] -= body[end[nonempty] - 1] == 0
    return start, end


def candidates(word, low, high):
    """Word offsets in [low, high) that could start a block: a type vigil writes, a
    plausible length, the trailer repeating it."""
    size_words = len(word)
    part = word[low:high]
    candidate = np.flatnonzero((part == pcapng.EPB_TYPE) | (part == pcapng.IDB_TYPE) |
                               (part == pcapng.SHB_TYPE)) + low
    candidate = candidate[candidate + 1 < size_words]
    length = word[candidate + 1].astype(np.int64)
    step = length >> 2
    plausible = ((length >= 12) & ((length & 3) == 0) & (step <= MAX_BLOCK_WORDS) &
                 (candidate + step <= size_words))
    candidate, length, step = candidate[plausible], length[plausible], step[plausible]
    return candidate[word[candidate + step - 1] == length]


def tiling(size_words, candidate, length):
    """`candidate` if its blocks (`length` bytes each) tile all `size_words` exactly, else
    None."""
    if len(candidate) and candidate[0] == 0:
        ends = candidate + (length >> 2)
        if ends[-1] == size_words and (ends[:-1] == candidate[1:]).all():
            return candidate
    return None


def block_starts(word):
    """Word offsets of every block, or None if the lengths do not chain to the end.

    Each block's length gives the next one's place, so the walk is sequential. It is done
    in numpy first: every word that could start a block is a candidate (candidates), and
    when the candidates tile the whole buffer exactly, they are the blocks. A packet's
    bytes could pass for a block start only by chance; then the candidates do not tile,
    and a plain walk decides."""
    candidate = candidates(word, 0, len(word))
    at = tiling(len(word), candidate, word[candidate + 1].astype(np.int64))
    return walk_blocks(word) if at is None else at


def walk_blocks(word):
    """block_starts one block at a time."""
    size_words = len(word)
    words = memoryview(np.ascontiguousarray(word, dtype="<u4")).cast("B").cast("I")
    positions = []
    append = positions.append
    at = 0
    try:
        while at + 2 <= size_words:
            length = words[at + 1]
            if length < 12 or length & 3 or (length >> 2) > MAX_BLOCK_WORDS:
                return None
            append(at)
            at += length >> 2
    finally:
        words.release()
    if at != size_words:
        return None  # a truncated last block
    return np.array(positions, dtype=np.int64)
