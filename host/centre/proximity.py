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

- Stale victim fix (issue 9): the centre is never silently unsure. When the victim's newest
  fix is stale but the offender's is fresh, the victim is somewhere within an uncertainty
  radius of the last known position: its accuracy plus the fix's age times a plausible
  speed (`walking_mps` by default, faster if the victim's last two fixes showed it, capped
  at `max_speed_mps`). The offender's radius is his accuracy plus his fix's age times his
  own speed. If even the farthest case is inside a radius, that level; if the nearest case
  is inside warning_m, UNCERTAIN; else CLEAR. An offender within alarm_m of the last known
  position sets `escalate` (the centre tells the operator).
- Predictive warning (issue 9): with both fixes fresh and the level below WARNING, each
  side's velocity is estimated from its last two fixes, and the closest approach of the
  straight-line tracks over the horizon until the offender's next report is due (the gap
  between his last two fixes, at most `predict_max_s`, plus `predict_margin_s`) is computed.
  A predicted approach within warning_m is a WARNING candidate ("predicted"); it is
  confirmed like any other, so a predicted warning needs two agreeing evaluations.

Only the level ever leaves the centre; distances stay in the evidence log.

Pre-alert (acted on by the Centre, not by the tracker): while the offender is within
`prealert_m` of the victim's last known position, the centre keeps the victim's device
tracking (COMMAND locate_now, arg = `locate_track_s`), so that both sides have fresh fixes
when the offender reaches the warning radius. The wearer is told nothing.
"""
import math
from dataclasses import dataclass
from typing import Optional

from protocol import host_constants as constants
from protocol import host_names

CLEAR = constants.PROXIMITY_CLEAR
UNCERTAIN = constants.PROXIMITY_UNCERTAIN
WARNING = constants.PROXIMITY_WARNING
ALARM = constants.PROXIMITY_ALARM
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
    walking_mps: float = 1.4  # a stale victim is assumed to move at least this fast
    max_speed_mps: float = 40.0  # no plausible speed above this (a train, a motorway)
    predict: bool = True  # warn on a predicted crossing (see the module docstring)
    # Reach (host/centre/proximity_watch.py): how fast a victim with a stale fix may be
    # carried towards the offender (13.9 m/s = 50 km/h, a bus or a car in town; 0 = off),
    # and how far ahead to look (his next 30 s report plus a locate round trip).
    vehicle_mps: float = 13.9
    reach_lookahead_s: float = 60.0
    # At most one locate_now per this while the device reports NO_FIX (indoors).
    no_fix_locate_s: int = 900
    predict_max_s: float = 60.0
    predict_margin_s: float = 10.0

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
    basis: str = "fresh"  # "fresh", "predicted", "stale_victim" or "stale" (no decision)
    victim_radius_m: float = 0.0  # stale victim: how far from the last fix they may be
    offender_radius_m: float = 0.0
    victim_speed_mps: Optional[float] = None
    offender_speed_mps: Optional[float] = None
    predicted_min_m: Optional[float] = None  # closest approach over the horizon
    horizon_ms: Optional[int] = None
    escalate: bool = False  # stale victim, offender within alarm_m of the last known fix

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


def _velocity_mps(older, newer):
    """(east, north) m/s between two fixes, or None when they are too close in time."""
    dt_s = (newer.time_ms - older.time_ms) / 1000.0
    if not 1.0 <= dt_s <= 300.0:
        return None
    lat0 = math.radians(older.lat_e7 * 1e-7)
    north = math.radians((newer.lat_e7 - older.lat_e7) * 1e-7) * EARTH_RADIUS_M
    east = math.radians((newer.lon_e7 - older.lon_e7) * 1e-7) * EARTH_RADIUS_M * math.cos(lat0)
    return east / dt_s, north / dt_s


def _offset_m(origin, fix):
    """(east, north) metres of `fix` from `origin` (flat earth: fine within tens of km)."""
    lat0 = math.radians(origin.lat_e7 * 1e-7)
    north = math.radians((fix.lat_e7 - origin.lat_e7) * 1e-7) * EARTH_RADIUS_M
    east = math.radians((fix.lon_e7 - origin.lon_e7) * 1e-7) * EARTH_RADIUS_M * math.cos(lat0)
    return east, north


def closest_approach_m(victim, v_vel, offender, o_vel, now_ms, horizon_ms):
    """The smallest distance between the two straight-line tracks from now to now+horizon
    (each fix moved on from its own time at its own velocity)."""
    ox, oy = _offset_m(victim, offender)
    # positions at now: each extrapolated from its fix time
    dv = (now_ms - victim.time_ms) / 1000.0
    do = (now_ms - offender.time_ms) / 1000.0
    rx = ox + o_vel[0] * do - v_vel[0] * dv
    ry = oy + o_vel[1] * do - v_vel[1] * dv
    wx, wy = o_vel[0] - v_vel[0], o_vel[1] - v_vel[1]
    w2 = wx * wx + wy * wy
    horizon_s = horizon_ms / 1000.0
    t = 0.0 if w2 == 0 else min(max(-(rx * wx + ry * wy) / w2, 0.0), horizon_s)
    return math.hypot(rx + wx * t, ry + wy * t)


class ProximityTracker:
    """The proximity state of one victim/offender pair. Feed it fixes; each new fix (newer than
    the last from the same side) that has a counterpart yields a Decision."""

    def __init__(self, config=None):
        self.config = config or ProximityConfig()
        self.state = CLEAR
        self.victim = None
        self.offender = None
        self._victim_before = None  # the fix before self.victim (for its velocity)
        self._offender_before = None
        self._candidate = None
        self._streak = 0
        self.escalated = False  # an escalation is open until the level drops to CLEAR

    def victim_fix(self, fix, now_ms):
        if self.victim is not None and fix.time_ms <= self.victim.time_ms:
            return None  # nothing new: a duplicate or an older, out-of-order fix
        self._victim_before, self.victim = self.victim, fix
        return self._evaluate(now_ms)

    def offender_fix(self, fix, now_ms):
        if self.offender is not None and fix.time_ms <= self.offender.time_ms:
            return None
        self._offender_before, self.offender = self.offender, fix
        return self._evaluate(now_ms)

    def _velocity(self, before, fix):
        """Velocity from the last two fixes, scaled down to max_speed_mps (a jump between
        two noisy fixes is not a plausible speed)."""
        velocity = None if before is None else _velocity_mps(before, fix)
        if velocity is None:
            return None
        speed = math.hypot(*velocity)
        if speed > self.config.max_speed_mps:
            scale = self.config.max_speed_mps / speed
            velocity = (velocity[0] * scale, velocity[1] * scale)
        return velocity

    def _speed_mps(self, velocity, floor_mps):
        speed = floor_mps if velocity is None else max(floor_mps, math.hypot(*velocity))
        return min(speed, self.config.max_speed_mps)

    def victim_radius_m(self, now_ms, stationary_mps=None):
        """How far from her last fix the victim may be by now: its accuracy plus its age
        times a plausible speed (walking, or faster if her last two fixes showed it). With
        `stationary_mps`, a victim whose last two fixes moved slower than that is taken to
        be where she was (the pre-alert: widening it for a victim at home would keep her
        device tracking whenever the offender is near the edge of the radius)."""
        if self.victim is None:
            return None
        velocity = self._velocity(self._victim_before, self.victim)
        if stationary_mps is not None and (velocity is None or
                                           math.hypot(*velocity) < stationary_mps):
            return float(self.victim.accuracy_m)
        speed = self._speed_mps(velocity, self.config.walking_mps)
        return float(self.victim.accuracy_m) + max(0, now_ms - self.victim.time_ms) / 1000.0 \
            * speed

    def _evaluate(self, now_ms):
        victim, offender, config = self.victim, self.offender, self.config
        if victim is None or offender is None:
            return None
        victim_age_ms = now_ms - victim.time_ms
        offender_age_ms = now_ms - offender.time_ms
        distance_m = haversine_m(victim.lat_e7, victim.lon_e7, offender.lat_e7, offender.lon_e7)
        accuracy_m = float(victim.accuracy_m) + float(offender.accuracy_m)
        previous = self.state
        extra = {}
        v_vel = self._velocity(self._victim_before, victim)
        o_vel = self._velocity(self._offender_before, offender)
        offender_fresh = abs(offender_age_ms) <= config.max_fix_age_ms
        victim_fresh = abs(victim_age_ms) <= config.max_fix_age_ms
        if offender_fresh and victim_fresh:
            candidate = classify(distance_m, accuracy_m, previous, config)
            extra["basis"] = "fresh"
            if config.predict and o_vel is not None and candidate in (CLEAR, UNCERTAIN) \
                    and previous < WARNING:
                horizon_ms = int(1000 * config.predict_margin_s + min(
                    config.predict_max_s * 1000,
                    offender.time_ms - self._offender_before.time_ms))
                predicted = closest_approach_m(victim, v_vel or (0.0, 0.0), offender, o_vel,
                                               now_ms, horizon_ms)
                extra.update(predicted_min_m=predicted, horizon_ms=horizon_ms,
                             offender_speed_mps=math.hypot(*o_vel),
                             victim_speed_mps=None if v_vel is None else math.hypot(*v_vel))
                if predicted <= config.warning_m:
                    candidate, extra["basis"] = WARNING, "predicted"
        elif offender_fresh and victim_age_ms > 0:
            candidate = self._stale_victim(distance_m, victim_age_ms, offender_age_ms,
                                           v_vel, o_vel, extra)
        else:
            candidate = None
            extra["basis"] = "stale"
        if candidate is None:
            self._candidate, self._streak = None, 0
        else:
            if candidate == self._candidate:
                self._streak += 1
            else:
                self._candidate, self._streak = candidate, 1
            if candidate != previous and self._streak >= config.confirm_fixes:
                self.state = candidate
        escalate = bool(extra.pop("escalate_now", False))
        if escalate and self.escalated:
            escalate = False  # already told: once per episode
        if escalate:
            self.escalated = True
        if candidate == CLEAR:
            self.escalated = False  # he is away: a later approach is a new episode
        return Decision(now_ms, victim, offender, victim_age_ms, offender_age_ms, distance_m,
                        accuracy_m, candidate, self._streak, previous, self.state,
                        escalate=escalate, **extra)

    def _stale_victim(self, distance_m, victim_age_ms, offender_age_ms, v_vel, o_vel, extra):
        """The level when only the victim's fix is stale (see the module docstring)."""
        config = self.config
        victim_speed = self._speed_mps(v_vel, config.walking_mps)
        offender_speed = self._speed_mps(o_vel, 0.0)
        victim_radius = float(self.victim.accuracy_m) + victim_age_ms / 1000.0 * victim_speed
        offender_radius = float(self.offender.accuracy_m) + \
            max(0, offender_age_ms) / 1000.0 * offender_speed
        nearest = distance_m - victim_radius - offender_radius
        farthest = distance_m + victim_radius + offender_radius
        extra.update(basis="stale_victim", victim_radius_m=victim_radius,
                     offender_radius_m=offender_radius, victim_speed_mps=victim_speed,
                     offender_speed_mps=offender_speed,
                     escalate_now=distance_m <= config.alarm_m)
        if farthest <= config.alarm_m:
            return ALARM
        if farthest <= config.warning_m:
            return WARNING
        if nearest <= config.warning_m:
            return UNCERTAIN
        return CLEAR
