"""Ground-truth safety figures of a scenario run, for `vigil emulate --json` (issue 9).

Each figure is measured against what truly happened (the scenario's presses, the true routes,
the pins the firmware drove, the device's true death), never against what the firmware or
the centre believes happened:

    presses_long              presses held at least the device's long_press_ms (scenario)
    alarms_lost               long presses with no ALARM record (raised or repeat) from that
                              press delivered to the centre by the end of the run
    haptic                    {pattern name: count}: the haptic motor's pulse trains, matched
                              to firmware/outputs.HAPTIC by their on/off durations
    centre_events             {event kind: count} raised by the centre
    not_reporting_latency_ms  percentiles, from each true death (brown-out) or link outage
                              of a device to the centre's next NOT_REPORTING for it
    proximity_missed          true crossings into warning_m with no warning, uncertain or
                              alarm level delivered to the wearer within 60 s
    proximity_false           warnings (level warning or alarm rising at the wearer) with no
                              true approach within 1.1 x warning_m from 60 s before to 120 s
                              after
"""
import re

from firmware import outputs
from protocol import codec, config_keys
from protocol import host_constants as constants

LONG_PRESS_KEY = "long_press_ms"
ALARM_MATCH_MS = 15_000  # a press's ALARM record is logged within its hold plus a boot
# Pulses closer than this belong to one pattern: the longest gap inside one (600 ms, in
# proximity_uncertain; at 400 its slow pulses were read as three short buzzes) plus slack.
# firmware/outputs.py leaves _GAP_MS (more than this) between two queued patterns.
HAPTIC_GAP_MS = max(max(p[1::2], default=0) for p in outputs.HAPTIC.values()) + 150
DURATION_SLACK_MS = 60  # a pulse may be this much off the pattern (the superloop's timing)
CROSSING_GRACE_MS = 60_000
FALSE_FACTOR = 1.1
FALSE_BEFORE_MS = 60_000
FALSE_AFTER_MS = 120_000
_LEVEL_SEEN = (constants.PROXIMITY_UNCERTAIN, constants.PROXIMITY_WARNING,
               constants.PROXIMITY_ALARM)
_WARNED = (constants.PROXIMITY_WARNING, constants.PROXIMITY_ALARM)
ALARM_LOG = re.compile(r"alarm (\d+) kind (\d+) state (\d+) counter (\d+)")


def long_press_ms(device_spec):
    """The device's long-press threshold: its provisioned CONFIG, else the firmware default."""
    value = (device_spec.get("config") or {}).get(LONG_PRESS_KEY)
    if value is not None:
        return value
    for name, _low, _high, default in config_keys.CONFIG_KEYS.values():
        if name == LONG_PRESS_KEY:
            return default
    raise KeyError(LONG_PRESS_KEY)


def long_presses(device_spec):
    """[(at_ms, hold_ms)] of the presses that should raise (or repeat) a panic alarm."""
    threshold = long_press_ms(device_spec)
    return [(press["at_s"] * 1000, press["hold_ms"]) for press in device_spec["button"]
            if press["hold_ms"] >= threshold]


def alarm_logs(device_log):
    """[(t_ms, alarm_id, kind, state, counter)] from the firmware's "alarm N kind K state S
    counter C" log lines."""
    out = []
    for t_ms, line in device_log:
        m = ALARM_LOG.search(line)
        if m:
            out.append((t_ms, *(int(g) for g in m.groups())))
    return out


def lost_presses(presses, logs, delivered_counters):
    """The presses with no panic ALARM record that the centre received: each press is matched
    to the first unmatched panic record (kind 1, not a cancel or clear) logged from its press
    to ALARM_MATCH_MS after its release, and that record's counter must have been delivered."""
    used = set()
    lost = []
    closing = (constants.ALARM_STATE_CANCELLED, constants.ALARM_STATE_CLEARED)
    for at_ms, hold_ms in presses:
        match = None
        for i, (t_ms, _alarm_id, kind, state, _counter) in enumerate(logs):
            if i in used or kind != 1 or state in closing:
                continue
            if at_ms <= t_ms <= at_ms + hold_ms + ALARM_MATCH_MS:
                match = i
                break
        if match is None or logs[match][4] not in delivered_counters:
            lost.append((at_ms, hold_ms))
        if match is not None:
            used.add(match)
    return lost


def pulse_trains(pulses):
    """[(start_ms, [on, off, on, ...])]: pulses grouped where the motor rested less than
    HAPTIC_GAP_MS; an unfinished pulse (duration None) ends its train."""
    trains = []
    for start, duration in pulses:
        if trains and duration is not None and trains[-1][2] is not None and \
                start - trains[-1][2] < HAPTIC_GAP_MS:
            train = trains[-1]
            train[1].extend([start - train[2], duration])
            train[2] = start + duration
        else:
            end = None if duration is None else start + duration
            trains.append([start, [duration], end])
    return [(start, steps) for start, steps, _end in trains]


def pattern_name(steps, patterns=None):
    """The HAPTIC pattern whose durations these steps match (each step within
    DURATION_SLACK_MS of the pattern's; the last may be unfinished), or "unknown"."""
    patterns = outputs.HAPTIC if patterns is None else patterns
    for name, durations in sorted(patterns.items()):
        if len(durations) != len(steps):
            continue
        if all(step is None or abs(step - want) <= DURATION_SLACK_MS
               for step, want in zip(steps, durations, strict=True)):
            return name
    return "unknown"


def haptic_counts(pulses, patterns=None):
    """{pattern: count} from one motor's pulses."""
    counts: dict = {}
    for _start, steps in pulse_trains(pulses):
        name = pattern_name(steps, patterns)
        counts[name] = counts.get(name, 0) + 1
    return counts


def haptic_starts(pulses, names, patterns=None):
    """Start times of the pulse trains that are one of `names`."""
    return [start for start, steps in pulse_trains(pulses)
            if pattern_name(steps, patterns) in names]


PRE_WARN_MS = 120_000  # a proximity haptic this long before a crossing already warned of it


def proximity_patterns(patterns=None):
    """The haptic patterns that tell the wearer about the offender (warning, alarm, and the
    uncertain level's own pattern once the firmware has one)."""
    patterns = outputs.HAPTIC if patterns is None else patterns
    return tuple(name for name in patterns if name.startswith("proximity") or
                 "uncertain" in name)


def crossing_latencies(crossing_ms, haptic_ms):
    """([(crossing t_ms, ms to the wearer's proximity haptic)], crossings never followed by
    one). A haptic up to PRE_WARN_MS before the crossing (a predicted warning) counts as 0."""
    latencies, never = [], 0
    for t_ms in crossing_ms:
        later = [t for t in haptic_ms if t >= t_ms - PRE_WARN_MS]
        if later:
            latencies.append((t_ms, max(0.0, later[0] - t_ms)))
        else:
            never += 1
    return latencies, never


ENDPOINTS = {"aware": "police_dispatch", "paired": "probation"}


def mode_at(device_spec, t_ms):
    """The scheme the scenario puts the device in at run time t_ms: paired from the start
    when it names an offender, then each [[device.mode_change]], a pairing with valid_for_s
    ending by itself."""
    steps = [(0, "paired" if device_spec.get("offender") is not None else "aware")]
    for change in device_spec.get("mode_change") or ():
        steps.append((change["at_s"] * 1000, change["mode"]))
        if change["mode"] == "paired" and change["valid_for_s"] is not None:
            steps.append(((change["at_s"] + change["valid_for_s"]) * 1000, "aware", ))
    mode = "aware"
    for at_ms, step_mode in sorted(steps, key=lambda s: s[0]):
        if at_ms <= t_ms:
            mode = step_mode
    return mode


def misrouted(device_spec, alarms):
    """alarms: [(raised run-time ms, endpoint)]; those not at the endpoint of the scheme the
    scenario had the device in when it was raised."""
    return [(t_ms, endpoint) for t_ms, endpoint in alarms
            if endpoint != ENDPOINTS[mode_at(device_spec, t_ms)]]


def event_counts(events):
    counts: dict = {}
    for event in events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    return counts


def proximity_levels_delivered(trace, keyring, device_id):
    """[(t_ms, level)] of the PROXIMITY downlinks that reached the device, each counter once."""
    receiver = codec.Receiver(keyring, downlink=True, check_replay=False)
    seen = set()
    out = []
    for t_ms, dev, kind, detail in trace:
        if kind != "downlink" or dev != device_id:
            continue
        for item in receiver.feed(bytes.fromhex(detail.split(" ", 1)[0])):
            if isinstance(item, codec.Frame) and item.name == "PROXIMITY" and \
                    item.counter not in seen:
                seen.add(item.counter)
                out.append((t_ms, item.fields["level"]))
    return out


def crossings(distance_at, duration_ms, radius_m, step_ms):
    """Times (ms) the true distance goes from above radius_m to at or below it."""
    out = []
    inside = False
    for t_ms in range(0, int(duration_ms), step_ms):
        d = distance_at(t_ms)
        if d <= radius_m and not inside:
            out.append(t_ms)
        inside = d <= radius_m
    return out


def missed_crossings(crossing_ms, levels):
    """Crossings with no level of uncertain or above at the wearer within CROSSING_GRACE_MS:
    either one arrives in that time, or the last one before the crossing still stands."""
    missed = 0
    for t_ms in crossing_ms:
        before = [level for t, level in levels if t <= t_ms]
        standing = bool(before) and before[-1] in _LEVEL_SEEN
        arrived = any(t_ms < t <= t_ms + CROSSING_GRACE_MS and level in _LEVEL_SEEN
                      for t, level in levels)
        if not (standing or arrived):
            missed += 1
    return missed


def false_warnings(levels, distance_at, radius_m, duration_ms, step_ms):
    """Warnings that rose at the wearer with no true approach within FALSE_FACTOR x radius
    from FALSE_BEFORE_MS before to FALSE_AFTER_MS after."""
    limit_m = FALSE_FACTOR * radius_m
    false = 0
    previous = constants.PROXIMITY_CLEAR
    for t_ms, level in levels:
        if level in _WARNED and previous not in _WARNED:
            start = max(0, int(t_ms) - FALSE_BEFORE_MS)
            end = min(int(duration_ms), int(t_ms) + FALSE_AFTER_MS)
            if not any(distance_at(t) <= limit_m for t in range(start, end + 1, step_ms)):
                false += 1
        previous = level
    return false


def silence_latencies(starts_ms, not_reporting_ms):
    """For each true start of silence (death or outage), ms to the first NOT_REPORTING at or
    after it; starts never followed by one before the next start are left out."""
    out = []
    starts = sorted(starts_ms)
    for i, t0 in enumerate(starts):
        limit = starts[i + 1] if i + 1 < len(starts) else float("inf")
        later = [t for t in not_reporting_ms if t0 <= t < limit]
        if later:
            out.append(later[0] - t0)
    return out

