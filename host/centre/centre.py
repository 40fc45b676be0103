"""The monitoring-centre emulator: a sans-IO core.

    centre = Centre(keys, CentreConfig(pairs={1004: 9004}))
    replies = centre.receive(link_id, data, now_ms)    # wire frames to send back on that link
    for link_id, wire in centre.tick(now_ms): ...       # timers: operator acks, retries, silence
    centre.next_deadline_ms()                           # when tick() must run next (or None)
    centre.offender_fix(9004, fix_time_ms, lat_e7, lon_e7, accuracy_m, now_ms)

Time is always passed in as UTC ms: virtual in the emulator, real when standalone. A link is
whatever the caller uses to tell connections apart; a device's downlinks go out on the link its
last authentic frame came from, and wait while no link is known.

The centre is one class made of parts, each in its own module with the rules it keeps:
- `intake.py`: frames in (authentication, replay, refusals, dedupe, ACKs, schema);
- `alarms.py`: the alarm lifecycle and the emulated operator;
- `proximity_watch.py`: proximity decisions, pre-alert and confirmation requests;
- `silence.py`: NOT_REPORTING / REPORTING;
- `downlinks.py`: sealing, retries, supersession and expiry of what the centre sends;
- `modes.py`: each device's scheme (aware / paired), its changes, and alarm routing.
`model.py` holds the event kinds, the config and the records; they are re-exported here.

Restart: windows are rebuilt exactly from the evidence log, device state from the
`device_state` table, and downlink counters resume from their reserve-ahead reservation,
so a restarted centre accepts no replay and reuses no counter.
"""
from typing import Any, Callable, Optional

from host.centre.alarms import Alarms
from host.centre.downlinks import Downlinks
from host.centre.evidence import EvidenceLog
from host.centre.intake import Intake
from host.centre.model import *  # noqa: F403 (the event kinds and records, for callers)
from host.centre.model import Alarm, CentreConfig, Device, Downlink, Event, _Link
from host.centre.modes import Modes
from host.centre.proximity_watch import ProximityWatch
from host.centre.silence import Silence
from host.keys import KeyStore
from protocol import (
    codec,
    host_fast,
    host_tables,
    messages,  # noqa: F401  (callers reach it as centre.messages)
)


class Centre(Intake, Alarms, ProximityWatch, Silence, Downlinks, Modes):
    def __init__(self, keys, config=None, evidence=":memory:",
                 on_event: Optional[Callable[[Event], None]] = None):
        self.keys = KeyStore.coerce(keys)
        self.config = config or CentreConfig()
        self.evidence = evidence if isinstance(evidence, EvidenceLog) else EvidenceLog(evidence)
        self.on_event = on_event
        self.events: list[Event] = []
        self.devices: dict[int, Device] = {}
        self.alarms: dict[tuple, Alarm] = {}  # (device_id, alarm_id) -> Alarm (the latest of that id)
        self.alarm_history: list[Alarm] = []  # every Alarm, in arrival order
        self.refused: dict[str, int] = {}  # reason -> count
        self.frames_up = 0
        self.frames_down = 0
        ring = host_fast.Keyring()
        for (device_id, key_id), key in self.keys._keys.items():  # O(keys), not O(devices²)
            ring.add(device_id, key_id, key)
        self._receiver = host_fast.FastReceiver(ring, check_replay=False)
        self._links: dict[Any, _Link] = {}
        # A restarted centre must not reuse downlink counters, nor deliver old uplinks again:
        # windows as they stood, from the evidence log; devices from their saved state.
        self._windows: dict[tuple, codec.ReplayWindow] = {}
        for key, (highest, below) in self.evidence.windows(host_tables.REPLAY_WINDOW).items():
            window = self._windows[key] = codec.ReplayWindow(highest)
            for counter in below:
                window.accept(counter)
        for device_id, state in self.evidence.states().items():
            try:
                self.devices[device_id] = Device(**state)
            except TypeError:  # a state saved by another version: start afresh
                continue
        self._dirty: set = set()
        self._reserved = self.evidence.reservations()  # (device, key id) -> reserved counter
        self._next_down = {d: c + 1 for d, c in self.evidence.max_counters("downlinks").items()}
        self._senders: dict[int, host_fast.FastSender] = {}
        self._downlinks: list[Downlink] = []  # pruned of done ones at each tick()
        self._by_device: dict[int, list] = {}  # device id -> its downlinks (pruned on access)
        self._trackers: dict = {}  # victim id -> ProximityTracker (while paired: modes.py)
        self._victims: dict[int, list] = {}  # offender id -> [victim ids]
        self._locate_ms: dict[int, int] = {}  # victim id -> when the last tracking request was queued
        self._any_locate_ms: dict[int, int] = {}  # victim id -> the last locate_now of any kind
        self._held_after_ms: dict[int, int] = {}  # victim id -> the locate_now a hold was logged after
        self._reach_ms: dict[int, int] = {}  # victim id -> the last reach request (proximity_watch)
        self._no_fix_ms: dict[int, int] = {}  # victim id -> NO_FIX with no fix since (the time)
        self._init_modes()
        self._now_ms = 0
        self._restore_alarms()

    def tick(self, now_ms):
        """Run the timers due by now; returns (link_id, wire) pairs to send."""
        self._now_ms = now_ms
        self._modes_tick(now_ms)
        self._alarms_tick(now_ms)
        self._silence_tick(now_ms)
        self._expire_downlinks(now_ms)
        for link_id, link in self._links.items():
            if link.pending and now_ms - link.flushed_ms >= self.config.refusal_flush_ms:
                self._flush_refusals(link, link_id, now_ms)
        out = self._downlinks_tick(now_ms)
        self.frames_down += len(out)
        self._commit()
        return out

    def next_deadline_ms(self):
        """The earliest time tick() has work, or None."""
        times = self._alarm_deadlines()
        times.extend(self._silence_deadlines())
        times.extend(self._downlink_deadlines())
        times.extend(self._mode_deadlines())
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def close(self):
        for link_id, link in self._links.items():
            self._flush_refusals(link, link_id, self._now_ms)
        self._commit()
        self.evidence.close()

    def _event(self, now_ms, event_kind, device_id, **detail):
        event = Event(now_ms, event_kind, device_id, detail)
        self.events.append(event)
        self.evidence.event(event)
        if self.on_event is not None:
            self.on_event(event)

    def _handler(self, name):
        return _HANDLERS.get(name)


_HANDLERS = {
    "HELLO": Centre._on_hello,
    "HEARTBEAT": Centre._on_heartbeat,
    "POSITION": Centre._on_position,
    "NO_FIX": Centre._on_no_fix,
    "ALARM": Centre._on_alarm,
    "EVENT": Centre._on_event,
    "ACK": Centre._on_ack,
}
