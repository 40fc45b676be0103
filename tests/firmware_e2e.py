"""Helpers for the end-to-end firmware tests (tests/test_firmware_e2e*.py): run a scenario
with a tap on every device's link UART, and read the run back as the firmware lived it."""
from host import emulate, scenario
from protocol import codec

ALARM_COUNTER = "alarm"


def start_toml(text, seed=None, runtime="cpython"):
    """A ScenarioRun of a TOML scenario, not yet run, with every byte each device writes to
    its link recorded in sim.tx[device_id] as (t_ms, bytes), before any link fault."""
    sim = emulate.ScenarioRun(scenario.parse(text, "<test>"), seed, runtime=runtime)
    sim.tx = {}
    for device_id, dev in sim.devices.items():
        sim.tx[device_id] = []
        dev.attach_uart(dev.link.uart_id, _tap(sim, device_id, dev.link.on_device_write))
    return sim


def _tap(sim, device_id, write):
    def on_device_write(data):
        sim.tx[device_id].append((sim.world.now_ms, bytes(data)))
        return write(data)
    return on_device_write


def run_toml(text, seed=None, until_ms=None):
    sim = start_toml(text, seed)
    try:
        if until_ms is None:
            sim.run()
        else:
            sim.world.run_until(until_ms)
    except BaseException:
        sim.close()
        raise
    return sim


def sent_frames(sim, device_id):
    """[(t_ms, Frame)]: every frame the device sent, retransmissions included, as sealed."""
    keyring = codec.Keyring()
    keyring.add(device_id, emulate.KEY_ID, emulate.device_key(sim.seed, device_id))
    receiver = codec.Receiver(keyring, check_replay=False)
    out = []
    for t_ms, data in sim.tx[device_id]:
        for item in receiver.feed(data):
            if isinstance(item, codec.Frame):
                out.append((t_ms, item))
    return out


def counter_reuse(frames):
    """Counters that sealed two different messages (a retransmission, historic or not, is the
    same message again and is no reuse)."""
    seen = {}
    reused = set()
    for _t, frame in frames:
        content = (frame.name, repr(sorted(frame.fields.items())))
        if seen.setdefault(frame.counter, content) != content:
            reused.add(frame.counter)
    return sorted(reused)


def trace(sim, device_id, kind):
    return [(t, detail) for t, dev, k, detail in sim.world.trace if dev == device_id and k == kind]


def resets(sim, device_id):
    return trace(sim, device_id, "reset")


def boots(sim, device_id):
    return trace(sim, device_id, "boot")


def log_lines(sim, device_id, text):
    return [(t, line) for t, line in sim.devices[device_id].log if text in line]


def centre_alarms(sim, device_id):
    return [a for a in sim.centre.alarm_history if a.device_id == device_id]


def centre_alarm_frames(sim, device_id):
    """Alarm uplinks the centre delivered (not duplicates), from its evidence log."""
    return [e for e in sim.centre.events if e.device_id == device_id and
            e.kind == "alarm_raised"]
