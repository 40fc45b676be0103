"""The run.* records a scenario's trace carries for the session report (`vigil report`).

The raw trace says what the hardware and the centre did; a reader of the trace alone cannot
know the scenario, the true routes, the fixes inside encrypted frames, the energy per
component or the latency samples behind the --json figures. These records add them, once per
run, as ordinary trace lines (`{"t_ms", "device", "kind", "detail"}`) so trace_sha256 covers
them too:

    run.start    t 0, device null: scenario, seed, duration_s, start_utc_ms, centre radii,
                 devices [{id, offender, battery_mah, battery_pct}], offenders [{id, report_s,
                 accuracy_m}], outages [[start_ms, end_ms]]
    run.route    t 0, one per device and offender: role ("victim"/"offender"), points
                 [[t_ms, lat, lon]] where the true route turns (straight lines between)
    run.fixes    t end, one per device: fixes [[received t_ms, age_ms, lat, lon,
                 accuracy_m, historic]] as the centre received them (decoded uplinks)
    run.tag      t end, one per offender: reports [[t_ms, lat, lon]] as the tag sent them
    run.power    t end, one per device: t_ms, battery_pct, mah {component: [...]} and cpu_s
                 {state: [...]}, sampled every minute, cumulative since the start
    run.latency  t end: {metric: [[device, start t_ms, ms]]} for each --json latency, and
                 proximity_warnings_missed
    run.summary  t end, last line: the --json figures except wall_s and trace_sha256
"""
from protocol import codec


def _r(value, digits):
    return round(float(value), digits)


def _fixes(run):
    """(device -> [[t_ms, age_ms, lat, lon, accuracy_m, historic]]) from the uplinks that
    reached the centre, each authentic frame once (duplicates and corrupt copies skipped)."""
    keyring = codec.Keyring()
    for device_id in run.devices:
        keyring.add(device_id, 0, run.key_for(device_id))
    receiver = codec.Receiver(keyring, check_replay=False)
    seen = set()
    out = {device_id: [] for device_id in run.devices}
    for t_ms, _device, kind, detail in run.world.trace:
        if kind != "uplink":
            continue
        for frame in receiver.feed(bytes.fromhex(detail)):
            if not isinstance(frame, codec.Frame) or (frame.device_id, frame.counter) in seen:
                continue
            seen.add((frame.device_id, frame.counter))
            f = frame.fields
            fixes = (f["fixes"] if frame.name == "POSITION" else
                     [f["last_fix"]] if frame.name == "NO_FIX" else
                     [f["fix"]] if frame.name == "ALARM" else [])
            utc_ms = run.utc0_ms + t_ms
            for fix in fixes:
                if fix is None or frame.device_id not in out:
                    continue
                out[frame.device_id].append([
                    _r(t_ms, 3), int(utc_ms - fix["fix_time_ms"]), fix["lat_e7"] / 1e7,
                    fix["lon_e7"] / 1e7, fix["accuracy_m"], int(frame.historic)])
    return out


def _power(device):
    samples = device.battery.samples
    components = sorted({name for _t, _soc, mah, _cpu in samples for name in mah})
    states = sorted({name for _t, _soc, _mah, cpu in samples for name in cpu})
    return {
        "t_ms": [_r(t, 3) for t, _soc, _mah, _cpu in samples],
        "battery_pct": [_r(soc, 3) for _t, soc, _mah, _cpu in samples],
        "mah": {name: [_r(mah.get(name, 0.0), 7) for _t, _soc, mah, _cpu in samples]
                for name in components},
        "cpu_s": {name: [_r(cpu.get(name, 0.0), 3) for _t, _soc, _mah, cpu in samples]
                  for name in states},
    }


def records(run, figures, samples):
    """(head, tail): the run.* records before and after the raw trace lines."""
    sc = run.sc
    end_ms = run.duration_ms
    start = {
        "scenario": sc["scenario"]["name"],
        "description": sc["scenario"].get("description", ""),
        "seed": run.seed,
        "duration_s": sc["scenario"]["duration_s"],
        "start_utc_ms": run.utc0_ms,
        "warning_m": sc["centre"]["warning_m"],
        "alarm_m": sc["centre"]["alarm_m"],
        "devices": [{"id": d["id"], "offender": d["offender"], "battery_mah": d["battery_mah"],
                     "battery_pct": d["battery_pct"]} for d in sc["device"]],
        "offenders": [{"id": o["id"], "report_s": o["report_s"], "accuracy_m": o["accuracy_m"]}
                      for o in sc["offender"]],
        "outages": [[o["start_s"] * 1000, (o["start_s"] + o["duration_s"]) * 1000]
                    for o in sc["link"]["outages"]],
    }
    head = [{"t_ms": 0, "device": None, "kind": "run.start", "detail": start}]
    for device_id, route in run.routes.items():
        head.append({"t_ms": 0, "device": device_id, "kind": "run.route", "detail": {
            "role": "victim", "points": [[_r(t, 3), lat, lon] for t, lat, lon in route.vertices()]}})
    for offender_id, (route, _spec) in run.offenders.items():
        head.append({"t_ms": 0, "device": offender_id, "kind": "run.route", "detail": {
            "role": "offender",
            "points": [[_r(t, 3), lat, lon] for t, lat, lon in route.vertices()]}})
    tail = []
    for device_id, fixes in _fixes(run).items():
        tail.append({"t_ms": end_ms, "device": device_id, "kind": "run.fixes",
                     "detail": {"fixes": fixes}})
    for offender_id in run.offenders:
        tail.append({"t_ms": end_ms, "device": offender_id, "kind": "run.tag", "detail": {
            "reports": [[_r(t, 3), _r(lat, 7), _r(lon, 7)]
                        for t, lat, lon in run.offender_reports.get(offender_id, [])]}})
    for device_id, device in run.devices.items():
        tail.append({"t_ms": end_ms, "device": device_id, "kind": "run.power",
                     "detail": _power(device)})
    # Latencies stay unrounded: the report's p50/p95/max must equal --json's exactly.
    latency = {name: [[d, t, ms] for d, t, ms in values]
               for name, values in samples.items() if name != "proximity_warnings_missed"}
    latency["proximity_warnings_missed"] = figures["proximity_warnings_missed"]
    tail.append({"t_ms": end_ms, "device": None, "kind": "run.latency", "detail": latency})
    tail.append({"t_ms": end_ms, "device": None, "kind": "run.summary", "detail": figures})
    return head, tail
