"""Figures the HIL suite holds every board to (from SPEC.md, CONTRACTS.md and the firmware's
config defaults), and small helpers the tests share. Only the Dut API is used, so the same
tests run on emulated, pty, serial and labgrid boards."""
from protocol import config_keys
from protocol import host_constants as constants

LONG_PRESS_MS = 2_000           # held longer than long_press_ms (1500 ms)
PRESS_TO_ALARM_MS = 3_000       # press start to the ALARM on the link
HEARTBEAT_S = 900               # heartbeat_s default
REACHABILITY_MS = 30_000        # a downlink reaches the wearer within 30 s (DESIGN.md)
OPERATOR_ACK_DELAY_MS = 5_000   # CentreConfig.operator_ack_delay_ms
PANIC = constants.ALARM_KIND_PANIC
RAISED = constants.ALARM_STATE_RAISED
KEY = {name: key_id for key_id, (name, *_rest) in config_keys.CONFIG_KEYS.items()}


def acked(dut, counter, since=0):
    """True once an ACK from the device covers downlink `counter`."""
    for _t, frame in dut.frames[since:]:
        if frame.name != "ACK":
            continue
        highest, bitmap = frame.fields["highest"], frame.fields["bitmap"]
        if counter == highest or (0 < highest - counter <= 32 and
                                  bitmap >> (highest - counter - 1) & 1):
            return True
    return False


def wait_acked(dut, counter, timeout_ms, since=0):
    """The clock time (ms) when the device acked downlink `counter`; fails after timeout_ms."""
    deadline = dut.clock.now_ms() + timeout_ms
    while not acked(dut, counter, since):
        if dut.clock.now_ms() >= deadline:
            raise AssertionError("downlink %d not acked within %d ms" % (counter, timeout_ms))
        try:
            dut.expect("ACK", timeout=deadline - dut.clock.now_ms(), since=since)
        except AssertionError:
            pass
    return dut.clock.now_ms()


def configure(dut, version, **settings):
    """Send CONFIG {name: value} as version `version` and wait for the device's ACK."""
    since = dut.mark()
    counter = dut.send("CONFIG", {"config_version": version,
                                  "items": [(KEY[k], v) for k, v in settings.items()]})
    wait_acked(dut, counter, REACHABILITY_MS, since)
