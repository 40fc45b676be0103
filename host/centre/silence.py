"""Silence watch: a device that has been heard from is NOT_REPORTING once nothing authentic
has arrived for `missed_heartbeats` heartbeat intervals plus `silence_grace_ms`; REPORTING
again when it is heard from (see Intake._contact). The interval is per device from config
(default 900 s), or the low-power interval while its last heartbeat said low_power.
"""
from host.centre.model import NOT_REPORTING
from protocol import messages


class Silence:
    """Part of Centre: judges each device's silence against the cadence it promises."""

    def _silence_tick(self, now_ms):
        for device in self.devices.values():
            deadline = self._silence_deadline_ms(device)
            if deadline is not None and deadline <= now_ms:
                device.reporting = False
                self._event(now_ms, NOT_REPORTING, device.device_id,
                            last_seen_ms=device.last_seen_ms,
                            heartbeat_s=self._heartbeat_s(device))

    def _heartbeat_s(self, device):
        if device.status & messages.STATUS_LOW_POWER:
            return self.config.low_power_heartbeat_s
        return self.config.device_heartbeat_s.get(device.device_id, self.config.heartbeat_s)

    def _silence_deadline_ms(self, device):
        if not device.reporting or device.last_seen_ms is None:
            return None
        return (device.last_seen_ms + self.config.missed_heartbeats * 1000 *
                self._heartbeat_s(device) + self.config.silence_grace_ms)

