"""Device configuration: the wire table `protocol.messages.CONFIG_KEYS` plus a few local
settings that the centre cannot change (they shape power, not behaviour it asks for).

A config is a plain dict name -> int. `defaults()` builds one; `apply()` applies CONFIG
items with range checks and reports what it refused, so a bad downlink never half-applies a
value out of range.
"""
from protocol.messages import CONFIG_KEYS

# Local settings: name -> (min, max, default). Not settable over the air.
LOCAL_KEYS = {
    # Wake this long before the reachability bound runs out, so a held downlink is drained
    # within the bound even with boot/wake jitter: 30 s bound -> a listen window every 25 s.
    "listen_margin_ms": (0, 60000, 5000),
    # Deep sleep only when the next wake is at least this far away. Waking from deep sleep
    # is a full boot (~0.3-1 s at 40-60 mA, i.e. 12-60 mAs) while light sleep costs ~0.8 mA
    # (20 mAs per 25 s window): with the default 30 s reachability bound deep sleep never
    # pays, so the device light-sleeps. A bound of several minutes lets it deep-sleep.
    "deep_sleep_min_s": (0, 86400, 120),
    # Button contacts bounce for a few ms; a release shorter than this is not a release.
    "debounce_ms": (0, 500, 30),
    # How often the battery and charger are sampled.
    "battery_sample_s": (10, 3600, 60),
    # Low-power mode below this charge: routine positions stop, slow heartbeat.
    "low_power_pct": (1, 50, 10),
    # A sent record not acked within this is treated as backlog (resent with FLAG_HISTORIC).
    "ack_wait_ms": (500, 600000, 10000),
    # Backlog flush: at most this many records per flush, flushes at least this far apart.
    "flush_max": (1, 64, 16),
    "flush_interval_ms": (0, 600000, 5000),
    # Keep the GNSS powered between fixes when the next fix is this close (re-acquisition
    # would cost more than tracking).
    "gnss_keep_on_s": (0, 600, 30),
    # PROXIMITY cadence lapses if the centre stops refreshing it (lost "clear" downlink).
    "proximity_hold_s": (60, 86400, 1800),
}

BY_NAME = {}
for _key_id in CONFIG_KEYS:
    _entry = CONFIG_KEYS[_key_id]
    BY_NAME[_entry[0]] = (_key_id, _entry[1], _entry[2], _entry[3])
for _name in LOCAL_KEYS:
    _entry = LOCAL_KEYS[_name]
    BY_NAME[_name] = (0, _entry[0], _entry[1], _entry[2])


def defaults():
    cfg = {}
    for name in BY_NAME:
        cfg[name] = BY_NAME[name][3]
    return cfg


def load(saved):
    """Defaults overlaid with a saved dict, ignoring unknown names and out-of-range values
    (a config written by an older or newer build never stops the device)."""
    cfg = defaults()
    if saved:
        for name in saved:
            entry = BY_NAME.get(name)
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
