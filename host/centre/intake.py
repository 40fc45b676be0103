"""Frame intake: deframing, authentication, the replay check, refusals, dedupe, transport
ACKs, the schema check, and the frames that only update the device record.

Decisions written here because the tests pin them:
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
- Transport ACK: one ACK per device per receive() call that had frames asking for one:
  `highest` and `bitmap` are that device's replay window (bit i = counter highest-1-i
  received). A duplicate too old for the window gets its own ACK (highest = its counter).
- Schema: a HELLO whose schema_hash differs from ours marks the device "mismatched" until a
  HELLO with the right hash. Only a HELLO newer (higher counter, same key) than the last one
  may change the flag; an older one is refused "stale_hello" (acked, nothing changes). The HELLO and every later frame of that boot are refused with
  reason "schema_mismatch": authentic, so they count as contact, but not delivered, not acked
  and not marked as seen, so the device keeps them queued and they are delivered after it is
  updated. A frame before any HELLO (the centre restarted) is trusted.
"""
from host.centre.model import (
    DEVICE_EVENT,
    DUPLICATE,
    HELLO,
    RATE_LIMITED,
    REFUSED,
    REPORTING,
    SCHEMA_MISMATCH,
    STALE_HELLO,
    Device,
    _Link,
)
from protocol import codec, host_names, host_tables, messages


class Intake:
    """Part of Centre: bytes in, delivered frames to the handlers, ACKs out."""

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
        if window.highest - frame.counter > host_tables.REPLAY_WINDOW:
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
        if window.highest - frame.counter <= host_tables.REPLAY_WINDOW:
            window.accept(frame.counter)
        device.frames_delivered += 1
        self.evidence.frame(now_ms, link_id, "delivered", frame)
        handler = self._handler(frame.name)
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
        if any(window.highest - c <= host_tables.REPLAY_WINDOW for c in counters):
            acks.append(self._seal(device_id, "ACK", {"highest": window.highest,
                                                      "bitmap": window.bitmap})[0])
        old = sorted({c for c in counters if window.highest - c > host_tables.REPLAY_WINDOW})
        for counter in old[-8:]:  # bounded: a replay flood of old frames gets few replies
            acks.append(self._seal(device_id, "ACK", {"highest": counter, "bitmap": 0})[0])
        return acks

    def _on_hello(self, device, frame, now_ms):
        self._after_reset(device.device_id, now_ms)
        f = frame.fields
        device.firmware = "%d.%d.%d" % (f["fw_major"], f["fw_minor"], f["fw_patch"])
        device.boot_count = f["boot_count"]
        device.reset_cause = f["reset_cause"]
        self._device_promises(device, f)
        self._locate_ms.pop(device.device_id, None)  # a reboot ends any tracking
        self._event(now_ms, HELLO, device.device_id, firmware=device.firmware,
                    boot_count=device.boot_count, reset_cause=device.reset_cause)
        # A device that lost power does not know the time until its first fix; alarms it
        # raises meanwhile would carry raised_time_ms 0. Tell it at once.
        self.send(device.device_id, "TIME_SYNC", {"utc_ms": int(now_ms)}, now_ms)

    def _device_promises(self, device, fields):
        """The mode and silence interval the device says it keeps (HELLO/HEARTBEAT `mode`
        and `interval_s`, SPEC 6.2/6.3; absent in frames of protocol versions before them)."""
        if fields.get("interval_s"):
            device.reported_heartbeat_s = fields["interval_s"]
        if fields.get("mode"):
            device.reported_mode = fields["mode"]

    def _on_heartbeat(self, device, frame, now_ms):
        f = frame.fields
        self._device_promises(device, f)
        device.last_heartbeat_ms = now_ms
        device.battery_mv = f["battery_mv"]
        device.battery_pct = f["battery_pct"]
        device.status = f["status"]

    def _on_event(self, device, frame, now_ms):
        f = frame.fields
        self._event(now_ms, DEVICE_EVENT, device.device_id,
                    kind=host_names.EVENT_KINDS.get(f["kind"], f["kind"]), device_time_ms=f["time_ms"],
                    value=f["value"])

