"""The monitoring-centre emulator: a sans-IO core.

    centre = Centre(keys, CentreConfig(pairs={1004: 9004}))
    replies = centre.receive(link_id, data, now_ms)    # wire frames to send back on that link
    for link_id, wire in centre.tick(now_ms): ...       # timers: operator acks, retries, silence
    centre.next_deadline_ms()                           # when tick() must run next (or None)
    centre.offender_fix(9004, fix_time_ms, lat_e7, lon_e7, accuracy_m, now_ms)

Time is always passed in as UTC ms: virtual in the emulator, real when standalone. A link is
whatever the caller uses to tell connections apart; a device's downlinks go out on the link its
last authentic frame came from, and wait while no link is known.

Frames (decisions written here because the tests pin them):
- Order: authentication (tag), then the replay check, and only then any state change (the
  device's link, last-seen time, reporting state, schema flag, handlers). A captured frame
  replayed from anywhere is acked again on the link it came from and changes nothing else.
- Refused frames (bad CRC, wrong key, forged tag, ...) are never acked and never change any
  state. They are counted per link and outcome (duplicates and stale HELLOs too) and written
  to the evidence log as one `refusals` row per link and outcome at the first tick() after
  each `refusal_flush_ms`, when the link closes and at close() (no deadline of its own:
  refused input never makes work); one "refused" event is raised per link and reason per interval.
  `unknown_key` and `bad_tag` cost the same work and are told apart only in this local log.
- Rate limit: past `refused_per_s` refusals in one second on a link, the rest of that
  second's input from it is dropped unparsed (counted as "rate_limited" bytes), so a flood
  costs little and genuine devices on other links are served.
- Dedupe: the replay window is per device and key id. An authentic frame whose counter was
  already delivered is acked again but not delivered twice. Below the window (a record
  queued before a reboot, whose counters then jumped ahead) the evidence log of delivered
  counters decides, so such a record is delivered once, never dropped as old. A frame that
  arrives after a newer one from its device is marked historic (SPEC 3.3: not on the wire).
- Restart: windows are rebuilt exactly from the evidence log, device state from the
  `device_state` table, and downlink counters resume from their reserve-ahead reservation,
  so a restarted centre accepts no replay and reuses no counter.
- Transport ACK: one ACK per device per receive() call that had frames asking for one:
  `highest` and `bitmap` are that device's replay window (bit i = counter highest-1-i
  received). A duplicate too old for the window gets its own ACK (highest = its counter).
- Schema: a HELLO whose schema_hash differs from ours marks the device "mismatched" until a
  HELLO with the right hash. Only a HELLO newer (higher counter, same key) than the last one
  may change the flag; an older one is refused "stale_hello" (acked, nothing changes). The HELLO and every later frame of that boot are refused with
  reason "schema_mismatch": authentic, so they count as contact, but not delivered, not acked
  and not marked as seen, so the device keeps them queued and they are delivered after it is
  updated. A frame before any HELLO (the centre restarted) is trusted.
- Downlinks ask for a transport ACK and are resent with the same counter, with backoff from
  `downlink_retry_ms` up to `downlink_retry_max_ms`, immediately whenever the device is heard
  from, until acked, superseded (a newer PROXIMITY replaces an older one; a newer tracking
  COMMAND locate_now replaces an older one) or expired.
- Operator: each raised alarm is acked (OPERATOR_ACK) `operator_ack_delay_ms` after it first
  arrives. A raised alarm that arrives again after its ack is acked again at once (the device
  did not get it). A cancelled or cleared alarm that is not yet acked is not acked.
- Pre-alert: when an offender fix falls within `proximity.prealert_m` of the paired victim's
  last known position, the centre sends COMMAND locate_now with arg = `locate_track_s`: the
  device tracks silently (a fix every proximity_fix_s, sent at once, and reachable within
  seconds), so the victim's fixes are fresh enough to evaluate when the offender crosses the
  warning radius. It is repeated while the offender stays inside, `locate_renew_s` before the
  previous one runs out (counted from when it was queued, so delivery delays only shorten
  it), never more than one outstanding; a HELLO from the device (a reboot forgets tracking)
  lets the next offender fix ask again at once. The command carries no distance or bearing.
- Confirmation: when an evaluation points to a higher level than the current state but is
  not yet confirmed, the centre asks for one victim fix at once (COMMAND locate_now, arg 0),
  so the confirming fix comes within seconds instead of at the next tracking fix. The rule
  itself (two consecutive fresh evaluations) is unchanged.
- Silence: a device that has been heard from is NOT_REPORTING once nothing authentic has
  arrived for `missed_heartbeats` heartbeat intervals plus `silence_grace_ms`; REPORTING again
  when it is heard from. The interval is per device from config (default 900 s), or the
  low-power interval while its last heartbeat said low_power.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from host.centre.evidence import EvidenceLog
from host.centre.proximity import (
    LEVEL_NAMES,
    Fix,
    ProximityConfig,
    ProximityTracker,
    haversine_m,
)
from host.keys import KeyStore
from protocol import codec, host_fast, host_names, messages

# Event kinds
HELLO = "hello"
ALARM_RAISED = "alarm_raised"
ALARM_ACKED = "alarm_acked"  # the operator acked: OPERATOR_ACK queued
ALARM_ACK_DELIVERED = "alarm_ack_delivered"  # the device transport-acked the OPERATOR_ACK
ALARM_CANCELLED = "alarm_cancelled"
ALARM_CLEARED = "alarm_cleared"
PROXIMITY = "proximity"
NOT_REPORTING = "not_reporting"
REPORTING = "reporting"
REFUSED = "refused"
DUPLICATE = "duplicate"
STALE_HELLO = "stale_hello"
RATE_LIMITED = "rate_limited"
DOWNLINK_RESERVE = 256  # downlink counters reserved per write (reserve-ahead, SPEC 3.3)
SCHEMA_MISMATCH = "schema_mismatch"
DEVICE_EVENT = "device_event"
DOWNLINK_EXPIRED = "downlink_expired"
LOCATE_REQUESTED = "locate_requested"

# Downlinks where only the newest matters: a newer one stops the retries of an older one.
SUPERSEDING = ("PROXIMITY", "TIME_SYNC", "CONFIG")
SUPERSEDE_LOCATE = "COMMAND:locate_track"  # tracking locate_now commands supersede each other
SUPERSEDE_CONFIRM = "COMMAND:locate_once"  # so do one-fix requests for a confirmation


@dataclass
class CentreConfig:
    heartbeat_s: int = 900
    device_heartbeat_s: dict = field(default_factory=dict)  # device id -> interval
    low_power_heartbeat_s: int = 3600
    missed_heartbeats: int = 2
    silence_grace_ms: int = 60_000
    operator_ack_delay_ms: int = 5_000
    operator_id: int = 1
    pairs: dict = field(default_factory=dict)  # victim device id -> offender id
    proximity: ProximityConfig = field(default_factory=ProximityConfig)
    downlink_retry_ms: int = 10_000
    downlink_retry_max_ms: int = 300_000
    downlink_expiry_ms: int = 3_600_000
    resend_on_contact_ms: int = 2_000  # resend unacked downlinks when heard, if sent this long ago
    refusal_flush_ms: int = 60_000  # aggregated refusals are written this often per link
    refused_per_s: int = 200  # refusals per link per second before its input is dropped


@dataclass(frozen=True)
class Event:
    time_ms: int
    kind: str
    device_id: Optional[int]
    detail: dict

    def line(self):
        """One human line, for `vigil centre`."""
        parts = ["%d" % self.time_ms, self.kind]
        if self.device_id is not None:
            parts.append("device=%d" % self.device_id)
        parts.extend("%s=%s" % (k, v) for k, v in self.detail.items())
        return " ".join(parts)


@dataclass
class Device:
    device_id: int
    link_id: Any = None
    key_id: Optional[int] = None
    last_seen_ms: Optional[int] = None
    last_heartbeat_ms: Optional[int] = None
    battery_mv: Optional[int] = None
    battery_pct: Optional[int] = None
    status: int = 0
    firmware: Optional[str] = None
    boot_count: Optional[int] = None
    reset_cause: Optional[int] = None
    schema_ok: Optional[bool] = None  # None until a HELLO
    reporting: bool = True
    frames_delivered: int = 0
    duplicates: int = 0
    hello_counter: Optional[int] = None  # counter of the HELLO that set schema_ok
    hello_key_id: Optional[int] = None
    highest_seen: dict = field(default_factory=dict)  # str(key_id) -> highest authentic counter

    def state(self):
        """What survives a centre restart (the link does not)."""
        out = {k: v for k, v in self.__dict__.items() if k != "link_id"}
        out["highest_seen"] = dict(self.highest_seen)
        return out


@dataclass
class Alarm:
    device_id: int
    alarm_id: int
    kind: int
    raised_time_ms: int  # the device's clock
    arrived_ms: int  # first arrival at the centre
    historic: bool = False
    ack_due_ms: Optional[int] = None
    acked_ms: Optional[int] = None
    ack_counter: Optional[int] = None
    ack_delivered_ms: Optional[int] = None
    cancelled_ms: Optional[int] = None
    cleared_ms: Optional[int] = None

    @property
    def closed(self):
        return self.cancelled_ms is not None or self.cleared_ms is not None


@dataclass
class Downlink:
    device_id: int
    counter: int
    name: str
    wire: bytes
    queued_ms: int
    sent_ms: Optional[int] = None
    tries: int = 0
    next_retry_ms: Optional[int] = None
    acked_ms: Optional[int] = None
    done: bool = False  # acked, superseded or expired
    supersede: Optional[str] = None  # a newer downlink with the same key replaces this one
    fields: Optional[dict] = None  # kept to re-seal it under a new counter after a reset


class _Link:
    """Per-link receive state: the deframer, the refusal budget and pending aggregates."""

    __slots__ = ("deframer", "budget_start_ms", "refused_in_budget", "muted_until_ms",
                 "pending", "flushed_ms")

    def __init__(self, now_ms):
        self.deframer = codec.Deframer()
        self.budget_start_ms = now_ms
        self.refused_in_budget = 0
        self.muted_until_ms = 0
        self.pending = {}  # outcome -> [count, bytes, first_ms, last_ms, detail]
        self.flushed_ms = now_ms


class Centre:
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
        for key, (highest, below) in self.evidence.windows(codec.REPLAY_WINDOW).items():
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
        self._trackers = {}  # victim id -> ProximityTracker
        self._victims: dict[int, list] = {}  # offender id -> [victim ids]
        self._locate_ms: dict[int, int] = {}  # victim id -> when the last tracking request was queued
        for victim, offender in self.config.pairs.items():
            self._trackers[victim] = ProximityTracker(self.config.proximity)
            self._victims.setdefault(offender, []).append(victim)
        self._now_ms = 0
        self._restore_alarms()

    # ---- public API -------------------------------------------------------------------------

    def receive(self, link_id, data, now_ms):
        """Bytes from a link; returns the wire frames to send back on that link."""
        self._now_ms = now_ms
        link = self._links.get(link_id)
        if link is None:
            link = self._links[link_id] = _Link(now_ms)
        if now_ms < link.muted_until_ms:
            self._count(link, link_id, RATE_LIMITED, now_ms, len(data), "")
            return []
        to_ack = {}  # (device id, key id) -> counters asking for an ACK
        heard = []
        for block in link.deframer.feed(data):
            if isinstance(block, codec.FrameError):
                self._refuse(link, link_id, now_ms, block.reason, str(block), 243)
            else:
                try:
                    frame = self._receiver.open(block)
                except codec.FrameError as e:
                    self._refuse(link, link_id, now_ms, e.reason, str(e), len(block) + 1)
                else:
                    if self._frame(link, link_id, frame, now_ms) and frame.ack_requested:
                        to_ack.setdefault((frame.device_id, frame.key_id), []).append(
                            frame.counter)
                    if self.devices.get(frame.device_id) is not None and \
                            self.devices[frame.device_id].link_id == link_id and \
                            frame.device_id not in heard:
                        heard.append(frame.device_id)
            if now_ms < link.muted_until_ms:
                # Over budget: the rest of this input is dropped unparsed, and the deframer
                # resyncs at the next delimiter after the mute.
                link.deframer = codec.Deframer()
                link.deframer._discarding = True
                break
        replies = []
        for (device_id, key_id), counters in to_ack.items():
            replies.extend(self._acks(device_id, key_id, counters))
        for device_id in heard:
            replies.extend(self._flush_device(device_id, now_ms, resend=True))
        self.frames_down += len(replies)
        self._commit()
        return replies

    def link_closed(self, link_id, now_ms=None):
        """The link went away: write its pending refusal counts and forget its state."""
        now_ms = self._now_ms if now_ms is None else now_ms
        link = self._links.pop(link_id, None)
        if link is not None:
            self._flush_refusals(link, link_id, now_ms)
        for device in self.devices.values():
            if device.link_id == link_id:
                device.link_id = None
        self._commit()

    def tick(self, now_ms):
        """Run the timers due by now; returns (link_id, wire) pairs to send."""
        self._now_ms = now_ms
        for alarm in self.alarm_history:
            if alarm.ack_due_ms is not None and alarm.ack_due_ms <= now_ms:
                self._operator_ack(alarm, now_ms)
        for device in self.devices.values():
            deadline = self._silence_deadline_ms(device)
            if deadline is not None and deadline <= now_ms:
                device.reporting = False
                self._event(now_ms, NOT_REPORTING, device.device_id,
                            last_seen_ms=device.last_seen_ms,
                            heartbeat_s=self._heartbeat_s(device))
        out = []
        for downlink in list(self._downlinks):
            if not downlink.done and downlink.queued_ms + self.config.downlink_expiry_ms <= now_ms:
                downlink.done = True
                self._event(now_ms, DOWNLINK_EXPIRED, downlink.device_id,
                            type=downlink.name, counter=downlink.counter)
        self._downlinks = [d for d in self._downlinks if not d.done]
        for link_id, link in self._links.items():
            if link.pending and now_ms - link.flushed_ms >= self.config.refusal_flush_ms:
                self._flush_refusals(link, link_id, now_ms)
        for device_id in {d.device_id for d in self._downlinks}:
            link_id = self.devices[device_id].link_id if device_id in self.devices else None
            if link_id is not None:
                out.extend((link_id, w) for w in self._flush_device(device_id, now_ms))
        self.frames_down += len(out)
        self._commit()
        return out

    def next_deadline_ms(self):
        """The earliest time tick() has work, or None."""
        times = [a.ack_due_ms for a in self.alarm_history if a.ack_due_ms is not None]
        times.extend(self._silence_deadline_ms(d) for d in self.devices.values())
        for downlink in self._downlinks:
            if downlink.done:
                continue
            times.append(downlink.queued_ms + self.config.downlink_expiry_ms)
            device = self.devices.get(downlink.device_id)
            if device is None or device.link_id is None:
                continue
            times.append(downlink.queued_ms if downlink.sent_ms is None else downlink.next_retry_ms)
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def send(self, device_id, name, fields, now_ms=None, supersede=None):
        """Queue an authenticated downlink; returns its counter. It goes out on the device's
        link with the next receive() from it or tick(). It replaces any unacked downlink of
        the same `supersede` key (by default the name, for the SUPERSEDING types)."""
        now_ms = self._now_ms if now_ms is None else now_ms
        wire, counter = self._seal(device_id, name, fields)
        if supersede is None and name in SUPERSEDING:
            supersede = name
        if supersede is not None:
            for old in self._device_downlinks(device_id):
                if old.supersede == supersede:
                    old.done = True
        downlink = Downlink(device_id, counter, name, wire, now_ms, supersede=supersede,
                            fields=fields)
        self._downlinks.append(downlink)
        self._by_device.setdefault(device_id, []).append(downlink)
        self.evidence.downlink(now_ms, device_id, counter, name, fields)
        return counter

    def offender_fix(self, offender_id, fix_time_ms, lat_e7, lon_e7, accuracy_m, now_ms=None):
        """A fix from an offender's ankle tag; returns (link_id, wire) downlinks to send now."""
        now_ms = fix_time_ms if now_ms is None else now_ms
        self._now_ms = now_ms
        fix = Fix(fix_time_ms, lat_e7, lon_e7, accuracy_m)
        out = []
        for victim_id in self._victims.get(offender_id, ()):
            decision = self._trackers[victim_id].offender_fix(fix, now_ms)
            self._decided(victim_id, offender_id, decision, now_ms)
            self._prealert(victim_id, offender_id, fix, now_ms)
            device = self.devices.get(victim_id)
            if device is not None and device.link_id is not None:
                out.extend((device.link_id, w) for w in self._flush_device(victim_id, now_ms))
        self.frames_down += len(out)
        self._commit()
        return out

    def proximity_state(self, victim_id):
        tracker = self._trackers.get(victim_id)
        return None if tracker is None else tracker.state

    def downlinks_pending(self, device_id=None):
        if device_id is not None:
            return self._device_downlinks(device_id)
        return [d for d in self._downlinks if not d.done]

    def _device_downlinks(self, device_id):
        """The device's downlinks not yet done (an index: scanning every device's downlinks
        for each frame would cost O(devices) per frame)."""
        live = [d for d in self._by_device.get(device_id, ()) if not d.done]
        if live:
            self._by_device[device_id] = live
        else:
            self._by_device.pop(device_id, None)
        return live

    def close(self):
        for link_id, link in self._links.items():
            self._flush_refusals(link, link_id, self._now_ms)
        self._commit()
        self.evidence.close()

    def _restore_alarms(self):
        """A restarted centre takes its alarms back from the evidence log (found by
        bench/chaos.py): without them, an alarm the device repeats after the restart was
        shown to the operator a second time, and one that was waiting for the operator's ack
        never got it. An open alarm that was not acked is due at once (the process that timed
        its delay is gone); one acked but not confirmed by the device gets its OPERATOR_ACK
        again, since the queued downlink died with the process. No event is raised: the
        operator has seen these alarms."""
        for row in self.evidence.rows("alarms"):
            key = (row["device_id"], row["alarm_id"])
            alarm = self.alarms.get(key)
            if alarm is None or alarm.closed and alarm.raised_time_ms != row["raised_time_ms"]:
                alarm = Alarm(row["device_id"], row["alarm_id"], row["kind"],
                              row["raised_time_ms"], row["time_ms"],
                              historic=bool(row["historic"]))
                self.alarms[key] = alarm
                self.alarm_history.append(alarm)
            change = row["change"]
            if change in ("raised", "repeated", "repeat") and alarm.acked_ms is None:
                alarm.ack_due_ms = row["time_ms"]
            elif change in ("acked", "acked_again"):
                if alarm.acked_ms is None:
                    alarm.acked_ms = row["time_ms"]
                alarm.ack_counter = row["counter"]
                alarm.ack_due_ms = row["time_ms"]  # its downlink is gone: send it again
            elif change == "ack_delivered":
                alarm.ack_delivered_ms = row["time_ms"]
                alarm.ack_due_ms = None
            elif change == "cancelled":
                alarm.cancelled_ms = row["time_ms"]
            elif change == "cleared":
                alarm.cleared_ms = row["time_ms"]
            if alarm.closed and alarm.acked_ms is None:
                alarm.ack_due_ms = None

    # ---- frames -----------------------------------------------------------------------------

    def _refuse(self, link, link_id, now_ms, reason, detail, nbytes, frame=None):
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if self._count(link, link_id, "refused:" + reason, now_ms, nbytes, detail):
            extra = {"type": frame.name, "counter": frame.counter} if frame else {}
            self._event(now_ms, REFUSED, frame.device_id if frame else None, reason=reason,
                        link=link_id, detail=detail, **extra)

    def _count(self, link, link_id, outcome, now_ms, nbytes, detail):
        """Count one refused input on its link, against the link's per-second budget;
        returns True if it is the first of its outcome since the last flush."""
        entry = link.pending.get(outcome)
        first = entry is None
        if first:
            entry = link.pending[outcome] = [0, 0, now_ms, now_ms, detail]
        entry[0] += 1
        entry[1] += nbytes
        entry[3] = now_ms
        if outcome != RATE_LIMITED:
            if now_ms - link.budget_start_ms >= 1000:
                link.budget_start_ms = now_ms
                link.refused_in_budget = 0
            link.refused_in_budget += 1
            if link.refused_in_budget > self.config.refused_per_s:
                link.muted_until_ms = link.budget_start_ms + 1000
        return first

    def _flush_refusals(self, link, link_id, now_ms):
        for outcome, (count, nbytes, first_ms, last_ms, detail) in sorted(link.pending.items()):
            self.evidence.refusals(now_ms, link_id, outcome, count, nbytes, first_ms, last_ms,
                                   detail)
        link.pending = {}
        link.flushed_ms = now_ms

    def _window(self, device_id, key_id):
        window = self._windows.get((device_id, key_id))
        if window is None:
            window = self._windows[(device_id, key_id)] = codec.ReplayWindow()
        return window

    def _is_new(self, frame):
        """True if this authentic frame was never delivered. Reads state, changes none.
        Below the window (after a reboot the device's counters jump ahead, so a record it
        queued before the reboot arrives far below) the evidence log, which knows every
        counter ever delivered, decides."""
        window = self._windows.get((frame.device_id, frame.key_id))
        if window is None:
            return not self.evidence.delivered(frame.device_id, frame.counter, frame.key_id)
        if window.highest - frame.counter > codec.REPLAY_WINDOW:
            return not self.evidence.delivered(frame.device_id, frame.counter, frame.key_id)
        return not window.seen(frame.counter)

    def _frame(self, link, link_id, frame, now_ms):
        """Handle one authentic frame; returns True if it may be acked. Nothing changes
        before the replay check (SPEC 9): a replayed frame only counts as a duplicate."""
        self.frames_up += 1
        if not self._is_new(frame):
            device = self.devices.get(frame.device_id)
            if device is not None:
                device.duplicates += 1
                self._dirty.add(device.device_id)
            self._count(link, link_id, DUPLICATE, now_ms, len(frame.raw), "")
            return True
        device = self.devices.get(frame.device_id)
        if device is None:
            device = self.devices[frame.device_id] = Device(frame.device_id)
        self._dirty.add(device.device_id)
        key = str(frame.key_id)
        fresh = frame.counter > device.highest_seen.get(key, 0)
        if frame.name == "HELLO":
            if (device.hello_counter is not None and device.hello_key_id == frame.key_id
                    and frame.counter < device.hello_counter):
                # Older than the HELLO that set the schema flag: a replay of a HELLO that
                # was refused (schema_mismatch frames are not marked delivered), or one
                # overtaken on the way. It must not flip the flag back.
                self._count(link, link_id, STALE_HELLO, now_ms, len(frame.raw),
                            "counter %d < %d" % (frame.counter, device.hello_counter))
                return True
            mismatch = frame.fields["schema_hash"] != messages.SCHEMA_HASH
            if mismatch and device.schema_ok is not False:
                self._event(now_ms, SCHEMA_MISMATCH, device.device_id,
                            theirs="0x%08x" % frame.fields["schema_hash"],
                            ours="0x%08x" % messages.SCHEMA_HASH)
            device.schema_ok = not mismatch
            device.hello_counter, device.hello_key_id = frame.counter, frame.key_id
        if device.schema_ok is False:
            if fresh:  # authentic and newer than anything before: it counts as contact
                self._contact(device, link_id, frame, now_ms)
            self._refuse(link, link_id, now_ms, "schema_mismatch", "", len(frame.raw), frame)
            return False
        self._contact(device, link_id, frame, now_ms)
        window = self._window(frame.device_id, frame.key_id)
        frame.historic = frame.counter < window.highest  # a newer one arrived first
        if window.highest - frame.counter <= codec.REPLAY_WINDOW:
            window.accept(frame.counter)
        device.frames_delivered += 1
        self.evidence.frame(now_ms, link_id, "delivered", frame)
        handler = _HANDLERS.get(frame.name)
        if handler is not None:
            handler(self, device, frame, now_ms)
        return True

    def _contact(self, device, link_id, frame, now_ms):
        key = str(frame.key_id)
        device.highest_seen[key] = max(device.highest_seen.get(key, 0), frame.counter)
        device.link_id = link_id
        device.key_id = frame.key_id
        device.last_seen_ms = now_ms
        if not device.reporting:
            device.reporting = True
            self._event(now_ms, REPORTING, device.device_id)

    def _commit(self):
        for device_id in self._dirty:
            device = self.devices.get(device_id)
            if device is not None:
                self.evidence.save_state(device_id, device.state())
        self._dirty.clear()
        self.evidence.commit()

    def _acks(self, device_id, key_id, counters):
        window = self._window(device_id, key_id)
        acks = []
        if any(window.highest - c <= codec.REPLAY_WINDOW for c in counters):
            acks.append(self._seal(device_id, "ACK", {"highest": window.highest,
                                                      "bitmap": window.bitmap})[0])
        old = sorted({c for c in counters if window.highest - c > codec.REPLAY_WINDOW})
        for counter in old[-8:]:  # bounded: a replay flood of old frames gets few replies
            acks.append(self._seal(device_id, "ACK", {"highest": counter, "bitmap": 0})[0])
        return acks

    def _on_hello(self, device, frame, now_ms):
        self._after_reset(device.device_id, now_ms)
        f = frame.fields
        device.firmware = "%d.%d.%d" % (f["fw_major"], f["fw_minor"], f["fw_patch"])
        device.boot_count = f["boot_count"]
        device.reset_cause = f["reset_cause"]
        self._locate_ms.pop(device.device_id, None)  # a reboot ends any tracking
        self._event(now_ms, HELLO, device.device_id, firmware=device.firmware,
                    boot_count=device.boot_count, reset_cause=device.reset_cause)
        # A device that lost power does not know the time until its first fix; alarms it
        # raises meanwhile would carry raised_time_ms 0. Tell it at once.
        self.send(device.device_id, "TIME_SYNC", {"utc_ms": int(now_ms)}, now_ms)

    def _on_heartbeat(self, device, frame, now_ms):
        f = frame.fields
        device.last_heartbeat_ms = now_ms
        device.battery_mv = f["battery_mv"]
        device.battery_pct = f["battery_pct"]
        device.status = f["status"]

    def _on_position(self, device, frame, now_ms):
        for fix in sorted(frame.fields["fixes"], key=lambda f: f["fix_time_ms"]):
            self._victim_fix(device.device_id, fix, now_ms)

    def _on_no_fix(self, device, frame, now_ms):
        if frame.fields["last_fix"] is not None:
            self._victim_fix(device.device_id, frame.fields["last_fix"], now_ms)

    def _on_alarm(self, device, frame, now_ms):
        f = frame.fields
        key = (device.device_id, f["alarm_id"])
        alarm = self.alarms.get(key)
        if alarm is not None and alarm.closed and alarm.raised_time_ms != f["raised_time_ms"]:
            alarm = None  # the id was reused for a new alarm
        state = f["state"]
        if alarm is None:
            alarm = Alarm(device.device_id, f["alarm_id"], f["kind"], f["raised_time_ms"], now_ms,
                          historic=frame.historic)
            self.alarms[key] = alarm
            self.alarm_history.append(alarm)
            if state in (messages.ALARM_STATE_RAISED, messages.ALARM_STATE_REPEAT):
                alarm.ack_due_ms = now_ms + self.config.operator_ack_delay_ms
            change = "raised"
            self._event(now_ms, ALARM_RAISED, device.device_id, alarm_id=alarm.alarm_id,
                        kind=host_names.ALARM_KINDS.get(alarm.kind, alarm.kind),
                        raised_time_ms=alarm.raised_time_ms, historic=frame.historic)
        elif state == messages.ALARM_STATE_RAISED:
            change = "repeated"
            if alarm.acked_ms is not None:
                alarm.ack_due_ms = now_ms  # the device has not seen the operator's ack: again
        elif state == messages.ALARM_STATE_REPEAT:
            change = "repeat"  # the wearer pressed again (SPEC 6.6): the operator acks it too
            if alarm.acked_ms is not None:
                alarm.ack_due_ms = now_ms
        else:
            change = None
        if state in (messages.ALARM_STATE_CANCELLED, messages.ALARM_STATE_CLEARED):
            if state == messages.ALARM_STATE_CANCELLED:
                alarm.cancelled_ms = now_ms
                change, event_kind = "cancelled", ALARM_CANCELLED
            else:
                alarm.cleared_ms = now_ms
                change, event_kind = "cleared", ALARM_CLEARED
            if alarm.acked_ms is None:
                alarm.ack_due_ms = None
            self._event(now_ms, event_kind, device.device_id, alarm_id=alarm.alarm_id)
        self.evidence.alarm(now_ms, device.device_id, alarm.alarm_id, f["kind"], change,
                            f["raised_time_ms"], frame.counter, frame.historic)
        if f["fix"] is not None:
            self._victim_fix(device.device_id, f["fix"], now_ms)

    def _on_event(self, device, frame, now_ms):
        f = frame.fields
        self._event(now_ms, DEVICE_EVENT, device.device_id,
                    kind=host_names.EVENT_KINDS.get(f["kind"], f["kind"]), device_time_ms=f["time_ms"],
                    value=f["value"])

    def _on_ack(self, device, frame, now_ms):
        highest, bitmap = frame.fields["highest"], frame.fields["bitmap"]
        for downlink in self._device_downlinks(device.device_id):
            offset = highest - downlink.counter
            if offset == 0 or 0 < offset <= 64 and bitmap >> (offset - 1) & 1:
                downlink.done = True
                downlink.acked_ms = now_ms
                self.evidence.downlink_ack(now_ms, device.device_id, downlink.counter,
                                           downlink.name, downlink.queued_ms)
                self._downlink_acked(downlink, now_ms)

    def _downlink_acked(self, downlink, now_ms):
        if downlink.name != "OPERATOR_ACK":
            return
        for alarm in self.alarm_history:
            if alarm.device_id == downlink.device_id and alarm.ack_counter == downlink.counter:
                if alarm.ack_delivered_ms is None:
                    alarm.ack_delivered_ms = now_ms
                    self.evidence.alarm(now_ms, alarm.device_id, alarm.alarm_id, alarm.kind,
                                        "ack_delivered", alarm.raised_time_ms, downlink.counter)
                    self._event(now_ms, ALARM_ACK_DELIVERED, alarm.device_id,
                                alarm_id=alarm.alarm_id, acked_ms=alarm.acked_ms)

    # ---- operator, proximity, silence ---------------------------------------------------------

    def _operator_ack(self, alarm, now_ms):
        alarm.ack_due_ms = None
        first = alarm.acked_ms is None
        if first:
            alarm.acked_ms = now_ms
        alarm.ack_counter = self.send(alarm.device_id, "OPERATOR_ACK",
                                      {"alarm_id": alarm.alarm_id,
                                       "operator_id": self.config.operator_id}, now_ms)
        self.evidence.alarm(now_ms, alarm.device_id, alarm.alarm_id, alarm.kind,
                            "acked" if first else "acked_again", alarm.raised_time_ms,
                            alarm.ack_counter)
        if first:
            self._event(now_ms, ALARM_ACKED, alarm.device_id, alarm_id=alarm.alarm_id,
                        arrived_ms=alarm.arrived_ms, raised_time_ms=alarm.raised_time_ms)

    def _victim_fix(self, victim_id, fix, now_ms):
        tracker = self._trackers.get(victim_id)
        if tracker is None:
            return
        decision = tracker.victim_fix(
            Fix(fix["fix_time_ms"], fix["lat_e7"], fix["lon_e7"], fix["accuracy_m"]), now_ms)
        self._decided(victim_id, self.config.pairs[victim_id], decision, now_ms)

    def _decided(self, victim_id, offender_id, decision, now_ms):
        if decision is None:
            return
        counter = None
        if decision.changed:
            counter = self.send(victim_id, "PROXIMITY", {"level": decision.state}, now_ms)
        elif not decision.stale and decision.candidate > decision.state:
            # Rising but unconfirmed: a fresh victim fix now confirms (or refutes) it sooner.
            self.send(victim_id, "COMMAND", {"command": messages.COMMAND_LOCATE_NOW, "arg": 0},
                      now_ms, supersede=SUPERSEDE_CONFIRM)
        self.evidence.proximity(victim_id, offender_id, decision, self.config.proximity, counter)
        if decision.changed:
            self._event(now_ms, PROXIMITY, victim_id, offender_id=offender_id,
                        level=LEVEL_NAMES[decision.state],
                        previous=LEVEL_NAMES[decision.previous],
                        decided_ms=decision.time_ms, queued_ms=now_ms, counter=counter)

    def _prealert(self, victim_id, offender_id, offender, now_ms):
        """Keep the victim's device tracking while the offender is within the pre-alert
        radius of the victim's last known position (see the module docstring)."""
        config = self.config.proximity
        victim = self._trackers[victim_id].victim
        if not config.prealert_m or victim is None:
            return  # nothing to measure from: the device's own cadence will report
        if haversine_m(victim.lat_e7, victim.lon_e7, offender.lat_e7,
                       offender.lon_e7) > config.prealert_m:
            return
        last_ms = self._locate_ms.get(victim_id)
        renew_at_ms = None if last_ms is None else (
            last_ms + (config.locate_track_s - config.locate_renew_s) * 1000)
        if renew_at_ms is not None and now_ms < renew_at_ms:
            return  # tracking (or its request) still covers the next offender fixes
        counter = self.send(victim_id, "COMMAND", {"command": messages.COMMAND_LOCATE_NOW,
                                                   "arg": config.locate_track_s},
                            now_ms, supersede=SUPERSEDE_LOCATE)
        self._locate_ms[victim_id] = now_ms
        self._event(now_ms, LOCATE_REQUESTED, victim_id, offender_id=offender_id,
                    track_s=config.locate_track_s, counter=counter)

    def _heartbeat_s(self, device):
        if device.status & messages.STATUS_LOW_POWER:
            return self.config.low_power_heartbeat_s
        return self.config.device_heartbeat_s.get(device.device_id, self.config.heartbeat_s)

    def _silence_deadline_ms(self, device):
        if not device.reporting or device.last_seen_ms is None:
            return None
        return (device.last_seen_ms + self.config.missed_heartbeats * 1000 *
                self._heartbeat_s(device) + self.config.silence_grace_ms)

    # ---- downlinks ------------------------------------------------------------------------------

    def _sender(self, device_id):
        device = self.devices.get(device_id)
        key_id = device.key_id if device is not None else None
        if key_id is None:
            key_ids = self.keys.key_ids(device_id)
            key_id = key_ids[-1] if key_ids else None
        sender = self._senders.get(device_id)
        if sender is None or sender.key_id != key_id:
            key = self.keys.get(device_id, key_id) if key_id is not None else None
            if key is None:
                raise ValueError("no key for device %d" % device_id)
            start = max(self._reserved.get((device_id, key_id), 1),
                        self._next_down.get(device_id, 1))
            sender = host_fast.FastSender(device_id, key_id, key, downlink=True, counter=start)
            self._senders[device_id] = sender
        return sender

    def _after_reset(self, device_id, now_ms):
        """A HELLO: the device reset, and its downlink window restarted at its flash floor,
        which may lie up to DOWNLINK_RESERVE above the last counter it accepted (SPEC 4.4).
        Skip past it, and re-seal every pending downlink under a new counter: the old bytes
        would now be refused as replays (a new counter, never the old one with new bytes,
        so no CTR keystream is reused)."""
        sender = self._sender(device_id)
        sender.counter += DOWNLINK_RESERVE
        for downlink in self._device_downlinks(device_id):
            if downlink.fields is None:
                continue
            old = downlink.counter
            downlink.wire, downlink.counter = self._seal(device_id, downlink.name,
                                                         downlink.fields)
            downlink.sent_ms = downlink.next_retry_ms = None
            downlink.tries = 0
            self.evidence.downlink(now_ms, device_id, downlink.counter, downlink.name,
                                   downlink.fields)
            for alarm in self.alarm_history:
                if alarm.device_id == device_id and alarm.ack_counter == old:
                    alarm.ack_counter = downlink.counter

    def _seal(self, device_id, name, fields):
        """Seal one downlink; returns (wire, counter). The counter is reserved in the store
        before it is used (reserve-ahead, SPEC 3.3): a restarted centre never reuses one,
        which under CTR would reuse keystream."""
        sender = self._sender(device_id)
        counter = sender.counter
        key = (device_id, sender.key_id)
        if counter >= self._reserved.get(key, 0):
            self._reserved[key] = counter + DOWNLINK_RESERVE
            self.evidence.reserve(device_id, sender.key_id, self._reserved[key])
        return sender.seal(name, fields), counter

    def _flush_device(self, device_id, now_ms, resend=False):
        """Wire frames of one device due now: never sent, retry due, or (resend) any unacked
        one sent at least resend_on_contact_ms ago, because the device is listening now."""
        out = []
        config = self.config
        for downlink in self._device_downlinks(device_id):
            due = (downlink.sent_ms is None or downlink.next_retry_ms <= now_ms or
                   resend and now_ms - downlink.sent_ms >= config.resend_on_contact_ms)
            if not due:
                continue
            backoff_ms = min(config.downlink_retry_max_ms,
                             config.downlink_retry_ms << min(downlink.tries, 16))
            downlink.tries += 1
            downlink.sent_ms = now_ms
            downlink.next_retry_ms = now_ms + backoff_ms
            out.append(downlink.wire)
        return out

    def _event(self, now_ms, event_kind, device_id, **detail):
        event = Event(now_ms, event_kind, device_id, detail)
        self.events.append(event)
        self.evidence.event(event)
        if self.on_event is not None:
            self.on_event(event)


_HANDLERS = {
    "HELLO": Centre._on_hello,
    "HEARTBEAT": Centre._on_heartbeat,
    "POSITION": Centre._on_position,
    "NO_FIX": Centre._on_no_fix,
    "ALARM": Centre._on_alarm,
    "EVENT": Centre._on_event,
    "ACK": Centre._on_ack,
}
