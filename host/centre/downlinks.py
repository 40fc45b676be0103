"""Downlinks: sealing under reserve-ahead counters, retries, supersession, expiry, and the
device's transport ACKs of them.

- Downlinks ask for a transport ACK and are resent with the same counter, with backoff from
  `downlink_retry_ms` up to `downlink_retry_max_ms`, immediately whenever the device is heard
  from, until acked, superseded (a newer PROXIMITY replaces an older one; a newer tracking
  COMMAND locate_now replaces an older one) or expired.
- Restart: downlink counters resume from their reserve-ahead reservation, so a restarted
  centre reuses no counter.
"""
from host.centre.model import DOWNLINK_EXPIRED, DOWNLINK_RESERVE, SUPERSEDING, Downlink
from protocol import host_fast


class Downlinks:
    """Part of Centre: everything the centre sends that is not an ACK."""

    def _expire_downlinks(self, now_ms):
        for downlink in list(self._downlinks):
            if not downlink.done and downlink.queued_ms + self.config.downlink_expiry_ms <= now_ms:
                downlink.done = True
                self._event(now_ms, DOWNLINK_EXPIRED, downlink.device_id,
                            type=downlink.name, counter=downlink.counter)
        self._downlinks = [d for d in self._downlinks if not d.done]

    def _downlinks_tick(self, now_ms):
        out = []
        for device_id in {d.device_id for d in self._downlinks}:
            link_id = self.devices[device_id].link_id if device_id in self.devices else None
            if link_id is not None:
                out.extend((link_id, w) for w in self._flush_device(device_id, now_ms))
        return out

    def _downlink_deadlines(self):
        times = []
        for downlink in self._downlinks:
            if downlink.done:
                continue
            times.append(downlink.queued_ms + self.config.downlink_expiry_ms)
            device = self.devices.get(downlink.device_id)
            if device is None or device.link_id is None:
                continue
            times.append(downlink.queued_ms if downlink.sent_ms is None else downlink.next_retry_ms)
        return times

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

