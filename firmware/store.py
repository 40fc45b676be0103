"""Store-and-forward queue on flash: append-only segments that survive a power cut.

API (MicroPython and CPython; uses only `os`, `struct`, `binascii` and file I/O):

    q = Queue(root_dir, capacity_records=10000, segment_records=128)
    q.append(counter, is_alarm, frame) -> evicted_now   # durable when it returns
    q.ack(counters) -> acked_now     # iterable of counters; durable when it returns
    q.ack_one(counter) -> 0 or 1
    q.pending(limit=8, alarms_first=False, exclude=()) -> [(counter, is_alarm, frame), ...]
    q.get(counter) -> (is_alarm, frame) or None    one live record, without loading the rest
    len(q)              live (unacked, not evicted) records
    q.alarm_count       live alarm records
    q.evicted_total     routine records evicted (or refused) since this Queue was opened

`pending` returns records oldest first (append order). With `alarms_first=True` it returns
every live alarm, oldest first, before any routine record. `exclude` skips counters the
caller already has in flight. Counters are expected to be unique within the queue.

Capacity and eviction: `capacity_records` bounds the live records. An append that finds the
queue full first retires the oldest live routine (non-alarm) record and counts it as evicted.
If no routine record is left:
  - an alarm is still appended, above capacity: alarms are never evicted, and the real limit
    is then flash space (OSError ENOSPC from the filesystem is passed to the caller);
  - a routine record is refused and counted as evicted (append returns 1).

On flash, under root_dir:
  qNNNNNNNN.seg  records appended in order, at most `segment_records` per file. A record is
                 header <BBHI (magic 0x56, flags bit0 = alarm, frame length, counter),
                 the frame, then crc32 (<I) over header and frame.
  qNNNNNNNN.ack  retire log of that segment: 8-byte entries <IBBH (counter, reason 1 = acked
                 2 = evicted, magic 0x5A, low 16 bits of crc32 over the first 6 bytes).
A segment whose records are all retired is deleted (.seg first, then .ack, so a cut between
leaves only an orphan .ack, removed at the next load). Every append opens, writes and closes
the file, which on littlefs commits atomically; on other filesystems a torn tail fails its
length or checksum and is ignored at load, never misread. A segment whose tail was found torn is
sealed: new records go to a new segment, so garbage never sits between valid records.

RAM: a small list per segment plus one cached segment index (counters, offsets, flags), so
10,000 records need a few kilobytes, not one object per record.
"""

import binascii
import os
import struct
from array import array

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)


_MAGIC = const(0x56)
_ACK_MAGIC = const(0x5A)
_HEADER = "<BBHI"
_HEADER_SIZE = const(8)
_CRC_SIZE = const(4)
_ACK_ENTRY = "<IBBH"
_ACK_SIZE = const(8)
_MAX_FRAME = const(250)
_REASON_ACKED = const(1)
_REASON_EVICTED = const(2)
_FLAG_ALARM = const(1)
_FLAG_RETIRED = const(2)

# segment metadata list slots
_SEQ = const(0)
_RECORDS = const(1)  # valid records in the file
_LIVE = const(2)
_LIVE_ALARMS = const(3)
_MIN_COUNTER = const(4)
_MAX_COUNTER = const(5)
_SEALED = const(6)  # no more appends (full, or torn tail found)
_BYTES = const(7)  # valid bytes in the file (append position)


def _join(root, name):
    return root + "/" + name if root else name


def _seg_name(seq):
    return "q%08d.seg" % seq


def _ack_name(seq):
    return "q%08d.ack" % seq


def _ack_entry(counter, reason):
    head = struct.pack("<IBB", counter, reason, _ACK_MAGIC)
    return head + struct.pack("<H", binascii.crc32(head) & 0xFFFF)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


class _Index:
    """Per-record index of one segment: counters, file offsets and flags, preallocated."""

    def __init__(self, capacity):
        self.seq = -1  # no segment
        self.n = 0
        self.counters = array("I", bytes(4 * capacity))
        self.offsets = array("I", bytes(4 * capacity))
        self.flags = bytearray(capacity)

    def add(self, counter, offset, flags):
        n = self.n
        if n == len(self.flags):  # a segment written with a larger segment_records
            self.counters.append(0)
            self.offsets.append(0)
            self.flags.append(0)
        self.counters[n] = counter
        self.offsets[n] = offset
        self.flags[n] = flags
        self.n = n + 1


class Queue:
    def __init__(self, root_dir, capacity_records=10000, segment_records=128):
        if capacity_records < 1 or segment_records < 1:
            raise ValueError("queue: capacity_records and segment_records must be >= 1")
        self.root = root_dir.rstrip("/") if root_dir != "/" else ""
        self.capacity_records = capacity_records
        self.segment_records = segment_records
        self.evicted_total = 0
        self._segments = []  # metadata lists, oldest first
        self._index_buf = _Index(segment_records)  # the one segment indexed in RAM
        self._header = bytearray(_HEADER_SIZE)
        self._buf = bytearray(_HEADER_SIZE + _MAX_FRAME + _CRC_SIZE)
        self._ensure_dir()
        self._load()

    # ---- public -------------------------------------------------------------------------

    def __len__(self):
        n = 0
        for seg in self._segments:
            n += seg[_LIVE]
        return n

    @property
    def alarm_count(self):
        n = 0
        for seg in self._segments:
            n += seg[_LIVE_ALARMS]
        return n

    def append(self, counter, is_alarm, frame):
        if len(frame) > _MAX_FRAME or len(frame) == 0:
            raise ValueError("queue: frame length %d not in 1..%d" % (len(frame), _MAX_FRAME))
        if not 0 <= counter <= 0xFFFFFFFF:
            raise ValueError("queue: counter %r is not a u32" % (counter,))
        evicted = 0
        while len(self) >= self.capacity_records:
            if not self._evict_oldest_routine():
                break
            evicted += 1
        if len(self) >= self.capacity_records and not is_alarm:
            # full of alarms: the new routine record is the one that gives way
            self.evicted_total += 1
            return evicted + 1
        self._write_record(counter, is_alarm, frame)
        return evicted

    def ack_one(self, counter):
        return self.ack((counter,))

    def ack(self, counters):
        # group by segment so a batch costs one flash commit per segment, not per counter
        groups = {}
        for counter in counters:
            for seg in self._segments:
                if seg[_LIVE] and seg[_MIN_COUNTER] <= counter <= seg[_MAX_COUNTER]:
                    if seg[_SEQ] not in groups:
                        groups[seg[_SEQ]] = (seg, [])
                    groups[seg[_SEQ]][1].append(counter)
        done = 0
        for seq in sorted(groups):
            seg, group = groups[seq]
            done += self._retire(seg, group, _REASON_ACKED)
        return done

    def get(self, counter):
        for seg in self._segments:
            if seg[_LIVE] and seg[_MIN_COUNTER] <= counter <= seg[_MAX_COUNTER]:
                index = self._index(seg)
                for i in range(index.n):
                    if index.counters[i] == counter and not index.flags[i] & _FLAG_RETIRED:
                        return bool(index.flags[i] & _FLAG_ALARM), self._read_frame(seg, i)
        return None

    def _read_frame(self, seg, i):
        with open(_join(self.root, _seg_name(seg[_SEQ])), "rb") as f:
            f.seek(self._index_buf.offsets[i])
            f.readinto(self._header)
            return f.read(struct.unpack(_HEADER, self._header)[2])

    def pending(self, limit=8, alarms_first=False, exclude=()):
        out = []
        if alarms_first:
            self._collect(out, limit, exclude, True)
            self._collect(out, limit, exclude, False)
        else:
            self._collect(out, limit, exclude, None)
        return out

    # ---- loading ------------------------------------------------------------------------

    def _ensure_dir(self):
        path = ""
        for part in self.root.split("/"):
            if not part:
                continue
            path = path + "/" + part if path or self.root[0] == "/" else part
            if not _exists(path):
                os.mkdir(path)

    def _load(self):
        segs = []
        acks = []
        for name in os.listdir(self.root or "/"):
            if len(name) == 13 and name[0] == "q" and name[1:9].isdigit():
                if name.endswith(".seg"):
                    segs.append(int(name[1:9]))
                elif name.endswith(".ack"):
                    acks.append(int(name[1:9]))
        segs.sort()
        for seq in acks:
            if seq not in segs:
                _remove(_join(self.root, _ack_name(seq)))
        for seq in segs:
            seg = self._scan(seq, True)
            if seg[_LIVE] == 0:
                self._delete(seg)
                continue
            self._segments.append(seg)
        for seg in self._segments[:-1]:
            seg[_SEALED] = True  # only the newest segment takes appends

    def _scan(self, seq, verify, limit=0xFFFFFFFF):
        """Index segment `seq` (at most `limit` records) into self._index_buf.

        Returns the segment's metadata list."""
        index = self._index_buf
        index.seq = -1
        index.n = 0
        seg = [seq, 0, 0, 0, 0xFFFFFFFF, 0, False, 0]
        path = _join(self.root, _seg_name(seq))
        header = self._header
        with open(path, "rb") as f:
            offset = 0
            while index.n < limit:
                got = f.readinto(header)
                if got != _HEADER_SIZE:
                    if got:
                        seg[_SEALED] = True
                    break
                magic, flags, length, counter = struct.unpack(_HEADER, header)
                if magic != _MAGIC or length == 0 or length > _MAX_FRAME or flags & ~_FLAG_ALARM:
                    seg[_SEALED] = True
                    break
                if verify:
                    body = memoryview(self._buf)[: length + _CRC_SIZE]
                    if f.readinto(body) != length + _CRC_SIZE:
                        seg[_SEALED] = True
                        break
                    crc = binascii.crc32(body[:length], binascii.crc32(header))
                    if crc != struct.unpack("<I", body[length:])[0]:
                        seg[_SEALED] = True
                        break
                else:
                    f.seek(length + _CRC_SIZE, 1)
                index.add(counter, offset, flags)
                offset += _HEADER_SIZE + length + _CRC_SIZE
                if counter < seg[_MIN_COUNTER]:
                    seg[_MIN_COUNTER] = counter
                if counter > seg[_MAX_COUNTER]:
                    seg[_MAX_COUNTER] = counter
        seg[_RECORDS] = index.n
        seg[_BYTES] = offset
        if seg[_RECORDS] >= self.segment_records:
            seg[_SEALED] = True
        self._read_retired(seq, index)
        live = 0
        alarms = 0
        for i in range(index.n):
            flag = index.flags[i]
            if not flag & _FLAG_RETIRED:
                live += 1
                if flag & _FLAG_ALARM:
                    alarms += 1
        seg[_LIVE] = live
        seg[_LIVE_ALARMS] = alarms
        index.seq = seq
        return seg

    def _read_retired(self, seq, index):
        try:
            f = open(_join(self.root, _ack_name(seq)), "rb")
        except OSError:
            return
        entry = self._header  # 8 bytes, free while no segment file is being read
        counters = index.counters
        flags = index.flags
        with f:
            while f.readinto(entry) == _ACK_SIZE:
                counter, reason, magic, check = struct.unpack(_ACK_ENTRY, entry)
                if magic != _ACK_MAGIC or check != binascii.crc32(memoryview(entry)[:6]) & 0xFFFF:
                    break  # torn tail: entries after it were never durable
                for i in range(index.n):
                    if counters[i] == counter:
                        flags[i] |= _FLAG_RETIRED

    def _index(self, seg):
        if self._index_buf.seq != seg[_SEQ]:
            # never trust bytes beyond what the load verified
            self._scan(seg[_SEQ], False, seg[_RECORDS])
        return self._index_buf

    # ---- writing ------------------------------------------------------------------------

    def _write_record(self, counter, is_alarm, frame):
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg[_SEALED] or seg[_RECORDS] >= self.segment_records:
            if seg is not None:
                seg[_SEALED] = True
            seq = seg[_SEQ] + 1 if seg is not None else 0
            seg = [seq, 0, 0, 0, 0xFFFFFFFF, 0, False, 0]
            self._segments.append(seg)
        flags = _FLAG_ALARM if is_alarm else 0
        header = struct.pack(_HEADER, _MAGIC, flags, len(frame), counter)
        crc = binascii.crc32(frame, binascii.crc32(header))
        with open(_join(self.root, _seg_name(seg[_SEQ])), "ab") as f:
            f.write(header)
            f.write(frame)
            f.write(struct.pack("<I", crc))
        # update RAM only after the close returned: the record is durable now
        if self._index_buf.seq == seg[_SEQ]:
            self._index_buf.add(counter, seg[_BYTES], flags)
        seg[_BYTES] += _HEADER_SIZE + len(frame) + _CRC_SIZE
        seg[_RECORDS] += 1
        seg[_LIVE] += 1
        if is_alarm:
            seg[_LIVE_ALARMS] += 1
        if counter < seg[_MIN_COUNTER]:
            seg[_MIN_COUNTER] = counter
        if counter > seg[_MAX_COUNTER]:
            seg[_MAX_COUNTER] = counter
        if seg[_RECORDS] >= self.segment_records:
            seg[_SEALED] = True

    def _retire(self, seg, counters, reason):
        """Retire the live records of `seg` with these counters; returns how many."""
        index = self._index(seg)
        hits = []
        entries = b""
        for i in range(index.n):
            counter = index.counters[i]
            if counter in counters and not index.flags[i] & _FLAG_RETIRED:
                hits.append(i)
                entries += _ack_entry(counter, reason)
        if not hits:
            return 0
        with open(_join(self.root, _ack_name(seg[_SEQ])), "ab") as f:
            f.write(entries)
        for i in hits:
            index.flags[i] |= _FLAG_RETIRED
            seg[_LIVE] -= 1
            if index.flags[i] & _FLAG_ALARM:
                seg[_LIVE_ALARMS] -= 1
        if seg[_LIVE] == 0 and seg[_SEALED]:
            self._delete(seg)
            self._segments.remove(seg)
        return len(hits)

    def _delete(self, seg):
        if self._index_buf.seq == seg[_SEQ]:
            self._index_buf.seq = -1
        # .seg first: an orphan .ack is harmless, an orphan .seg would resurrect records
        _remove(_join(self.root, _seg_name(seg[_SEQ])))
        _remove(_join(self.root, _ack_name(seg[_SEQ])))

    def _evict_oldest_routine(self):
        for seg in self._segments:
            if seg[_LIVE] > seg[_LIVE_ALARMS]:
                index = self._index(seg)
                for i in range(index.n):
                    if not index.flags[i]:  # neither alarm nor retired
                        if self._retire(seg, (index.counters[i],), _REASON_EVICTED):
                            self.evicted_total += 1
                            return True
        return False

    def _collect(self, out, limit, exclude, want_alarm):
        for seg in self._segments:
            if len(out) >= limit:
                return
            if want_alarm is None:
                if not seg[_LIVE]:
                    continue
            elif want_alarm:
                if not seg[_LIVE_ALARMS]:
                    continue
            elif seg[_LIVE] == seg[_LIVE_ALARMS]:
                continue
            index = self._index(seg)
            wanted = []
            for i in range(index.n):
                flag = index.flags[i]
                if flag & _FLAG_RETIRED or index.counters[i] in exclude:
                    continue
                if want_alarm is not None and bool(flag & _FLAG_ALARM) != want_alarm:
                    continue
                wanted.append(i)
                if len(out) + len(wanted) >= limit:
                    break
            if not wanted:
                continue
            with open(_join(self.root, _seg_name(seg[_SEQ])), "rb") as f:
                for i in wanted:
                    f.seek(index.offsets[i])
                    f.readinto(self._header)
                    length = struct.unpack(_HEADER, self._header)[2]
                    out.append((index.counters[i], bool(index.flags[i] & _FLAG_ALARM), f.read(length)))
