"""Recordings of device sessions: pcapng (DESIGN decision 8), written and read here.

    with Writer("run.pcapng", meta={"clock": "virtual", "scenario": "panic-walk"}) as w:
        link = w.interface("dev1003", description="link of device 1003", meta={"device_id": 1003})
        stim = w.interface("stimuli", linktype=LINKTYPE_USER1)
        w.frame(link, time_ns, wire_bytes, "up")           # "up": device -> host (inbound)
        w.stimulus(stim, time_ns, {"device": 1003, "kind": "button", "hold_ms": 2000})

    reader = Reader("run.pcapng")        # or an open binary file, stdin included
    reader.meta, reader.interfaces       # section metadata; interfaces seen so far
    for packet in reader:                # Packet: interface, time_ns, data, direction, offset
        ...
    reader.error                         # None, or one line: where and why reading stopped

Layout of a vigil recording:
- Section Header: shb_userappl "vigil", and an opt_comment "vigil-meta {json}" with `clock`
  ("virtual": emulator time, UTC of the scenario start plus virtual time; "wall": the host's
  clock), firmware version, schema hash, device ids, transport URL, scenario, its sha256 and
  the seed where the session came from the emulator.
- One interface per device link, LINKTYPE_USER0 (147): one packet per protocol frame, exactly
  the bytes on the wire (COBS, ending in its 0x00 delimiter). epb_flags direction: inbound is
  device -> host ("up"), outbound is host -> device ("down"). Timestamps in nanoseconds
  (if_tsresol 9). The interface comment carries {"device_id": ..., "transport": ...}.
- One stimuli interface, LINKTYPE_USER1 (148): one JSON object a packet (button presses,
  charger, battery, power cuts). GNSS routes are never written out: they are the victim's
  whereabouts. A stimulus names the route by the scenario it came from and its sha256.

Reading never raises on file content: a truncated or corrupt block ends the iteration, every
packet before it is kept, and `error` says where it stopped. Memory stays bounded (one chunk
plus one block of at most MAX_BLOCK bytes), so a stream or a device file cannot fill it.
"""
import json

from host.recording.pcapng import (
    BYTE_ORDER_MAGIC,
    EPB_HEAD_SIZE,
    EPB_TYPE,
    FLAG_INBOUND,
    FLAG_OUTBOUND,
    IDB_TYPE,
    IF_DESCRIPTION,
    IF_NAME,
    IF_TSRESOL,
    LINKTYPE_USER0,
    LINKTYPE_USER1,
    OPT_COMMENT,
    SHB_TYPE,
    SHB_USERAPPL,
    Block,
    IdbBody,
    PcapngError,
    ShbBody,
    build_idb,
    build_shb,
    epb_flags,
    option_values,
    pack_epb,
    unpack_epb_head,
)

__all__ = ["Writer", "Reader", "Packet", "Interface", "RecordingError", "LINKTYPE_USER0",
           "LINKTYPE_USER1", "META_PREFIX", "read_all"]

META_PREFIX = "vigil-meta "
MAX_BLOCK = 1 << 20  # far above any vigil block (a frame is at most 243 bytes)
CHUNK = 1 << 20
_DIRECTION_FLAGS = {"up": FLAG_INBOUND, "down": FLAG_OUTBOUND}
_FLAG_DIRECTIONS = {FLAG_INBOUND: "up", FLAG_OUTBOUND: "down"}


class RecordingError(ValueError):
    """A recording that cannot be used at all (not pcapng, cannot open); one line."""


class Interface:
    __slots__ = ("index", "linktype", "name", "description", "meta", "tsresol_ns")

    def __init__(self, index, linktype, name="", description="", meta=None, tsresol_ns=1000):
        self.index = index
        self.linktype = linktype
        self.name = name
        self.description = description
        self.meta = meta or {}
        self.tsresol_ns = tsresol_ns

    @property
    def device_id(self):
        return self.meta.get("device_id")

    @property
    def is_stimuli(self):
        return self.linktype == LINKTYPE_USER1

    def __repr__(self):
        return "Interface(%d, %d, %r)" % (self.index, self.linktype, self.name)


class Packet:
    __slots__ = ("interface", "time_ns", "data", "direction", "offset")

    def __init__(self, interface, time_ns, data, direction, offset):
        self.interface = interface
        self.time_ns = time_ns
        self.data = data
        self.direction = direction
        self.offset = offset

    def stimulus(self):
        """The JSON record of a stimuli packet (None if it is not valid JSON)."""
        try:
            return json.loads(self.data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None

    def __repr__(self):
        return "Packet(if=%d t=%d %s %s)" % (self.interface.index, self.time_ns,
                                              self.direction, self.data.hex())


def _meta_comment(meta):
    return (META_PREFIX + json.dumps(meta, sort_keys=True, separators=(",", ":"))).encode()


class Writer:
    """Writes one pcapng section. `target` is a path or a binary file object (left open).
    With flush_each, every packet reaches the file at once (a live tap that may be killed)."""

    def __init__(self, target, meta=None, flush_each=False):
        self._own = isinstance(target, (str, bytes)) or hasattr(target, "__fspath__")
        self._file = open(target, "wb") if self._own else target
        self.flush_each = flush_each
        self.meta = dict(meta or {})
        self.meta.setdefault("format", "vigil-recording")
        self.meta.setdefault("version", 1)
        self.interfaces = []
        self.packets = 0
        self._file.write(build_shb([(SHB_USERAPPL, b"vigil"), (OPT_COMMENT,
                                                                _meta_comment(self.meta))]))

    def interface(self, name, linktype=LINKTYPE_USER0, description="", meta=None):
        """Declare an interface; returns its index for frame()/stimulus()."""
        index = len(self.interfaces)
        pairs = [(IF_NAME, name.encode()), (IF_TSRESOL, b"\x09")]
        if description:
            pairs.append((IF_DESCRIPTION, description.encode()))
        if meta:
            pairs.append((OPT_COMMENT, _meta_comment(meta)))
        self._file.write(build_idb(linktype, pairs))
        self.interfaces.append(Interface(index, linktype, name, description, meta, 1))
        return index

    def frame(self, interface, time_ns, data, direction):
        """One packet: `data` as it crossed the link; direction "up" or "down"."""
        self._file.write(pack_epb(interface, int(time_ns), bytes(data),
                                  _DIRECTION_FLAGS[direction]))
        self.packets += 1
        if self.flush_each:
            self._file.flush()

    def stimulus(self, interface, time_ns, record):
        data = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        self._file.write(pack_epb(interface, int(time_ns), data, FLAG_OUTBOUND))
        self.packets += 1
        if self.flush_each:
            self._file.flush()

    def flush(self):
        self._file.flush()

    def close(self):
        if self._file is None:
            return
        self._file.flush()
        if self._own:
            self._file.close()
        self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_meta(option_pairs):
    meta = {}
    for code, value in option_pairs:
        if code == OPT_COMMENT:
            text = value.decode("utf-8", "replace")
            if text.startswith(META_PREFIX):
                try:
                    found = json.loads(text[len(META_PREFIX):])
                except ValueError:
                    continue
                if isinstance(found, dict):
                    meta.update(found)
    return meta


class Reader:
    """Iterates the packets of a pcapng file or stream (see the module docstring)."""

    def __init__(self, source, name=None, chunk_size=CHUNK):
        self.name = name or (source if isinstance(source, str) else
                             getattr(source, "name", "<stream>"))
        self._own = isinstance(source, str) or hasattr(source, "__fspath__")
        try:
            self._file = open(source, "rb") if self._own else source
        except OSError as e:
            raise RecordingError("%s: cannot read (%s)" % (self.name, e.strerror or e)) from None
        self._read = getattr(self._file, "read1", self._file.read)
        self.chunk_size = chunk_size
        self.meta = {}
        self.interfaces = []
        self.sections = 0
        self.error = None
        self.offset = 0  # file offset of the next block
        self._buf = b""
        self._pos = 0
        self._eof = False
        first = self._peek(4)
        if len(first) < 4 or int.from_bytes(first, "little") != SHB_TYPE:
            raise RecordingError("%s: not a pcapng file (no section header at byte 0)"
                                 % self.name)
        self._read_section_header()

    def _read_section_header(self):
        """Parse the first block now, so `meta` is known before any packet is read. A
        broken one leaves `error` set and nothing to iterate."""
        head = self._peek(8)
        length = int.from_bytes(head[4:8], "little") if len(head) == 8 else 0
        if length < 28 or length % 4 or length > MAX_BLOCK:
            self._stop("corrupt section header (length %d)" % length)
            return
        raw = self._peek(length)
        if len(raw) < length:
            self._stop("truncated section header (%d of %d bytes)" % (len(raw), length))
            return
        try:
            self._other_block(SHB_TYPE, raw)
        except PcapngError as e:
            self._stop(str(e))
            return
        self._pos += length
        self.offset += length

    def close(self):
        if self._own and self._file is not None:
            self._file.close()
        self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- buffering -------------------------------------------------------------------
    def _peek(self, size):
        """At least `size` bytes from the current position, unless the input ends first."""
        while len(self._buf) - self._pos < size and not self._eof:
            try:
                more = self._read(max(self.chunk_size, size))
            except OSError as e:
                raise RecordingError("%s: cannot read (%s)" % (self.name, e.strerror or e)) \
                    from None
            if not more:
                self._eof = True
                break
            self._buf = self._buf[self._pos:] + more
            self._pos = 0
        return self._buf[self._pos:self._pos + size]

    def _stop(self, why):
        self.error = "stopped at byte %d: %s" % (self.offset, why)

    # --- blocks ----------------------------------------------------------------------
    def __iter__(self):
        if self.error:
            return
        interfaces = self.interfaces
        directions = _FLAG_DIRECTIONS
        unpack_head = unpack_epb_head
        while True:
            buf, pos = self._buf, self._pos
            if len(buf) - pos >= EPB_HEAD_SIZE:
                head = unpack_head(buf, pos)
                block_type, length = head[0], head[1]
            else:
                head = None
                start = self._peek(8)
                if not start:
                    return
                if len(start) < 8:
                    self._stop("truncated block header (%d bytes)" % len(start))
                    return
                block_type = int.from_bytes(start[:4], "little")
                length = int.from_bytes(start[4:8], "little")
                buf, pos = self._buf, self._pos
            if length < 12 or length % 4 or length > MAX_BLOCK:
                self._stop("corrupt block length %d" % length)
                return
            if len(self._buf) - self._pos < length:
                if len(self._peek(length)) < length:
                    self._stop("truncated block (%d of %d bytes)"
                               % (len(self._buf) - self._pos, length))
                    return
                buf, pos = self._buf, self._pos
                head = None
            end = pos + length
            if int.from_bytes(buf[end - 4:end], "little") != length:
                self._stop("corrupt block (trailing length does not match %d)" % length)
                return
            if block_type == EPB_TYPE and length >= 32:
                if head is None:
                    head = unpack_head(buf, pos)
                captured = head[5]
                iface_index = head[2]
                data_end = pos + 28 + captured
                if data_end > end - 4 or iface_index >= len(interfaces):
                    self._stop("corrupt packet block (%s)" % (
                        "captured length %d" % captured if data_end > end - 4 else
                        "interface %d not declared" % iface_index))
                    return
                iface = interfaces[iface_index]
                flags = epb_flags(buf, data_end + (-captured % 4), end - 4)
                time_ns = (head[3] << 32 | head[4]) * iface.tsresol_ns
                packet = Packet(iface, time_ns, buf[pos + 28:data_end],
                                directions.get(flags & 3), self.offset)
                self._pos = end
                self.offset += length
                yield packet
                continue
            try:
                self._other_block(block_type, buf[pos:end])
            except PcapngError as e:
                self._stop(str(e))
                return
            self._pos = end
            self.offset += length

    def _other_block(self, block_type, raw):
        try:
            body = Block.parse(raw).body
            if block_type == SHB_TYPE:
                if int.from_bytes(body[:4], "little") != BYTE_ORDER_MAGIC:
                    raise PcapngError("big-endian or corrupt section header (not supported)")
                shb = ShbBody.parse(body)
                self.sections += 1
                self.interfaces.clear()
                self.meta = _read_meta(option_values(shb.options))
            elif block_type == IDB_TYPE:
                idb = IdbBody.parse(body)
                pairs = option_values(idb.options)
                found = dict(pairs)
                resol = found.get(IF_TSRESOL, b"\x06")[:1][0] if found.get(IF_TSRESOL) else 6
                if resol & 0x80 or resol > 9:
                    raise PcapngError("interface %d: timestamp resolution 0x%02x not supported"
                                      % (len(self.interfaces), resol))
                self.interfaces.append(Interface(
                    len(self.interfaces), idb.linktype,
                    found.get(IF_NAME, b"").decode("utf-8", "replace"),
                    found.get(IF_DESCRIPTION, b"").decode("utf-8", "replace"),
                    _read_meta(pairs), 10 ** (9 - resol)))
            # Other block types (statistics, name resolution, custom) carry nothing vigil
            # needs; they are skipped whole, as pcapng readers must.
        except PcapngError:
            raise
        except Exception as e:  # construct's errors: the block does not match its declaration
            raise PcapngError("corrupt block type 0x%08x (%s)"
                              % (block_type, str(e).splitlines()[0][:80])) from None


def read_all(path):
    """(reader, [packets]) for a whole file; reader.error says if it stopped early."""
    reader = Reader(path)
    try:
        packets = list(reader)
    finally:
        reader.close()
    return reader, packets
