"""Names of the protocol's constant codes (SPEC 6), for host tools and logs.

Host only (never deployed): the device needs the codes, not their names, and on a 48 KiB
heap these tables cost about 1 KB (`messages` keeps the codes as constants).
"""

ALARM_KINDS = {1: "panic", 2: "battery_20", 3: "battery_10", 4: "battery_5", 5: "gnss_lost",
               6: "tamper", 7: "power_off_attempt"}
ALARM_STATES = {1: "raised", 2: "cancelled", 3: "cleared", 4: "repeat"}
EVENT_KINDS = {1: "charger_on", 2: "charger_off", 3: "self_test", 4: "comms_restored",
               5: "queue_evicted", 6: "mode_changed"}
COMMANDS = {1: "locate_now", 2: "vibrate", 3: "self_test", 4: "reboot", 5: "clear_alarm"}
PROXIMITY_LEVELS = {0: "clear", 1: "uncertain", 2: "warning", 3: "alarm"}
MODES = {1: "aware", 2: "paired"}
