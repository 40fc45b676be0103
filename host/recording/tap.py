"""Recording taps on live transports (DESIGN decision 7: every transport can be tapped).

    recorder = Recorder("session.pcapng", meta={"transport": url})
    recorder.attach(transport)          # one interface per transport: its frames both ways
    ...
    recorder.close()

A transport calls its taps with ("rx" | "tx", frame, time_ns) from whichever thread moved
the frame; host-side "rx" is device -> host ("up"). Every packet is flushed at once, so a
recording of a process that is killed holds everything up to the kill.
"""
import threading

from host.recording import Writer
from protocol import messages

_DIRECTIONS = {"rx": "up", "tx": "down"}


class Recorder:
    def __init__(self, target, meta=None):
        meta = dict(meta or {})
        meta.setdefault("clock", "wall")
        meta.setdefault("schema_hash", messages.SCHEMA_HASH)
        self._writer = Writer(target, meta=meta, flush_each=True)
        self._lock = threading.Lock()
        self._closed = False

    def attach(self, transport, name=None, device_id=None):
        """Record every frame `transport` sends or returns from now on."""
        meta = {"transport": transport.url}
        if device_id is not None:
            meta["device_id"] = device_id
        with self._lock:
            index = self._writer.interface(name or transport.url,
                                           description="vigil link %s" % transport.url,
                                           meta=meta)

        def tap(direction, frame, time_ns):
            with self._lock:
                if not self._closed:
                    self._writer.frame(index, time_ns, frame, _DIRECTIONS[direction])
        transport.add_tap(tap)
        return index

    @property
    def packets(self):
        return self._writer.packets

    def close(self):
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writer.close()
