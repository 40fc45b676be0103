"""Recording taps on live transports (DESIGN decision 7: every transport can be tapped).

    recorder = Recorder("session.pcapng", meta={"transport": url})
    recorder.attach(transport)          # one interface per transport: its frames both ways
    ...
    recorder.close()

A transport calls its taps with ("rx" | "tx", frame, time_ns) from whichever thread moved
the frame; host-side "rx" is device -> host ("up"). `vigil centre --record` serves its links
with `recording_centre_server(recorder)`, which records what each link's peer sent (split
into frames at the delimiters) and every frame the centre sent. Every packet is flushed at once, so a
recording of a process that is killed holds everything up to the kill.
"""
import threading

from host.recording import Writer
from protocol import messages


class Recorder:
    def __init__(self, target, meta=None):
        meta = dict(meta or {})
        meta.setdefault("clock", "wall")
        meta.setdefault("schema_hash", messages.SCHEMA_HASH)
        self._writer = Writer(target, meta=meta, flush_each=True)
        self._lock = threading.Lock()
        self._closed = False

    def attach(self, transport, name=None, device_id=None, sent="down"):
        """Record every frame `transport` sends or returns from now on. `sent` is the
        direction of what this side sends: "down" for a host, "up" where this side plays
        the device (vigil replay of uplinks)."""
        directions = {"tx": sent, "rx": "up" if sent == "down" else "down"}
        meta = {"transport": transport.url}
        if device_id is not None:
            meta["device_id"] = device_id
        with self._lock:
            index = self._writer.interface(name or transport.url,
                                           description="vigil link %s" % transport.url,
                                           meta=meta)

        def tap(direction, frame, time_ns):
            self._write(index, time_ns, frame, directions[direction])
        transport.add_tap(tap)
        return index

    def _write(self, index, time_ns, frame, direction):
        with self._lock:
            if not self._closed:
                self._writer.frame(index, time_ns, frame, direction)

    @property
    def packets(self):
        return self._writer.packets

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()


class FrameSplitter:
    """Bytes as they arrive -> wire frames (each ending in its 0x00). A run of more than
    `limit` bytes with no delimiter (noise, a flood) is recorded as one packet of its first
    `limit` bytes and the rest is dropped until the next delimiter."""

    def __init__(self, limit=4096):
        self.limit = limit
        self._pending = bytearray()
        self._discarding = False

    def feed(self, data):
        out = []
        parts = bytes(data).split(b"\x00")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if not self._discarding:
                self._pending += part
                if len(self._pending) > self.limit:
                    out.append(bytes(self._pending[:self.limit]))
                    self._pending.clear()
                    self._discarding = True
            if not last:
                if self._pending:
                    out.append(bytes(self._pending) + b"\x00")
                self._pending.clear()
                self._discarding = False
        return out


def recording_centre_server(recorder):
    """A host.centre.server.CentreServer class whose links are recorded by `recorder`: what
    each link's peer sent ("up") and every frame the centre sent it ("down")."""
    import time

    from host.centre.server import CentreServer

    class RecordingCentreServer(CentreServer):
        def _open(self, link_id, peer, send, close):
            with recorder._lock:
                index = recorder._writer.interface(
                    link_id, description="vigil link %s" % peer, meta={"transport": peer})
            self._recorded = getattr(self, "_recorded", {})
            self._recorded[link_id] = (index, FrameSplitter())
            super()._open(link_id, peer, send, close)

        def _data(self, link_id, data):
            entry = getattr(self, "_recorded", {}).get(link_id)
            if entry is not None and link_id in self.links:
                now_ns = time.time_ns()
                for frame in entry[1].feed(data):
                    recorder._write(entry[0], now_ns, frame, "up")
            super()._data(link_id, data)

        def _send(self, link_id, wire):
            entry = getattr(self, "_recorded", {}).get(link_id)
            if entry is not None and link_id in self.links:
                recorder._write(entry[0], time.time_ns(), wire, "down")
            super()._send(link_id, wire)

    return RecordingCentreServer
