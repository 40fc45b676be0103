"""Modes and routing (issue 9): one device serves both Dutch schemes.

- AWARE: a panic button straight to the police. Alarms go to the police-dispatch endpoint;
  no proximity.
- PAIRED: paired by court order with one offender's ankle tag, from `valid_from` until
  `valid_until`. Alarms and proximity go to the probation operator.

A device in `CentreConfig.pairs` starts paired (no end), any other aware. `set_mode()` is the
operator's (or the court's) switch: it sends the authenticated MODE downlink (SPEC 6.15) and
the change takes effect at the centre at `valid_from` (now if 0). At `valid_until` the
pairing ends by itself and the device is aware again: the device falls back on its own, and
the centre records it `by` "expiry", so panic coverage has no gap. Every change is a
MODE_CHANGED event in the evidence log with who made it (`by`), and a device's own
mode_changed EVENT is recorded too. Each alarm is routed by the mode in force at the time it
was raised (the device's clock), so a press just before a switch goes where it was meant to.
"""
from host.centre.model import MODE_CHANGED, MODE_ORDERED
from host.centre.proximity import ProximityTracker
from protocol import messages

AWARE = getattr(messages, "MODE_AWARE", 1)
PAIRED = getattr(messages, "MODE_PAIRED", 2)
MODE_NAMES = {AWARE: "aware", PAIRED: "paired"}
ENDPOINTS = {AWARE: "police_dispatch", PAIRED: "probation"}


class Modes:
    """Part of Centre: each device's scheme, its history, and where its alarms go."""

    def _init_modes(self):
        self._mode_history = {}  # device id -> [(from_ms, mode, offender id)], oldest first
        self._mode_due = []  # [(at_ms, device id, mode, offender id, by)] not yet in force
        self._pairs = {}  # victim id -> offender id, while paired
        for victim, offender in self.config.pairs.items():
            self._mode_history[victim] = [(0, PAIRED, offender)]
            self._pair(victim, offender)

    def set_mode(self, device_id, mode, offender_id=0, valid_from_ms=0, valid_until_ms=0,
                 by="operator", now_ms=None):
        """Switch a device's scheme (see the module docstring); returns the MODE downlink's
        counter, or None when this protocol build has no MODE message."""
        now_ms = self._now_ms if now_ms is None else now_ms
        if mode not in MODE_NAMES:
            raise ValueError("mode %r: must be %d (aware) or %d (paired)" % (mode, AWARE,
                                                                            PAIRED))
        if mode == PAIRED and not offender_id:
            raise ValueError("a paired mode needs the offender's id")
        if mode == AWARE:
            offender_id, valid_from_ms, valid_until_ms = 0, 0, 0
        counter = None
        if "MODE" in self._receiver_names():
            counter = self.send(device_id, "MODE", {
                "mode": mode, "offender_id": offender_id, "valid_from_ms": valid_from_ms,
                "valid_until_ms": valid_until_ms}, now_ms, supersede="MODE")
        self._mode_due = [d for d in self._mode_due if d[1] != device_id]  # a newer order
        self._mode_due.append((max(now_ms, valid_from_ms), device_id, mode, offender_id, by))
        if mode == PAIRED and valid_until_ms:
            self._mode_due.append((valid_until_ms, device_id, AWARE, 0, "expiry"))
        self._mode_due.sort()
        self._event(now_ms, MODE_ORDERED, device_id, mode=MODE_NAMES[mode],
                    offender_id=offender_id, valid_from_ms=valid_from_ms,
                    valid_until_ms=valid_until_ms, by=by, counter=counter)
        self._modes_tick(now_ms)
        return counter

    def _receiver_names(self):
        return {entry[1] for entry in messages.MESSAGES}

    def _modes_tick(self, now_ms):
        while self._mode_due and self._mode_due[0][0] <= now_ms:
            at_ms, device_id, mode, offender_id, by = self._mode_due.pop(0)
            self._apply_mode(device_id, mode, offender_id, at_ms, by, now_ms)

    def _mode_deadlines(self):
        return [self._mode_due[0][0]] if self._mode_due else []

    def _apply_mode(self, device_id, mode, offender_id, at_ms, by, now_ms):
        history = self._mode_history.setdefault(device_id, [(0, AWARE, 0)])
        previous = history[-1]
        history.append((at_ms, mode, offender_id))
        self._unpair(device_id)
        if mode == PAIRED:
            self._pair(device_id, offender_id)
        self._event(now_ms, MODE_CHANGED, device_id, mode=MODE_NAMES[mode],
                    previous=MODE_NAMES[previous[1]], offender_id=offender_id,
                    effective_ms=at_ms, by=by)

    def _pair(self, victim_id, offender_id):
        self._pairs[victim_id] = offender_id
        self._trackers[victim_id] = ProximityTracker(self.config.proximity)
        self._victims.setdefault(offender_id, []).append(victim_id)

    def _unpair(self, victim_id):
        offender_id = self._pairs.pop(victim_id, None)
        self._trackers.pop(victim_id, None)
        self._locate_ms.pop(victim_id, None)
        if offender_id is not None:
            victims = [v for v in self._victims.get(offender_id, ()) if v != victim_id]
            if victims:
                self._victims[offender_id] = victims
            else:
                self._victims.pop(offender_id, None)

    def mode_at(self, device_id, t_ms):
        """(mode, offender id) in force for the device at UTC t_ms."""
        history = self._mode_history.get(device_id, [(0, AWARE, 0)])
        current = history[0]
        for entry in history:
            if entry[0] <= t_ms:
                current = entry
        return current[1], current[2]

    def _endpoint(self, device_id, t_ms):
        """Where an alarm raised at t_ms goes. A device that did not know the time (raised
        time 0) is routed by its mode now."""
        when = t_ms if t_ms else self._now_ms
        return ENDPOINTS[self.mode_at(device_id, when)[0]]
