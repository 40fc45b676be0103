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
- Refused frames (bad CRC, wrong key, forged tag, ...) are counted by reason, logged and raised
  as "refused" events, never acked, and never change any state.
- Dedupe: the centre keeps the replay window per device itself. An authentic frame whose
  counter was already delivered is acked again but not delivered twice. Below the window
  (a record queued before a reboot, whose counters then jumped ahead) the evidence log of
  delivered counters decides, so such a record is delivered once, never dropped as old.
- Transport ACK: one ACK per device per receive() call that had frames asking for one:
  `highest` and `bitmap` are that device's replay window (bit i = counter highest-1-i
  received). A duplicate too old for the window gets its own ACK (highest = its counter).
- Schema: a HELLO whose schema_hash differs from ours marks the device "mismatched" until a
  HELLO with the right hash. The HELLO and every later frame of that boot are refused with
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
from protocol import codec, messages

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
        self._receiver = codec.Receiver(self.keys.keyring(), check_replay=False)
        self._deframers: dict[Any, codec.Deframer] = {}
        # A restarted centre must not reuse downlink counters, nor deliver old uplinks again.
        self._windows = {d: codec.ReplayWindow(c) for d, c in self.evidence.max_counters(
            "frames", "WHERE outcome = 'delivered'").items()}
        self._next_down = {d: c + 1 for d, c in self.evidence.max_counters("downlinks").items()}
        self._senders: dict[int, codec.Sender] = {}
        self._downlinks: list[Downlink] = []  # not yet done
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
        deframer = self._deframers.get(link_id)
        if deframer is None:
            deframer = self._deframers[link_id] = codec.Deframer()
        to_ack = {}  # device id -> counters asking for an ACK
        heard = []
        for block in deframer.feed(data):
            if isinstance(block, codec.FrameError):
                self._refuse(link_id, now_ms, block.reason, str(block))
                continue
            try:
                frame = self._receiver.open(block)
            except codec.FrameError as e:
                self._refuse(link_id, now_ms, e.reason, str(e))
                continue
            if self._frame(link_id, frame, now_ms) and frame.ack_requested:
                to_ack.setdefault(frame.device_id, []).append(frame.counter)
            if frame.device_id not in heard:
                heard.append(frame.device_id)
        replies = []
        for device_id, counters in to_ack.items():
            replies.extend(self._acks(device_id, counters))
        for device_id in heard:
            replies.extend(self._flush_device(device_id, now_ms, resend=True))
        self.frames_down += len(replies)
        self.evidence.commit()
        return replies

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
            if downlink.queued_ms + self.config.downlink_expiry_ms <= now_ms:
                downlink.done = True
                self._event(now_ms, DOWNLINK_EXPIRED, downlink.device_id,
                            type=downlink.name, counter=downlink.counter)
        self._downlinks = [d for d in self._downlinks if not d.done]
        for device_id in {d.device_id for d in self._downlinks}:
            link_id = self.devices[device_id].link_id if device_id in self.devices else None
            if link_id is not None:
                out.extend((link_id, w) for w in self._flush_device(device_id, now_ms))
        self.frames_down += len(out)
        self.evidence.commit()
        return out

    def next_deadline_ms(self):
        """The earliest time tick() has work, or None."""
        times = [a.ack_due_ms for a in self.alarm_history if a.ack_due_ms is not None]
        times.extend(self._silence_deadline_ms(d) for d in self.devices.values())
        for downlink in self._downlinks:
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
        sender = self._sender(device_id)
        wire = sender.seal(name, fields)
        counter = sender.counter - 1
        if supersede is None and name in SUPERSEDING:
            supersede = name
        if supersede is not None:
            for old in self._downlinks:
                if old.device_id == device_id and old.supersede == supersede:
                    old.done = True
            self._downlinks = [d for d in self._downlinks if not d.done]
        self._downlinks.append(Downlink(device_id, counter, name, wire, now_ms,
                                        supersede=supersede))
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
        self.evidence.commit()
        return out

    def proximity_state(self, victim_id):
        tracker = self._trackers.get(victim_id)
        return None if tracker is None else tracker.state

    def downlinks_pending(self, device_id=None):
        return [d for d in self._downlinks if device_id is None or d.device_id == device_id]

    def close(self):
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
            if change in ("raised", "repeated") and alarm.acked_ms is None:
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

    def _refuse(self, link_id, now_ms, reason, detail, frame=None):
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self.evidence.frame(now_ms, link_id, "refused:" + reason, frame, detail)
        self._event(now_ms, REFUSED, frame.device_id if frame else None, reason=reason,
                    link=link_id, **({"type": frame.name, "counter": frame.counter} if frame else {}))

    def _frame(self, link_id, frame, now_ms):
        """Handle one authentic frame; returns True if it may be acked."""
        self.frames_up += 1
        device = self.devices.get(frame.device_id)
        if device is None:
            device = self.devices[frame.device_id] = Device(frame.device_id)
        device.link_id = link_id
        device.key_id = frame.key_id
        device.last_seen_ms = now_ms
        if not device.reporting:
            device.reporting = True
            self._event(now_ms, REPORTING, device.device_id)
        if frame.name == "HELLO":
            mismatch = frame.fields["schema_hash"] != messages.SCHEMA_HASH
            if mismatch and device.schema_ok is not False:
                self._event(now_ms, SCHEMA_MISMATCH, device.device_id,
                            theirs="0x%08x" % frame.fields["schema_hash"],
                            ours="0x%08x" % messages.SCHEMA_HASH)
            device.schema_ok = not mismatch
        if device.schema_ok is False:
            self._refuse(link_id, now_ms, "schema_mismatch", "", frame)
            return False
        window = self._windows.get(frame.device_id)
        if window is None:
            window = self._windows[frame.device_id] = codec.ReplayWindow()
        # Below the window (after a reboot the device's counters jump ahead, so a record it
        # queued before the reboot arrives far below) the evidence log, which knows every
        # counter ever delivered, decides.
        below = window.highest - frame.counter > codec.REPLAY_WINDOW
        if (self.evidence.delivered(frame.device_id, frame.counter) if below
                else window.seen(frame.counter)):
            device.duplicates += 1
            self.evidence.frame(now_ms, link_id, "duplicate", frame)
            return True
        if not below:
            window.accept(frame.counter)
        device.frames_delivered += 1
        self.evidence.frame(now_ms, link_id, "delivered", frame)
        handler = _HANDLERS.get(frame.name)
        if handler is not None:
            handler(self, device, frame, now_ms)
        return True

    def _acks(self, device_id, counters):
        window = self._windows[device_id]
        sender = self._sender(device_id)
        acks = []
        fields = []
        if any(window.highest - c <= codec.REPLAY_WINDOW for c in counters):
            fields.append({"highest": window.highest, "bitmap": window.bitmap})
        for counter in counters:
            if window.highest - counter > codec.REPLAY_WINDOW:
                fields.append({"highest": counter, "bitmap": 0})
        for ack in fields:
            acks.append(sender.seal("ACK", ack))
            # Logged like every downlink, so a restarted centre starts its downlink counters
            # above every one used: a reused counter would be a reused CTR nonce, and the
            # device would refuse the new frame as a replay.
            self.evidence.downlink(self._now_ms, device_id, sender.counter - 1, "ACK", ack)
        return acks

    def _on_hello(self, device, frame, now_ms):
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
            if state == messages.ALARM_STATE_RAISED:
                alarm.ack_due_ms = now_ms + self.config.operator_ack_delay_ms
            change = "raised"
            self._event(now_ms, ALARM_RAISED, device.device_id, alarm_id=alarm.alarm_id,
                        kind=messages.ALARM_KINDS.get(alarm.kind, alarm.kind),
                        raised_time_ms=alarm.raised_time_ms, historic=frame.historic)
        elif state == messages.ALARM_STATE_RAISED:
            change = "repeated"
            if alarm.acked_ms is not None:
                alarm.ack_due_ms = now_ms  # the device has not seen the operator's ack: again
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
                    kind=messages.EVENT_KINDS.get(f["kind"], f["kind"]), device_time_ms=f["time_ms"],
                    value=f["value"])

    def _on_ack(self, device, frame, now_ms):
        highest, bitmap = frame.fields["highest"], frame.fields["bitmap"]
        for downlink in self._downlinks:
            if downlink.device_id != device.device_id or downlink.done:
                continue
            offset = highest - downlink.counter
            if offset == 0 or 0 < offset <= 64 and bitmap >> (offset - 1) & 1:
                downlink.done = True
                downlink.acked_ms = now_ms
                self.evidence.downlink_ack(now_ms, device.device_id, downlink.counter,
                                           downlink.name, downlink.queued_ms)
                self._downlink_acked(downlink, now_ms)
        self._downlinks = [d for d in self._downlinks if not d.done]

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
        sender = self._senders.get(device_id)
        if sender is None:
            device = self.devices.get(device_id)
            key_ids = self.keys.key_ids(device_id)
            key_id = device.key_id if device is not None and device.key_id is not None else (
                key_ids[-1] if key_ids else None)
            key = self.keys.get(device_id, key_id) if key_id is not None else None
            if key is None:
                raise ValueError("no key for device %d" % device_id)
            sender = codec.Sender(device_id, key_id, key, downlink=True,
                                  counter=self._next_down.get(device_id, 1))
            self._senders[device_id] = sender
        return sender

    def _flush_device(self, device_id, now_ms, resend=False):
        """Wire frames of one device due now: never sent, retry due, or (resend) any unacked
        one sent at least resend_on_contact_ms ago, because the device is listening now."""
        out = []
        config = self.config
        for downlink in self._downlinks:
            if downlink.device_id != device_id or downlink.done:
                continue
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
