"""Proximity engine: one victim's fixes against their offender's ankle-tag track.

Rules (each evaluation uses the newest victim fix and the newest offender fix):
- Staleness: if either fix is more than `max_fix_age_ms` old (or that far in the future) at the
  time of evaluation, the evaluation is "stale": the state never changes on stale data, and the
  run of agreeing evaluations starts over.
- Uncertain: the combined accuracy (victim + offender accuracy, the worst case) is too coarse
  when it exceeds `uncertain_fraction` of a radius whose boundary it straddles
  (|distance - radius| < combined accuracy). A precise fix far from every boundary is not
  uncertain, and neither is a coarse one that cannot change the answer.
- Otherwise, by distance with hysteresis: enter alarm at <= alarm_m and warning at <= warning_m;
  stay in alarm up to alarm_m * (1 + hysteresis) and in warning (or alarm) up to
  warning_m * (1 + hysteresis).
- Confirmation: the state changes only when `confirm_fixes` consecutive evaluations, each
  caused by a new fix on either side, give the same new level.

Only the level ever leaves the centre; distances stay in the evidence log.

Pre-alert (acted on by the Centre, not by the tracker): while the offender is within
`prealert_m` of the victim's last known position, the centre keeps the victim's device
tracking (COMMAND locate_now, arg = `locate_track_s`), so that both sides have fresh fixes
when the offender reaches the warning radius. The wearer is told nothing.
"""
import math
from dataclasses import dataclass
from typing import Optional

from protocol import host_names, messages

CLEAR = messages.PROXIMITY_CLEAR
UNCERTAIN = messages.PROXIMITY_UNCERTAIN
WARNING = messages.PROXIMITY_WARNING
ALARM = messages.PROXIMITY_ALARM
LEVEL_NAMES = host_names.PROXIMITY_LEVELS

EARTH_RADIUS_M = 6371008.8  # IUGG mean radius


@dataclass(frozen=True)
class ProximityConfig:
    warning_m: float = 1000.0
    alarm_m: float = 500.0
    hysteresis: float = 0.10
    max_fix_age_ms: int = 60_000
    confirm_fixes: int = 2
    uncertain_fraction: float = 0.25
    # Track the victim's device while the offender is this close: None = 3 x warning_m
    # (3000 m by default: ~30 min of walking, ~2 min by car); 0 = never.
    prealert_m: Optional[float] = None
    locate_track_s: int = 300  # COMMAND locate_now arg: how long the device tracks
    locate_renew_s: int = 120  # renew the tracking when less than this is left

    def __post_init__(self):
        if self.prealert_m is None:
            object.__setattr__(self, "prealert_m", 3.0 * self.warning_m)
        if self.prealert_m and self.prealert_m < self.warning_m:
            raise ValueError("proximity prealert_m %g: below warning_m %g (0 turns it off)"
                             % (self.prealert_m, self.warning_m))
        if not 0 < self.locate_track_s <= 0xFFFF:
            raise ValueError("proximity locate_track_s %d: must be 1..65535 (a u16 arg)"
                             % self.locate_track_s)
        if not 0 <= self.locate_renew_s < self.locate_track_s:
            raise ValueError("proximity locate_renew_s %d: must be 0..locate_track_s-1"
                             % self.locate_renew_s)


@dataclass(frozen=True)
class Fix:
    time_ms: int
    lat_e7: int
    lon_e7: int
    accuracy_m: float


@dataclass(frozen=True)
class Decision:
    """One evaluation and all its inputs, as written to the evidence log."""
    time_ms: int
    victim: Fix
    offender: Fix
    victim_age_ms: int
    offender_age_ms: int
    distance_m: float
    combined_accuracy_m: float
    candidate: Optional[int]  # None when stale
    streak: int
    previous: int
    state: int

    @property
    def changed(self):
        return self.state != self.previous

    @property
    def stale(self):
        return self.candidate is None


def haversine_m(lat1_e7, lon1_e7, lat2_e7, lon2_e7):
    lat1, lat2 = math.radians(lat1_e7 * 1e-7), math.radians(lat2_e7 * 1e-7)
    dlat = lat2 - lat1
    dlon = math.radians((lon2_e7 - lon1_e7) * 1e-7)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def classify(distance_m, combined_accuracy_m, current, config):
    """The level these inputs point to, given the current state (for hysteresis)."""
    for radius in (config.alarm_m, config.warning_m):
        if (combined_accuracy_m > config.uncertain_fraction * radius and
                abs(distance_m - radius) < combined_accuracy_m):
            return UNCERTAIN
    widen = 1.0 + config.hysteresis
    alarm_limit = config.alarm_m * (widen if current == ALARM else 1.0)
    warning_limit = config.warning_m * (widen if current in (WARNING, ALARM) else 1.0)
    if distance_m <= alarm_limit:
        return ALARM
    if distance_m <= warning_limit:
        return WARNING
    return CLEAR


class ProximityTracker:
    """The proximity state of one victim/offender pair. Feed it fixes; each new fix (newer than
    the last from the same side) that has a counterpart yields a Decision."""

    def __init__(self, config=None):
        self.config = config or ProximityConfig()
        self.state = CLEAR
        self.victim = None
        self.offender = None
        self._candidate = None
        self._streak = 0

    def victim_fix(self, fix, now_ms):
        if self.victim is not None and fix.time_ms <= self.victim.time_ms:
            return None  # nothing new: a duplicate or an older, out-of-order fix
        self.victim = fix
        return self._evaluate(now_ms)

    def offender_fix(self, fix, now_ms):
        if self.offender is not None and fix.time_ms <= self.offender.time_ms:
            return None
        self.offender = fix
        return self._evaluate(now_ms)

    def _evaluate(self, now_ms):
        victim, offender, config = self.victim, self.offender, self.config
        if victim is None or offender is None:
            return None
        victim_age_ms = now_ms - victim.time_ms
        offender_age_ms = now_ms - offender.time_ms
        distance_m = haversine_m(victim.lat_e7, victim.lon_e7, offender.lat_e7, offender.lon_e7)
        accuracy_m = float(victim.accuracy_m) + float(offender.accuracy_m)
        previous = self.state
        if abs(victim_age_ms) > config.max_fix_age_ms or abs(offender_age_ms) > config.max_fix_age_ms:
            candidate = None
            self._candidate, self._streak = None, 0
        else:
            candidate = classify(distance_m, accuracy_m, previous, config)
            if candidate == self._candidate:
                self._streak += 1
            else:
                self._candidate, self._streak = candidate, 1
            if candidate != previous and self._streak >= config.confirm_fixes:
                self.state = candidate
        return Decision(now_ms, victim, offender, victim_age_ms, offender_age_ms, distance_m,
                        accuracy_m, candidate, self._streak, previous, self.state)
