"""Alarms and the emulated operator.

- Operator: each raised alarm is acked (OPERATOR_ACK) `operator_ack_delay_ms` after it first
  arrives. A raised alarm that arrives again after its ack is acked again at once (the device
  did not get it). A cancelled or cleared alarm that is not yet acked is not acked.
- Repeat: an ALARM record in state repeat (the wearer pressed again while the alarm was
  active) is shown to the operator (ALARM_REPEAT) and acked again after
  operator_ack_delay_ms; one whose raised record has not arrived raises the alarm.
- Routing: each raised alarm and repeat carries its `endpoint` (modes.py): police dispatch
  in aware mode, the probation operator in paired mode, by the mode in force when raised.
- Clear: with `operator_clear_ms` set, the operator ends each open panic alarm that long after
  it first arrives (COMMAND clear_alarm with the alarm id, acking it first if not yet acked);
  the device's ALARM record in state cleared closes it. Without it no alarm is ever cleared,
  and the device keeps its panic active (issue 9: a second press must then repeat it).
- Restart: a restarted centre takes its alarms back from the evidence log.
"""
from host.centre.model import (
    ALARM_ACK_DELIVERED,
    ALARM_ACKED,
    ALARM_CANCELLED,
    ALARM_CLEARED,
    ALARM_RAISED,
    ALARM_REPEAT,
    CLEAR_REQUESTED,
    Alarm,
)
from protocol import host_constants as constants
from protocol import host_names, messages

# ALARM state 4 (SPEC 6.6): a press while the alarm was active. Named here until every
# protocol build has it.
ALARM_STATE_REPEAT = getattr(messages, "ALARM_STATE_REPEAT", 4)


class Alarms:
    """Part of Centre: the alarm lifecycle as the centre sees it."""

    def _alarms_tick(self, now_ms):
        for alarm in self.alarm_history:
            if alarm.ack_due_ms is not None and alarm.ack_due_ms <= now_ms:
                self._operator_ack(alarm, now_ms)
            if alarm.clear_due_ms is not None and alarm.clear_due_ms <= now_ms:
                self._operator_clear(alarm, now_ms)

    def _alarm_deadlines(self):
        times = [a.ack_due_ms for a in self.alarm_history if a.ack_due_ms is not None]
        times.extend(a.clear_due_ms for a in self.alarm_history if a.clear_due_ms is not None)
        return times

    def _schedule_clear(self, alarm, from_ms):
        """An open panic alarm is cleared by the operator `operator_clear_ms` after `from_ms`
        (the firmware keeps only a panic active; other kinds need no clearing)."""
        if (self.config.operator_clear_ms is not None and alarm.kind == constants.ALARM_KIND_PANIC
                and not alarm.closed and alarm.clear_sent_ms is None):
            alarm.clear_due_ms = from_ms + self.config.operator_clear_ms

    def _operator_clear(self, alarm, now_ms):
        """The operator ends the alarm: COMMAND clear_alarm; the device answers with an ALARM
        record in state cleared (ALARM_CLEARED). The ack goes first if still due, so the
        wearer has felt a person take it before the alarm ends."""
        alarm.clear_due_ms = None
        if alarm.closed:
            return
        if alarm.acked_ms is None:
            self._operator_ack(alarm, now_ms)
        alarm.clear_sent_ms = now_ms
        counter = self.send(alarm.device_id, "COMMAND",
                            {"command": constants.COMMAND_CLEAR_ALARM, "arg": alarm.alarm_id},
                            now_ms)
        self.evidence.alarm(now_ms, alarm.device_id, alarm.alarm_id, alarm.kind,
                            "clear_requested", alarm.raised_time_ms, counter)
        self._event(now_ms, CLEAR_REQUESTED, alarm.device_id, alarm_id=alarm.alarm_id,
                    operator_id=self.config.operator_id, counter=counter)

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
            if state == constants.ALARM_STATE_RAISED:
                alarm.ack_due_ms = now_ms + self.config.operator_ack_delay_ms
                self._schedule_clear(alarm, now_ms)
            if state == ALARM_STATE_REPEAT:  # its raised record is late or lost: the same
                alarm.ack_due_ms = now_ms + self.config.operator_ack_delay_ms
                self._schedule_clear(alarm, now_ms)
            change = "raised"
            self._event(now_ms, ALARM_RAISED, device.device_id, alarm_id=alarm.alarm_id,
                        kind=host_names.ALARM_KINDS.get(alarm.kind, alarm.kind),
                        raised_time_ms=alarm.raised_time_ms, historic=frame.historic,
                        endpoint=self._endpoint(device.device_id, alarm.raised_time_ms),
                        repeat=state == ALARM_STATE_REPEAT)
        elif state == ALARM_STATE_REPEAT:
            # The wearer pressed again while it was active: its own record, shown to the
            # operator, who acknowledges the latest press (SPEC 6.6).
            change = "repeat"
            alarm.ack_due_ms = now_ms + self.config.operator_ack_delay_ms
            fix = f["fix"]
            self._event(now_ms, ALARM_REPEAT, device.device_id, alarm_id=alarm.alarm_id,
                        endpoint=self._endpoint(device.device_id, alarm.raised_time_ms),
                        counter=frame.counter, has_fix=fix is not None)
        elif state == constants.ALARM_STATE_RAISED:
            change = "repeated"
            if alarm.acked_ms is not None:
                alarm.ack_due_ms = now_ms  # the device has not seen the operator's ack: again
        else:
            change = None
        if state in (constants.ALARM_STATE_CANCELLED, constants.ALARM_STATE_CLEARED):
            if state == constants.ALARM_STATE_CANCELLED:
                alarm.cancelled_ms = now_ms
                change, event_kind = "cancelled", ALARM_CANCELLED
            else:
                alarm.cleared_ms = now_ms
                change, event_kind = "cleared", ALARM_CLEARED
            if alarm.acked_ms is None:
                alarm.ack_due_ms = None
            alarm.clear_due_ms = None
            self._event(now_ms, event_kind, device.device_id, alarm_id=alarm.alarm_id)
        self.evidence.alarm(now_ms, device.device_id, alarm.alarm_id, f["kind"], change,
                            f["raised_time_ms"], frame.counter, frame.historic)
        if f["fix"] is not None:
            self._victim_fix(device.device_id, f["fix"], now_ms)

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

    def _restore_alarms(self):
        """A restarted centre takes its alarms back from the evidence log (found by
        bench/chaos.py): without them, an alarm the device repeats after the restart was
        shown to the operator a second time, and one that was waiting for the operator's ack
        never got it. An open alarm that was not acked is due at once (the process that timed
        its delay is gone); one acked but not confirmed by the device gets its OPERATOR_ACK
        again, since the queued downlink died with the process; so does a clear_alarm the
        operator sent for an alarm still open. No event is raised: the operator has seen
        these alarms."""
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
            if change == "raised":
                self._schedule_clear(alarm, row["time_ms"])
            if change in ("raised", "repeated") and alarm.acked_ms is None or \
                    change == "repeat":
                alarm.ack_due_ms = row["time_ms"]
            elif change == "clear_requested":
                alarm.clear_due_ms = row["time_ms"]  # its COMMAND died with the process
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
            if alarm.closed:
                alarm.clear_due_ms = None
                if alarm.acked_ms is None:
                    alarm.ack_due_ms = None

