"""Store-and-forward queue on flash: append-only segments that survive a power cut.

API (MicroPython and CPython; uses `os`, `struct`, `binascii`, file I/O and persist.makedirs):

    q = Queue(root_dir, capacity_records=10000, segment_records=128)
    q.append(counter, is_alarm, frame) -> evicted_now   # durable when it returns
    q.ack(counters) -> acked_now     # a list, tuple or range; durable when it returns
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

RAM: a small list per segment plus one cached segment index (counters, frame lengths, flags:
6 bytes per record of one segment; a record's offset is the sum of the lengths before it), so
10,000 records need a few kilobytes, not one object per record.
"""

import binascii
import os
import struct
from array import array

from firmware.persist import makedirs

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)


_MAGIC = const(0x56)
_ACK_MAGIC = const(0x5A)
_HEADER = "<BBHI"
_HEADER_SIZE = const(8)
_CRC_SIZE = const(4)
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


class Queue:
    def __init__(self, root_dir, capacity_records=10000, segment_records=128):
        if capacity_records < 1 or segment_records < 1:
            raise ValueError("queue: capacity_records or segment_records < 1")
        self.root = root_dir.rstrip("/")
        self.capacity_records = capacity_records
        self.segment_records = segment_records
        self.evicted_total = 0
        self._segments = []  # metadata lists, oldest first
        # the index of the one segment held in RAM (_scan), preallocated
        self._indexed = -1  # its seq, -1 for none
        self._count = 0  # records indexed
        self._counters = array("I", bytes(4 * segment_records))
        self._lengths = bytearray(segment_records)  # frame lengths
        self._flags = bytearray(segment_records)
        makedirs(self.root)
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
                self._delete(seq)  # an orphan left by a cut between a segment's two deletes
        scratch = bytearray(_MAX_FRAME + _CRC_SIZE)
        for seq in segs:
            seg = self._scan(seq, scratch, 0xFFFFFFFF)  # every record
            if seg[_LIVE]:
                self._segments.append(seg)
            else:
                self._delete(seq)
        for seg in self._segments[:-1]:
            seg[_SEALED] = True  # only the newest segment takes appends

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
        length = len(frame)
        if not 0 < length <= _MAX_FRAME or not 0 <= counter <= 0xFFFFFFFF:
            raise ValueError("queue: frame length %d or counter %d" % (length, counter))
        evicted = 0
        while len(self) >= self.capacity_records:
            # full: the oldest live routine record gives way, an alarm never does
            for seg in self._segments:
                if seg[_LIVE] > seg[_LIVE_ALARMS]:
                    self._index(seg)
                    i = 0
                    while self._flags[i]:  # an alarm or retired
                        i += 1
                    self._retire(seg, (self._counters[i],), _REASON_EVICTED)
                    break
            else:
                if is_alarm:
                    break  # above capacity: the real limit is flash space
                self.evicted_total += 1  # full of alarms: the new routine record gives way
                return evicted + 1
            self.evicted_total += 1
            evicted += 1
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg[_SEALED]:
            seg = [seg[_SEQ] + 1 if seg else 0, 0, 0, 0, 0xFFFFFFFF, 0, False]
            self._segments.append(seg)
        flags = _FLAG_ALARM if is_alarm else 0
        header = struct.pack(_HEADER, _MAGIC, flags, length, counter)
        with open(self._file(seg[_SEQ], "seg"), "ab") as f:
            f.write(header)
            f.write(frame)
            f.write(struct.pack("<I", binascii.crc32(frame, binascii.crc32(header))))
        # update RAM only after the close returned: the record is durable now
        records = seg[_RECORDS]
        if self._indexed == seg[_SEQ]:
            self._counters[records] = counter
            self._lengths[records] = length
            self._flags[records] = flags
            self._count = records + 1
        seg[_RECORDS] = records + 1
        seg[_LIVE] += 1
        seg[_LIVE_ALARMS] += flags
        if counter < seg[_MIN_COUNTER]:
            seg[_MIN_COUNTER] = counter
        if counter > seg[_MAX_COUNTER]:
            seg[_MAX_COUNTER] = counter
        if records + 1 >= self.segment_records:
            seg[_SEALED] = True
        return evicted

    def ack(self, counters):
        # by segment, so a batch costs one flash commit per segment, not per counter
        done = 0
        for seg in self._segments[:]:  # a copy: _retire drops a segment it empties
            if seg[_LIVE]:
                for counter in counters:
                    if seg[_MIN_COUNTER] <= counter <= seg[_MAX_COUNTER]:
                        done += self._retire(seg, counters, _REASON_ACKED)
                        break
        return done

    def get(self, counter):
        for seg in self._segments:
            if seg[_LIVE] and seg[_MIN_COUNTER] <= counter <= seg[_MAX_COUNTER]:
                self._index(seg)
                for i in range(self._count):
                    if self._counters[i] == counter and not self._flags[i] & _FLAG_RETIRED:
                        record = []
                        self._read(seg, (i,), record)
                        return record[0][1:]
        return None

    def pending(self, limit=8, alarms_first=False, exclude=()):
        out = []
        # one pass over the segments for every record, or one for alarms then one for the rest
        for want_alarm in (True, False) if alarms_first else (None,):
            for seg in self._segments:
                if len(out) >= limit:
                    return out
                if want_alarm is None:
                    has_any = seg[_LIVE]
                elif want_alarm:
                    has_any = seg[_LIVE_ALARMS]
                else:
                    has_any = seg[_LIVE] - seg[_LIVE_ALARMS]
                if not has_any:
                    continue  # no flash read for a segment without a wanted record
                self._index(seg)
                wanted = []
                for i in range(self._count):
                    flag = self._flags[i]
                    if flag & _FLAG_RETIRED or self._counters[i] in exclude:
                        continue
                    if want_alarm is not None and bool(flag & _FLAG_ALARM) != want_alarm:
                        continue
                    wanted.append(i)
                    if len(out) + len(wanted) >= limit:
                        break
                if wanted:
                    self._read(seg, wanted, out)
        return out

    # ---- private ------------------------------------------------------------------------

    def _file(self, seq, kind):
        return "%s/q%08d.%s" % (self.root, seq, kind)

    def _scan(self, seq, scratch, limit):
        """Index segment `seq` (at most `limit` records) and its .ack file into RAM; returns
        the segment's metadata list. At load `scratch` (a bytearray for one frame and its
        crc) verifies the checksums; later scans trust what the load verified."""
        self._indexed = -1
        counters = self._counters
        lengths = self._lengths
        flags = self._flags
        n = 0
        seg = [seq, 0, 0, 0, 0xFFFFFFFF, 0, False]
        header = bytearray(_HEADER_SIZE)
        with open(self._file(seq, "seg"), "rb") as f:
            while n < limit:
                got = f.readinto(header)
                if got != _HEADER_SIZE:
                    if got:
                        seg[_SEALED] = True
                    break
                magic, flag, length, counter = struct.unpack(_HEADER, header)
                if magic != _MAGIC or length == 0 or length > _MAX_FRAME or flag & ~_FLAG_ALARM:
                    seg[_SEALED] = True
                    break
                if scratch is None:
                    f.seek(length + _CRC_SIZE, 1)
                else:
                    body = memoryview(scratch)[: length + _CRC_SIZE]
                    if f.readinto(body) != length + _CRC_SIZE or binascii.crc32(
                            body[:length], binascii.crc32(header)) != struct.unpack(
                            "<I", body[length:])[0]:
                        seg[_SEALED] = True
                        break
                if n == len(flags):  # a segment written with a larger segment_records
                    counters.append(0)
                    lengths.append(0)
                    flags.append(0)
                counters[n] = counter
                lengths[n] = length
                flags[n] = flag
                n += 1
                if counter < seg[_MIN_COUNTER]:
                    seg[_MIN_COUNTER] = counter
                if counter > seg[_MAX_COUNTER]:
                    seg[_MAX_COUNTER] = counter
        seg[_RECORDS] = n
        if n >= self.segment_records:
            seg[_SEALED] = True
        try:
            acks = open(self._file(seq, "ack"), "rb")
        except OSError:
            pass  # nothing retired yet
        else:
            entry = header  # the same 8 bytes
            with acks:
                while acks.readinto(entry) == _ACK_SIZE:
                    counter, _reason, magic, check = struct.unpack("<IBBH", entry)
                    if magic != _ACK_MAGIC or check != binascii.crc32(
                            memoryview(entry)[:6]) & 0xFFFF:
                        break  # torn tail: entries after it were never durable
                    for i in range(n):
                        if counters[i] == counter:
                            flags[i] |= _FLAG_RETIRED
        for i in range(n):
            if not flags[i] & _FLAG_RETIRED:
                seg[_LIVE] += 1
                seg[_LIVE_ALARMS] += flags[i]  # & _FLAG_ALARM: the only other flag
        self._count = n
        self._indexed = seq
        return seg

    def _index(self, seg):
        if self._indexed != seg[_SEQ]:
            # never trust bytes beyond what the load verified
            self._scan(seg[_SEQ], None, seg[_RECORDS])

    def _read(self, seg, indices, out):
        """Append (counter, is_alarm, frame) of these indexed records to `out`."""
        lengths = self._lengths
        with open(self._file(seg[_SEQ], "seg"), "rb") as f:
            for i in indices:
                # record i begins after i headers, frames and checksums
                f.seek(i * (_HEADER_SIZE + _CRC_SIZE) + sum(lengths[:i]) + _HEADER_SIZE)
                out.append((self._counters[i], bool(self._flags[i] & _FLAG_ALARM),
                            f.read(lengths[i])))

    def _retire(self, seg, counters, reason):
        """Retire the live records of `seg` with these counters; returns how many."""
        self._index(seg)
        counts = self._counters
        flags = self._flags
        # Three passes, no lists: count, write the retire log (sized once: built by += it
        # would be a new bytes per entry), then mark RAM once the log is durable. An ACK
        # comes at the heap's peak.
        hits = 0
        for i in range(self._count):
            if counts[i] in counters and not flags[i] & _FLAG_RETIRED:
                hits += 1
        if not hits:
            return 0
        entries = bytearray(_ACK_SIZE * hits)
        at = 0
        for i in range(self._count):
            if counts[i] in counters and not flags[i] & _FLAG_RETIRED:
                struct.pack_into("<IBB", entries, at, counts[i], reason, _ACK_MAGIC)
                struct.pack_into("<H", entries, at + 6,
                                 binascii.crc32(memoryview(entries)[at:at + 6]) & 0xFFFF)
                at += _ACK_SIZE
        with open(self._file(seg[_SEQ], "ack"), "ab") as f:
            f.write(entries)
        for i in range(self._count):
            if counts[i] in counters and not flags[i] & _FLAG_RETIRED:
                seg[_LIVE] -= 1
                seg[_LIVE_ALARMS] -= flags[i]  # & _FLAG_ALARM: not yet retired
                flags[i] |= _FLAG_RETIRED
        if seg[_LIVE] == 0 and seg[_SEALED]:
            self._delete(seg[_SEQ])
            self._segments.remove(seg)
        return hits

    def _delete(self, seq):
        if self._indexed == seq:
            self._indexed = -1
        # .seg first: an orphan .ack is harmless, an orphan .seg would resurrect records
        for kind in ("seg", "ack"):
            try:
                os.remove(self._file(seq, kind))
            except OSError:
                pass
