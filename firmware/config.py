"""Device configuration: the wire table `protocol.config_keys.CONFIG_KEYS` plus a few local
settings that the centre cannot change (they shape power, not behaviour it asks for).

A config is a plain dict name -> int. `defaults()` builds one; `apply()` applies CONFIG
items with range checks and reports what it refused, so a bad downlink never half-applies a
value out of range.
"""
from protocol.config_keys import CONFIG_KEYS  # id -> (name, min, max, default), units in names


def defaults():
    cfg = {}
    for entry in CONFIG_KEYS.values():
        cfg[entry[0]] = entry[3]
    # Local settings: not settable over the air; the comment after each gives its sensible
    # range. Keyword arguments, not a table: no RAM between boots, names interned once.
    cfg.update(
        # 1: the board has the link's wake line (docs/LINK.md): the peer wakes the device
        # when it has a downlink, so there are no listen windows. 0: listen before each
        # reachability bound runs out (a board whose peer cannot wake it).
        wake_line=1,  # 0..1
        # Wake this long before the reachability bound runs out, so a held downlink is
        # drained within the bound even with boot/wake jitter: 30 s bound -> a listen window
        # every 25 s.
        listen_margin_ms=5000,  # 0..60000
        # Deep sleep only when the next wake is at least this far away. Waking from deep
        # sleep is a full boot (~0.6-1 s at 25-40 mA, i.e. 15-40 mAs) while light sleep costs
        # ~0.8 mA: deep sleep pays for gaps above about a minute. The wake line keeps the
        # device reachable in deep sleep too (a boot, ~1 s).
        deep_sleep_min_s=120,  # 0..86400
        # Button contacts bounce for a few ms; a release shorter than this is not a release.
        debounce_ms=30,  # 0..500
        # How often the battery and charger are sampled.
        battery_sample_s=60,  # 10..3600
        # Low-power mode below this charge: routine positions stop, slow heartbeat.
        low_power_pct=10,  # 1..50
        # A sent record not acked within this is treated as backlog (resent from the queue).
        ack_wait_ms=10000,  # 500..600000
        # Backlog flush: at most this many records per flush, flushes at least this far apart.
        flush_max=16,  # 1..64
        flush_interval_ms=5000,  # 0..600000
        # Keep the GNSS powered between fixes when the next fix is this close (re-acquisition
        # would cost more than tracking). With ephemeris fresh a restart is a hot start: ~1 s
        # (NEO-M8 datasheet) at 25 mA plus up to poll_ms until it is read, ~50-125 mAs even
        # if it takes 3-5 s, against 23 mA tracking: cycling pays from a ~5 s gap. So the 5 s
        # panic cadence keeps it on and the 15 s proximity/locate cadence cycles it (an
        # offender pre-alert costs ~2.6 mA on average instead of ~12 mA).
        gnss_keep_on_s=10,  # 0..600
        # While the GNSS is on or the centre tracks the device (panic, proximity, locate),
        # wake at least this often: NMEA arrives at 1 Hz, and a PROXIMITY downlink held by
        # the gateway reaches the wearer at the next wake.
        poll_ms=2000,  # 200..30000
        # PROXIMITY cadence lapses if the centre stops refreshing it (lost "clear" downlink).
        proximity_hold_s=1800,  # 60..86400
    )
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
        elif not entry[1] <= value <= entry[2]:
            refused.append("config key %d (%s): %d outside %d..%d" % (
                key_id, entry[0], value, entry[1], entry[2]))
        else:
            cfg[entry[0]] = value
    return refused
