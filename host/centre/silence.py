"""Silence watch: silence is judged against the cadence the device's state promises.

- Routine: a device that has been heard from is NOT_REPORTING once nothing authentic has
  arrived for `missed_heartbeats` intervals plus `silence_grace_ms`. The interval is the one
  the device last told the centre (HEARTBEAT/HELLO `heartbeat_s`, once the protocol carries
  it), else per device from config (default 900 s), or the low-power interval while its last
  heartbeat said low_power.
- Urgent: while the device has an open alarm at the centre, or its proximity level is
  warning or alarm, it sends every few seconds (the panic and proximity cadences are under
  60 s), so `urgent_silence_ms` (60 s) of silence is NOT_REPORTING at once, with
  `urgent` and the reason, and an ESCALATED event tells the operator in the same tick. This
  is what catches a device that browns out or is smashed during a panic.
  Not while only uncertain: that level means the device has no fix, and a device without a
  fix has nothing to send at the proximity cadence.
- REPORTING again when it is heard from (Intake._contact).
"""
from host.centre.model import ESCALATED, NOT_REPORTING
from host.centre.proximity import WARNING
from protocol import host_constants as constants


class Silence:
    """Part of Centre: judges each device's silence against the cadence it promises."""

    def _silence_tick(self, now_ms):
        open_alarms = self._devices_with_open_alarms()
        for device in self.devices.values():
            deadline, reason = self._silence_due(device, open_alarms)
            if deadline is None or deadline > now_ms:
                continue
            device.reporting = False
            detail = dict(last_seen_ms=device.last_seen_ms,
                          heartbeat_s=self._heartbeat_s(device))
            if reason != "routine":
                detail.update(urgent=True, reason=reason,
                              silent_ms=now_ms - device.last_seen_ms)
            self._event(now_ms, NOT_REPORTING, device.device_id, **detail)
            if reason != "routine":
                self._event(now_ms, ESCALATED, device.device_id, reason=reason,
                            last_seen_ms=device.last_seen_ms)

    def _silence_deadlines(self):
        open_alarms = self._devices_with_open_alarms()
        return [self._silence_due(d, open_alarms)[0] for d in self.devices.values()]

    def _devices_with_open_alarms(self):
        return {a.device_id for a in self.alarm_history if not a.closed}

    def _urgent_reason(self, device, open_alarms):
        """Why this device must be heard from every urgent_silence_ms, or None."""
        if device.device_id in open_alarms:
            return "silent_during_alarm"
        tracker = self._trackers.get(device.device_id)
        if tracker is not None and tracker.state >= WARNING:
            return "silent_during_proximity"
        return None

    def _silence_due(self, device, open_alarms):
        """(when the device becomes NOT_REPORTING, why: "routine" or the urgent reason)."""
        if not device.reporting or device.last_seen_ms is None:
            return None, None
        reason = self._urgent_reason(device, open_alarms)
        if reason is not None:
            return device.last_seen_ms + self.config.urgent_silence_ms, reason
        return self._silence_deadline_ms(device), "routine"

    def _heartbeat_s(self, device):
        if device.reported_heartbeat_s:
            return device.reported_heartbeat_s
        if device.status & constants.STATUS_LOW_POWER:
            return self.config.low_power_heartbeat_s
        return self.config.device_heartbeat_s.get(device.device_id, self.config.heartbeat_s)

    def _silence_deadline_ms(self, device):
        if not device.reporting or device.last_seen_ms is None:
            return None
        return (device.last_seen_ms + self.config.missed_heartbeats * 1000 *
                self._heartbeat_s(device) + self.config.silence_grace_ms)
