"""Device configuration: the wire table `protocol.messages.CONFIG_KEYS` plus a few local
settings that the centre cannot change (they shape power, not behaviour it asks for).

A config is a plain dict name -> int. `defaults()` builds one; `apply()` applies CONFIG
items with range checks and reports what it refused, so a bad downlink never half-applies a
value out of range.
"""
from protocol.messages import CONFIG_KEYS  # id -> (name, min, max, default), units in names

# Local settings: name -> (min, max, default). Not settable over the air.
LOCAL_KEYS = {
    # 1: the board has the link's wake line (docs/LINK.md): the peer wakes the device when it
    # has a downlink, so there are no listen windows. 0: listen before each reachability
    # bound runs out (a board whose peer cannot wake it).
    "wake_line": (0, 1, 1),
    # Wake this long before the reachability bound runs out, so a held downlink is drained
    # within the bound even with boot/wake jitter: 30 s bound -> a listen window every 25 s.
    "listen_margin_ms": (0, 60000, 5000),
    # Deep sleep only when the next wake is at least this far away. Waking from deep sleep
    # is a full boot (~0.6-1 s at 25-40 mA, i.e. 15-40 mAs) while light sleep costs ~0.8 mA:
    # deep sleep pays for gaps above about a minute. The wake line keeps the device
    # reachable in deep sleep too (a boot, ~1 s).
    "deep_sleep_min_s": (0, 86400, 120),
    # Button contacts bounce for a few ms; a release shorter than this is not a release.
    "debounce_ms": (0, 500, 30),
    # How often the battery and charger are sampled.
    "battery_sample_s": (10, 3600, 60),
    # Low-power mode below this charge: routine positions stop, slow heartbeat.
    "low_power_pct": (1, 50, 10),
    # A sent record not acked within this is treated as backlog (resent from the queue).
    "ack_wait_ms": (500, 600000, 10000),
    # Backlog flush: at most this many records per flush, flushes at least this far apart.
    "flush_max": (1, 64, 16),
    "flush_interval_ms": (0, 600000, 5000),
    # Keep the GNSS powered between fixes when the next fix is this close (re-acquisition
    # would cost more than tracking). With ephemeris fresh a restart is a hot start: ~1 s
    # (NEO-M8 datasheet) at 25 mA plus up to poll_ms until it is read, ~50-125 mAs even
    # if it takes 3-5 s, against 23 mA tracking: cycling pays from a ~5 s gap. So the 5 s
    # panic cadence keeps it on and the 15 s proximity/locate cadence cycles it (an offender
    # pre-alert costs ~2.6 mA on average instead of ~12 mA).
    "gnss_keep_on_s": (0, 600, 10),
    # While the GNSS is on or the centre tracks the device (panic, proximity, locate), wake
    # at least this often: NMEA arrives at 1 Hz, and a PROXIMITY downlink held by the
    # gateway reaches the wearer at the next wake.
    "poll_ms": (200, 30000, 2000),
    # PROXIMITY cadence lapses if the centre stops refreshing it (lost "clear" downlink).
    "proximity_hold_s": (60, 86400, 1800),
}


def ranges():
    """name -> (key id (0 = local), min, max, default) for every setting."""
    table = {}
    for key_id in CONFIG_KEYS:
        entry = CONFIG_KEYS[key_id]
        table[entry[0]] = (key_id, entry[1], entry[2], entry[3])
    for name in LOCAL_KEYS:
        entry = LOCAL_KEYS[name]
        table[name] = (0, entry[0], entry[1], entry[2])
    return table


def defaults():
    cfg = {}
    for entry in CONFIG_KEYS.values():
        cfg[entry[0]] = entry[3]
    for name in LOCAL_KEYS:
        cfg[name] = LOCAL_KEYS[name][2]
    return cfg


def load(saved):
    """Defaults overlaid with a saved dict, ignoring unknown names and out-of-range values
    (a config written by an older or newer build never stops the device)."""
    cfg = defaults()
    if saved:
        table = ranges()
        for name in saved:
            entry = table.get(name)
            value = saved[name]
            if entry is not None and isinstance(value, int) and entry[1] <= value <= entry[2]:
                cfg[name] = value
    return cfg


def apply(cfg, items):
    """Apply CONFIG (key_id, value) items in place. Returns a list of refusals, each a
    one-line reason naming the key and the problem; refused items change nothing."""
    refused = []
    for item in items:
        key_id, value = item[0], item[1]
        entry = CONFIG_KEYS.get(key_id)
        if entry is None:
            refused.append("config key %d: unknown" % key_id)
            continue
        name, low, high = entry[0], entry[1], entry[2]
        if not low <= value <= high:
            refused.append("config key %d (%s): %d outside %d..%d" % (key_id, name, value,
                                                                       low, high))
            continue
        cfg[name] = value
    return refused
