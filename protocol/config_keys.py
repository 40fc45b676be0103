"""The CONFIG keys of protocol v2 (SPEC 6.9): id -> (name, min, max, default), units in the
names. Part of the schema hash (messages.SCHEMA_HASH).

A module of its own so that the device holds it only while it needs it: at boot (config.py
builds the configuration from it, then the app drops both) and from its first CONFIG frame;
17 names of over 10 characters are heap strings, not shared qstrs (~2.7 KB on the 64-bit VM).
"""
CONFIG_KEYS = {
    1: ("heartbeat_s", 60, 86400, 900),
    2: ("low_battery_heartbeat_s", 300, 86400, 3600),
    3: ("moving_fix_s", 10, 3600, 60),
    4: ("moving_upload_s", 30, 3600, 300),
    5: ("panic_fix_s", 1, 60, 5),
    6: ("panic_upload_s", 1, 300, 10),
    7: ("panic_track_s", 60, 86400, 1800),
    8: ("proximity_fix_s", 5, 300, 15),
    9: ("long_press_ms", 500, 10000, 1500),
    10: ("reachability_s", 5, 3600, 30),
    11: ("no_contact_s", 60, 86400, 1200),
    12: ("gnss_timeout_s", 10, 600, 90),
    13: ("gnss_lost_s", 60, 7200, 600),
    14: ("self_test_s", 3600, 604800, 86400),
    15: ("moving_speed_cmps", 10, 1000, 50),
    16: ("moving_displacement_m", 10, 1000, 50),
    17: ("operator_ack_timeout_s", 10, 3600, 120),
}
