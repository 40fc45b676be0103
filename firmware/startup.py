"""What the app does once per boot, before its first pass: the reset cause and boot count,
the state to resume (RTC memory after a deep sleep, else flash), the message counter, the
config, the keys and codecs, the downlink window, and a panic alarm taken back from the
flash queue. `App.start` imports this module, runs `resume`, then drops it: none of its
code is needed again, and its heap goes back to the superloop (docs/HARDWARE.md, "RAM").
"""
try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731  (a def would clash with the stub's signature)

from firmware import config as config_mod
from firmware import persist
from protocol import codec

# SPEC 6 values (protocol/host_constants.py; tests/test_core.py checks them)
_RESET_DEEPSLEEP = const(4)
_ALARM_KIND_PANIC = const(1)
_ALARM_STATE_RAISED = const(1)
_DEV_KEY = bytes(16)


def resume(app, log, max_alarm_frames):
    """This boot's (cause, boots, cfg, state, device_id, ring, downlinks, sender, down_floor)
    for `app`."""
    hw = app.hw
    root = app.root
    cause = hw.reset_cause
    boots = persist.bump_boot_count(root + "/state")
    rtc = persist.rtc_take(hw.rtc) if cause == _RESET_DEEPSLEEP else None
    state = rtc if isinstance(rtc, dict) else persist.read_file(root + "/state/core.bin")
    if not isinstance(state, dict):
        state = {}
    exact = state.get("counter") if rtc else None
    state["counter"] = app.counter.resume(exact)
    version, items = persist.load_config(root + "/state")
    cfg = config_mod.defaults()
    for reason in config_mod.apply(cfg, list(items.items())):
        log(reason)
    state["config_version"] = version
    keys = persist.load_keys(root + "/keys")
    if keys is None:
        log("no key in /keys: unprovisioned, frames use a development key")
        device_id, key_id, key = hw.device_id, 0, _DEV_KEY
    else:
        device_id, table = keys
        key_id = max(table)
        key = table[key_id]
    ring = codec.Keyring()
    ring.add(device_id, key_id, key)
    # one derivation of the key for sealing and opening
    sender = codec.Sender(device_id, key_id, ring[(device_id, key_id)],
                          counter=state["counter"])
    downlinks = codec.Receiver(ring, downlink=True)
    # The downlink window survives resets (a floor in flash) and deep sleep (exact, RTC).
    down_floor = persist.DownlinkFloor(root + "/state/downlink.bin")
    down_floor.attach(downlinks, device_id, key_id,
                      rtc.get("down") if isinstance(rtc, dict) else None)
    if not state.get("panic_id"):
        _restore_panic(app, state, ring, log, max_alarm_frames)
    deep = state.get("deep") if rtc else None
    if isinstance(deep, dict):
        # A deep-sleep wake: the RTC counted through the sleep and the boot, ticks did not.
        # The core resumes its timers less this (docs in core.py).
        slept_at = deep.get("rtc_ms")
        slept_at = slept_at if isinstance(slept_at, int) else app.rtc_ms()
        deep["slept_ms"] = max(0, app.rtc_ms() - slept_at)
    return cause, boots, cfg, state, device_id, ring, downlinks, sender, down_floor


def _restore_panic(app, state, ring, log, max_alarm_frames):
    """A power cut after a panic ALARM reached the flash queue but before the core's
    snapshot was saved leaves the alarm queued yet unknown to the core. Take it back from
    the queue, so the device resumes the panic (cadence, resends, clear_alarm) instead of
    forgetting it. A panic cleared since (its "cleared" record also queued) stays over."""
    raised_counter = raised_id = raised_utc = 0
    cleared = []
    reader = codec.Receiver(ring, downlink=False, check_replay=False)   # our own uplinks
    for counter, is_alarm, frame in app.queue.pending(limit=max_alarm_frames,
                                                      alarms_first=True):
        if not is_alarm:
            break
        try:
            opened = reader.open(frame[:-1])
        except Exception:                          # a record this key cannot open
            continue
        f = opened.fields
        if opened.name != "ALARM" or f["kind"] != _ALARM_KIND_PANIC:
            continue
        if f["state"] == _ALARM_STATE_RAISED:
            raised_counter, raised_id = counter, f["alarm_id"] or 0
            raised_utc = f["raised_time_ms"] or 0
        else:
            cleared.append(f["alarm_id"])
    if not raised_id or raised_id in cleared:
        return
    state["panic_id"] = raised_id
    state["panic_utc"] = raised_utc
    state["panic_op_acked"] = 0
    state["alarm_tx"] = [(raised_counter, raised_id)]
    if (state.get("next_alarm_id") or 1) <= raised_id:
        state["next_alarm_id"] = raised_id % 0xFFFF + 1
    log("panic alarm %d restored from the flash queue" % raised_id)
