"""Recording an emulated scenario, and replaying one into the emulated firmware (golden
sessions).

The tap sits at the centre's end of each device's link: "up" packets are what the centre
received (after the link's seeded faults), "down" packets what the centre sent (before them).
Replaying the downlinks through the same seeded link into the same firmware therefore
reproduces the run exactly; a firmware change shows as different uplinks.

    record(sc, seed, "run.pcapng")                 # runs the scenario with the centre
    result = check("run.pcapng")                   # replays it without the centre
    result.differences                             # [] when the firmware behaves the same
"""
import copy
import hashlib
import json

from host import emulate
from host.recording import LINKTYPE_USER1, RecordingError, Writer, read_all
from protocol import messages

CLOCK_VIRTUAL = "virtual"


def scenario_sha256(sc):
    """A hash of a loaded scenario (every field, defaults filled in)."""
    text = json.dumps(sc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def firmware_version():
    try:
        from firmware.app import FW_VERSION
    except Exception:  # the firmware cannot be imported on the host: say so, do not guess
        return "unknown"
    return "%d.%d.%d" % tuple(FW_VERSION)


def stimuli(sc):
    """[(t_ms, record)] of everything done to the devices from outside, in time order.
    Routes are named by reference (scenario and hash), never by coordinate."""
    digest = scenario_sha256(sc)
    out = []
    for spec in sc["device"]:
        device_id = spec["id"]
        out.append((0, {"device": device_id, "kind": "battery",
                        "soc_pct": spec["battery_pct"], "capacity_mah": spec["battery_mah"]}))
        out.append((0, {"device": device_id, "kind": "gnss_route",
                        "scenario": sc["scenario"]["name"], "scenario_sha256": digest}))
        for span in spec["indoor"]:
            out.append((span["start_s"] * 1000, {"device": device_id, "kind": "indoor",
                                                 "duration_s": span["duration_s"]}))
        for press in spec["button"]:
            out.append((press["at_s"] * 1000, {"device": device_id, "kind": "button",
                                               "hold_ms": press["hold_ms"]}))
        for step in spec["charger"]:
            out.append((step["at_s"] * 1000, {"device": device_id, "kind": "charger",
                                              "plugged": step["plugged"]}))
    out.sort(key=lambda item: item[0])
    return out


def session_meta(sc, seed, source):
    return {"clock": CLOCK_VIRTUAL, "epoch_utc_ms": sc["scenario"]["start_utc_ms"],
            "firmware": firmware_version(), "schema_hash": messages.SCHEMA_HASH,
            "devices": [d["id"] for d in sc["device"]], "scenario": sc["scenario"]["name"],
            "scenario_source": source, "scenario_sha256": scenario_sha256(sc), "seed": seed,
            "transport": "emu://"}


class _Tap:
    """Collects (t_ns, order, kind, device, payload) during a run; written sorted at the end."""

    def __init__(self, utc0_ms):
        self.utc0_ns = utc0_ms * 1_000_000
        self.items = []

    def add(self, now_us, kind, device_id, payload):
        self.items.append((self.utc0_ns + int(now_us) * 1000, len(self.items), kind,
                           device_id, payload))


class RecordingRun(emulate.ScenarioRun):
    """A ScenarioRun whose centre-side traffic is tapped."""

    def __init__(self, sc, seed=None, **options):
        self.tap = _Tap(sc["scenario"]["start_utc_ms"])
        super().__init__(sc, seed, **options)  # options: whatever ScenarioRun takes

    def _uplink_handler(self, device_id):
        inner = super()._uplink_handler(device_id)

        def on_uplink(data, t_ms):
            self.tap.add(self.world.now_us, "up", device_id, bytes(data))
            inner(data, t_ms)
        return on_uplink

    def _send(self, pairs):
        pairs = list(pairs)
        for link_id, wire in pairs:
            self.tap.add(self.world.now_us, "down", link_id, bytes(wire))
        super()._send(pairs)

    def write(self, path, source):
        write_session(path, self.sc, self.seed, source, self.tap.items)


def write_session(path, sc, seed, source, items):
    utc0_ns = sc["scenario"]["start_utc_ms"] * 1_000_000
    with Writer(path, meta=session_meta(sc, seed, source)) as writer:
        links = {}
        for spec in sc["device"]:
            links[spec["id"]] = writer.interface(
                "dev%d" % spec["id"], description="vigil link of device %d (emu://)" % spec["id"],
                meta={"device_id": spec["id"], "transport": "emu://"})
        stim = writer.interface("stimuli", linktype=LINKTYPE_USER1,
                                description="what was done to the devices")
        packets = [(utc0_ns + int(t_ms * 1_000_000), -1, "stimulus", None, record)
                   for t_ms, record in stimuli(sc)]
        packets.sort(key=lambda p: p[0])
        for t_ns, _order, kind, device_id, payload in sorted(
                packets + list(items), key=lambda p: (p[0], p[1])):
            if kind == "stimulus":
                writer.stimulus(stim, t_ns, payload)
            else:
                # A chunk can hold log text before its frame: one packet per 0x00 block.
                for block in _blocks(payload):
                    writer.frame(links[device_id], t_ns, block, kind)


def _blocks(data):
    parts = data.split(b"\x00")
    out = [part + b"\x00" for part in parts[:-1] if part]
    if parts[-1]:
        out.append(parts[-1])  # no delimiter: kept as it came
    return out


def record(sc, seed, path, source=None, **options):
    """Run a scenario with the centre and write its recording; returns the summary."""
    import time

    started = time.perf_counter()
    with emulate.one_core():
        sim = RecordingRun(sc, seed, **options)
        try:
            sim.run()
            summary = sim.summary(time.perf_counter() - started)
            sim.write(path, source or sc["scenario"]["name"])
            return summary
        finally:
            sim.close()


# --- replay into the emulated firmware -------------------------------------------------
class ReplayRun(emulate.ScenarioRun):
    """The scenario's devices without the centre: recorded downlinks and stimuli go in at
    their recorded times, and the uplinks the firmware produces are collected."""

    def __init__(self, sc, seed, downlinks, stimuli_records, **options):
        self.tap = _Tap(sc["scenario"]["start_utc_ms"])
        bare = copy.deepcopy(sc)
        for spec in bare["device"]:
            spec["button"] = []  # from the recording instead
            spec["charger"] = []
        super().__init__(bare, seed, **options)
        self.sc = sc
        utc0_ns = sc["scenario"]["start_utc_ms"] * 1_000_000
        for t_ns, device_id, wire in downlinks:
            dev = self.devices.get(device_id)
            if dev is not None:
                self.world.at_us((t_ns - utc0_ns) // 1000, dev.link.send_downlink, wire)
        for t_ns, record in stimuli_records:
            dev = self.devices.get(record.get("device"))
            at_ms = (t_ns - utc0_ns) / 1_000_000
            if dev is None:
                continue
            if record.get("kind") == "button":
                dev.button.hold(record["hold_ms"], at_ms=at_ms)
            elif record.get("kind") == "charger":
                (dev.battery.plug if record["plugged"] else dev.battery.unplug)(at_ms=at_ms)

    def _uplink_handler(self, device_id):
        def on_uplink(data, _t_ms):
            self.tap.add(self.world.now_us, "up", device_id, bytes(data))
        return on_uplink

    def _offender_fix(self, offender_id, rng):
        pass  # the centre's reaction to the tag is in the recorded downlinks

    def _schedule_centre(self):
        pass


class CheckResult:
    def __init__(self, recorded, produced, differences, wall_s):
        self.recorded = recorded  # [(t_ns, device_id, block)] uplinks in the recording
        self.produced = produced  # the same, from this run
        self.differences = differences
        self.wall_s = wall_s


class SessionError(RecordingError):
    """A recording that cannot be replayed into the emulator; one line."""


def load_session(path):
    """(meta, scenario, uplinks, downlinks, stimuli) of an emulator recording."""
    from host import scenario as scenarios

    reader, packets = read_all(path)
    if reader.error:
        raise SessionError("%s: %s" % (path, reader.error))
    meta = reader.meta
    if meta.get("clock") != CLOCK_VIRTUAL or "scenario_source" not in meta:
        raise SessionError("%s: not a recording of an emulated scenario (no scenario in its "
                           "section header)" % path)
    try:
        sc = scenarios.load(meta["scenario_source"])
    except scenarios.ScenarioError as e:
        raise SessionError("%s: its scenario cannot be loaded: %s" % (path, e)) from None
    if scenario_sha256(sc) != meta.get("scenario_sha256"):
        raise SessionError("%s: scenario %s has changed since it was recorded; re-record it "
                           "with `vigil replay %s --to emu:// --update`"
                           % (path, meta["scenario_source"], path))
    uplinks, downlinks, stimuli_records = [], [], []
    for packet in packets:
        if packet.interface.is_stimuli:
            record_ = packet.stimulus()
            if record_ is not None:
                stimuli_records.append((packet.time_ns, record_))
        elif packet.direction == "up":
            uplinks.append((packet.time_ns, packet.interface.device_id, packet.data))
        elif packet.direction == "down":
            downlinks.append((packet.time_ns, packet.interface.device_id, packet.data))
    return meta, sc, uplinks, downlinks, stimuli_records


def check(path, **options):
    """Replay a recorded emulator session into the current firmware; diff the uplinks.
    `options` go to ScenarioRun (e.g. another firmware tree's files)."""
    import time

    from host.recording import diff

    meta, sc, uplinks, downlinks, stimuli_records = load_session(path)
    started = time.perf_counter()
    with emulate.one_core():
        sim = ReplayRun(sc, meta["seed"], downlinks, stimuli_records, **options)
        try:
            sim.run()
        finally:
            sim.close()
    produced = [(t_ns, device_id, block) for t_ns, _o, _k, device_id, data in sim.tap.items
                for block in _blocks(data)]
    keys = session_keys(sc, meta["seed"])
    differences = diff.compare(
        [(t, "up", d, b) for t, d, b in uplinks], [(t, "up", d, b) for t, d, b in produced],
        keys)
    return CheckResult(uplinks, produced, differences, time.perf_counter() - started)


def session_keys(sc, seed):
    """The device keys of an emulated run (derived from its seed)."""
    from host.keys import KeyStore

    store = KeyStore()
    for spec in sc["device"]:
        store.add(spec["id"], emulate.KEY_ID, emulate.device_key(seed, spec["id"]))
    return store


def update(path):
    """Re-record a session from the scenario and seed in its header."""
    from host import scenario as scenarios

    reader, _packets = read_all(path)
    meta = reader.meta
    if "scenario_source" not in meta:
        raise SessionError("%s: not a recording of an emulated scenario" % path)
    try:
        sc = scenarios.load(meta["scenario_source"])
    except scenarios.ScenarioError as e:
        raise SessionError("%s: its scenario cannot be loaded: %s" % (path, e)) from None
    return record(sc, meta["seed"], path, meta["scenario_source"])
