"""Proximity decisions: victim and offender fixes into the per-pair trackers, the level sent
to the device, and the locate_now requests that keep the victim's fixes fresh.

- Pre-alert: when an offender fix falls within `proximity.prealert_m` of the paired victim's
  last known position (widened by how far she may have moved since, when her last two
  fixes showed her moving: the tracker's victim_radius_m), the centre sends COMMAND locate_now with arg = `locate_track_s`: the
  device tracks silently (a fix every proximity_fix_s, sent at once, and reachable within
  seconds), so the victim's fixes are fresh enough to evaluate when the offender crosses the
  warning radius. It is repeated while the offender stays inside, `locate_renew_s` before the
  previous one runs out (counted from when it was queued, so delivery delays only shorten
  it), never more than one outstanding; a HELLO from the device (a reboot forgets tracking)
  lets the next offender fix ask again at once. The command carries no distance or bearing.
- Confirmation: when an evaluation points to a higher level than the current state but is
  not yet confirmed, the centre asks for one victim fix at once (COMMAND locate_now, arg 0),
  so the confirming fix comes within seconds instead of at the next tracking fix. The rule
  itself (two consecutive agreeing evaluations) is unchanged.
- Uncertain (issue 9): a change to UNCERTAIN (a stale victim fix, the offender possibly
  within the warning radius) goes to the device as its level, to the operator as a
  PROXIMITY event, and asks the device to track (COMMAND locate_now, arg locate_track_s).
  An offender within alarm_m of the victim's last known position while it is stale is an
  ESCALATED event for the operator, once per episode. Every decision, with its basis,
  radii, speeds and predicted closest approach, is a row of the evidence log.
- Reach (issue 9, a victim on a bus): a stationary device fixes only every heartbeat_s
  (900 s), so a victim who boards a bus towards the offender was seen minutes after the
  crossing. On each offender fix the centre asks whether she could have reached the
  warning radius by now, or within `reach_lookahead_s` (his next report plus a locate round
  trip), had she left her last known position at `vehicle_mps` (a bus or a car in town)
  the moment after her last fix: distance - both accuracies - warning_m <= vehicle_mps x
  (her fix's age + lookahead). If so it asks for one fix (COMMAND locate_now, arg 0),
  counting the age from the later of her fix and the last such request, so requests come
  every (distance - warning_m) / vehicle_mps - lookahead seconds and only while he is
  within reach: at 3 km about every 85 s, at 6 km every 5 min, beyond ~14 km never (her
  own 900 s fix comes first). A fix that shows her moving then starts the pre-alert.
- No fix (issue 9, the indoor hour): while the device's newest report is NO_FIX (it is
  indoors, its GNSS could not fix), the centre sends it at most one locate_now of any kind
  per `no_fix_locate_s`: each one made the receiver search again at ~50 mA. The levels
  are not held back: a stale fix still gives the wearer and the operator UNCERTAIN and the
  escalation; only the requests for fixes she cannot get are spaced out.
"""
from host.centre.model import (
    ESCALATED,
    LOCATE_HELD,
    LOCATE_REQUESTED,
    PROXIMITY,
    SUPERSEDE_CONFIRM,
    SUPERSEDE_LOCATE,
)
from host.centre.proximity import LEVEL_NAMES, UNCERTAIN, Fix, haversine_m
from protocol import host_constants as constants

STATIONARY_MPS = 0.5  # her last two fixes moved slower: the pre-alert is not widened


class ProximityWatch:
    """Part of Centre: proximity for every paired victim."""

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
            self._reach(victim_id, offender_id, fix, now_ms)
            device = self.devices.get(victim_id)
            if device is not None and device.link_id is not None:
                out.extend((device.link_id, w) for w in self._flush_device(victim_id, now_ms))
        self.frames_down += len(out)
        self._commit()
        return out

    def proximity_state(self, victim_id):
        tracker = self._trackers.get(victim_id)
        return None if tracker is None else tracker.state

    def _on_position(self, device, frame, now_ms):
        if frame.fields["fixes"]:
            self._no_fix_ms.pop(device.device_id, None)
        for fix in sorted(frame.fields["fixes"], key=lambda f: f["fix_time_ms"]):
            self._victim_fix(device.device_id, fix, now_ms)

    def _on_no_fix(self, device, frame, now_ms):
        self._no_fix_ms[device.device_id] = now_ms
        if frame.fields["last_fix"] is not None:
            self._victim_fix(device.device_id, frame.fields["last_fix"], now_ms)

    def _victim_fix(self, victim_id, fix, now_ms):
        tracker = self._trackers.get(victim_id)
        if tracker is None:
            return
        decision = tracker.victim_fix(
            Fix(fix["fix_time_ms"], fix["lat_e7"], fix["lon_e7"], fix["accuracy_m"]), now_ms)
        self._decided(victim_id, self._pairs[victim_id], decision, now_ms)

    def _decided(self, victim_id, offender_id, decision, now_ms):
        if decision is None:
            return
        counter = None
        if decision.changed:
            counter = self.send(victim_id, "PROXIMITY", {"level": decision.state}, now_ms)
        elif not decision.stale and decision.candidate > decision.state and \
                self._may_locate(victim_id, offender_id, now_ms, "confirm"):
            # Rising but unconfirmed: a fresh victim fix now confirms (or refutes) it sooner.
            self._any_locate_ms[victim_id] = now_ms
            self.send(victim_id, "COMMAND", {"command": constants.COMMAND_LOCATE_NOW, "arg": 0},
                      now_ms, supersede=SUPERSEDE_CONFIRM)
        self.evidence.proximity(victim_id, offender_id, decision, self.config.proximity, counter)
        if decision.changed:
            self._event(now_ms, PROXIMITY, victim_id, offender_id=offender_id,
                        level=LEVEL_NAMES[decision.state],
                        previous=LEVEL_NAMES[decision.previous],
                        decided_ms=decision.time_ms, queued_ms=now_ms, counter=counter,
                        basis=decision.basis)
            if decision.state == UNCERTAIN:
                # The centre cannot tell: ask the device for fixes now, whatever its cadence.
                self._track(victim_id, offender_id, now_ms, "uncertain")
        if decision.escalate:
            self._event(now_ms, ESCALATED, victim_id, offender_id=offender_id,
                        reason="offender_near_last_known_position",
                        distance_m=round(decision.distance_m),
                        victim_age_ms=decision.victim_age_ms,
                        victim_radius_m=round(decision.victim_radius_m))

    def _track(self, victim_id, offender_id, now_ms, reason):
        """COMMAND locate_now for locate_track_s: fixes every proximity_fix_s, sent at once."""
        config = self.config.proximity
        if not self._may_locate(victim_id, offender_id, now_ms, reason):
            return
        counter = self.send(victim_id, "COMMAND", {"command": constants.COMMAND_LOCATE_NOW,
                                                   "arg": config.locate_track_s},
                            now_ms, supersede=SUPERSEDE_LOCATE)
        self._locate_ms[victim_id] = self._any_locate_ms[victim_id] = now_ms
        self._event(now_ms, LOCATE_REQUESTED, victim_id, offender_id=offender_id,
                    track_s=config.locate_track_s, counter=counter, reason=reason)

    def _prealert(self, victim_id, offender_id, offender, now_ms):
        """Keep the victim's device tracking while the offender is within the pre-alert
        radius of the victim's last known position (see the module docstring)."""
        config = self.config.proximity
        tracker = self._trackers[victim_id]
        victim = tracker.victim
        if not config.prealert_m or victim is None:
            return  # nothing to measure from: the device's own cadence will report
        # She may have moved on since her last fix (issue 9: a victim on a bus).
        if haversine_m(victim.lat_e7, victim.lon_e7, offender.lat_e7, offender.lon_e7) - \
                tracker.victim_radius_m(now_ms, STATIONARY_MPS) > config.prealert_m:
            return
        last_ms = self._locate_ms.get(victim_id)
        renew_at_ms = None if last_ms is None else (
            last_ms + (config.locate_track_s - config.locate_renew_s) * 1000)
        if renew_at_ms is not None and now_ms < renew_at_ms:
            return  # tracking (or its request) still covers the next offender fixes
        self._track(victim_id, offender_id, now_ms, "prealert")


    def _may_locate(self, victim_id, offender_id, now_ms, reason):
        """False while the device's newest report is NO_FIX and a locate_now went out less
        than no_fix_locate_s ago (see the module docstring). A hold is a decision too: the
        first in each window goes to the evidence log as locate_held (one per window, not
        one per offender fix)."""
        if victim_id not in self._no_fix_ms:
            return True
        last_ms = self._any_locate_ms.get(victim_id)
        limit_s = self.config.proximity.no_fix_locate_s
        if last_ms is None or now_ms - last_ms >= limit_s * 1000:
            return True
        if self._held_after_ms.get(victim_id) != last_ms:
            self._held_after_ms[victim_id] = last_ms
            self._event(now_ms, LOCATE_HELD, victim_id, offender_id=offender_id, reason=reason,
                        limit="no_fix_locate_s", last_locate_ms=last_ms,
                        next_allowed_ms=last_ms + limit_s * 1000)
        return False

    def _reach(self, victim_id, offender_id, offender, now_ms):
        """Ask for one victim fix when she could have reached the warning radius by bus
        since her last fix (see the module docstring)."""
        config = self.config.proximity
        victim = self._trackers[victim_id].victim
        if not config.vehicle_mps or victim is None:
            return
        tracking_ms = self._locate_ms.get(victim_id)
        if tracking_ms is not None and now_ms - tracking_ms < config.locate_track_s * 1000:
            return  # she was asked to track: her fixes come every proximity_fix_s anyway
        since_ms = max(victim.time_ms, self._reach_ms.get(victim_id, victim.time_ms))
        margin_m = haversine_m(victim.lat_e7, victim.lon_e7, offender.lat_e7, offender.lon_e7) \
            - victim.accuracy_m - offender.accuracy_m - config.warning_m
        reach_m = config.vehicle_mps * ((now_ms - since_ms) / 1000.0 + config.reach_lookahead_s)
        if margin_m > reach_m or not self._may_locate(victim_id, offender_id, now_ms, "reach"):
            return
        counter = self.send(victim_id, "COMMAND", {"command": constants.COMMAND_LOCATE_NOW,
                                                   "arg": 0}, now_ms, supersede=SUPERSEDE_CONFIRM)
        self._reach_ms[victim_id] = self._any_locate_ms[victim_id] = now_ms
        self._event(now_ms, LOCATE_REQUESTED, victim_id, offender_id=offender_id, track_s=0,
                    counter=counter, reason="reach", victim_age_ms=now_ms - victim.time_ms)
