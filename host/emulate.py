"""The run behind `vigil emulate SCENARIO` (its command line: host/emulate_cli.py): the
unchanged firmware on emulated boards, end to end against the emulated monitoring centre,
in virtual time.

    summary = run(scenario.load("offender-approach"), seed=7)

The summary holds the figures of issue 4 (frames, alarms, latencies, energy) and
`trace_sha256`, a hash of every event of the run, so two runs can be compared.
"""
import binascii
import contextlib
import hashlib
import json
import math
import os
import re
import struct
import time
from pathlib import Path

from firmware import persist
from host import metrics, run_records
from host.centre import Centre, CentreConfig, ProximityConfig
from host.deploy import device_files
from host.emulator import Route, World
from host.keys import KeyStore, device_key_file_bytes
from protocol import codec, config_keys

REPO = Path(__file__).resolve().parent.parent
KEY_ID = 0
EARTH_RADIUS_M = 6371008.8
PROXIMITY_SAMPLE_MS = 1000
_ALARM_LOG = re.compile(r"alarm (\d+) kind (\d+) state (\d+) counter (\d+)")


def device_key(seed, device_id):
    """The scenario's key for a device: derived from the seed, so runs are reproducible."""
    return hashlib.sha256(b"vigil-scenario-key|%d|%d" % (seed, device_id)).digest()[:16]


CONFIG_PATH = "/state/config.bin"  # where firmware.persist.FlashState keeps the CONFIG
PROVISIONED_CONFIG_VERSION = 1
_CONFIG_IDS = {entry[0]: key_id for key_id, entry in config_keys.CONFIG_KEYS.items()}


def config_file_bytes(version, items):
    """The content persist.FlashState.save_config(version, items) writes (persist's file
    format: b"VS" <H len <I crc32, then persist.encode), built without a filesystem."""
    body = persist.encode([version, dict(items)])
    return struct.pack("<2sHI", b"VS", len(body), binascii.crc32(body)) + body


def provisioned_config(config):
    """A scenario device's [device.config] -> {key_id: value} for the settings it gives."""
    return {_CONFIG_IDS[name]: value for name, value in config.items() if value is not None}


def _route(spec, location):
    if spec is None:
        return Route([tuple(location)])
    if spec.get("gpx"):
        return Route.from_gpx(spec["gpx"], speed_mps=spec["speed_kmh"] / 3.6,
                              start_ms=spec["start_s"] * 1000)
    # [lat, lon, dwell_s] in a scenario is (lat, lon, default speed, dwell_s) for Route.
    points = [(p[0], p[1], None, p[2]) if len(p) == 3 else tuple(p) for p in spec["waypoints"]]
    return Route(points, speed_mps=spec["speed_kmh"] / 3.6, start_ms=spec["start_s"] * 1000)


def distance_m(lat0, lon0, lat1, lon1):
    p0, p1 = math.radians(lat0), math.radians(lat1)
    dp, dl = p1 - p0, math.radians(lon1 - lon0)
    h = math.sin(dp / 2) ** 2 + math.cos(p0) * math.cos(p1) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def percentiles(values):
    """p50/p95/max of a list (nearest rank), or None values when the list is empty."""
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    ordered = sorted(values)

    def rank(p):
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]
    return {"p50": rank(0.50), "p95": rank(0.95), "max": ordered[-1], "n": len(ordered)}


STEP_MS = 60_000  # how much virtual time may pass between two looks at Ctrl-C


class Interrupted(KeyboardInterrupt):
    """The run was stopped (Ctrl-C) at virtual time `.args[0]` ms; the trace so far is
    written."""


class TraceError(OSError):
    """The --trace file could not be written (disk full, /dev/full, ...)."""


class ScenarioRun:
    """One scenario: a World of emulated devices, their links plugged into one Centre."""

    def __init__(self, sc, seed=None, firmware_files=None, runtime="cpython", heap_bytes=None):
        self.sc = sc
        self.runtime = runtime
        self.seed = sc["scenario"]["seed"] if seed is None else seed
        self.utc0_ms = sc["scenario"]["start_utc_ms"]
        self.duration_ms = int(sc["scenario"]["duration_s"] * 1000)
        self.world = World(seed=self.seed, utc_start_ms=self.utc0_ms)
        keys = KeyStore()
        for dev in sc["device"]:
            keys.add(dev["id"], KEY_ID, device_key(self.seed, dev["id"]))
        centre_cfg = sc["centre"]
        self.centre = Centre(keys, CentreConfig(
            heartbeat_s=int(centre_cfg["heartbeat_s"]),
            operator_ack_delay_ms=int(centre_cfg["operator_ack_delay_s"] * 1000),
            operator_clear_ms=(None if centre_cfg.get("operator_clear_s") is None
                               else int(centre_cfg["operator_clear_s"] * 1000)),
            pairs={d["id"]: d["offender"] for d in sc["device"] if d["offender"] is not None},
            proximity=ProximityConfig(warning_m=centre_cfg["warning_m"],
                                      alarm_m=centre_cfg["alarm_m"]),
        ))
        self._centre_tick_at = None
        base_files = device_files(REPO) if firmware_files is None else firmware_files
        self.devices = {}
        self.peers = {}  # device id -> the centre's side of its link (UART gateway or phone)
        self.routes = {}
        link = sc["link"]
        over_ble = link.get("kind") == "ble"
        link_options = dict(
            loss=link["loss"], duplicate=link["duplicate"], reorder=link["reorder"],
            corrupt=link["corrupt"], latency_ms=link["latency_ms"], jitter_ms=link["jitter_ms"],
            outages=[(o["start_s"] * 1000, (o["start_s"] + o["duration_s"]) * 1000)
                     for o in link["outages"]])
        for spec in sc["device"]:
            device_id = spec["id"]
            files = dict(base_files)
            files["/keys/device.key"] = device_key_file_bytes(
                device_id, {KEY_ID: device_key(self.seed, device_id)})
            if over_ble:  # the same firmware, told by its pin table to link over BLE
                files["/lib/firmware/pins.py"] = (files["/lib/firmware/pins.py"]
                                                  + b'\nLINK_KIND = "ble"\n')
            items = provisioned_config(spec["config"])
            if items:
                files[CONFIG_PATH] = config_file_bytes(PROVISIONED_CONFIG_VERSION, items)
            route = _route(spec["route"], spec["location"])
            self.routes[device_id] = route
            dev = self.world.add_device(
                device_id, key=device_key(self.seed, device_id), files=files,
                profile=sc["scenario"]["profile"], link=link_options,
                gnss=dict(route=route,
                          indoor=[(s["start_s"] * 1000, (s["start_s"] + s["duration_s"]) * 1000)
                                  for s in spec["indoor"]]),
                battery=dict(capacity_mah=spec["battery_mah"], soc_pct=spec["battery_pct"]),
                runtime=runtime, heap_bytes=heap_bytes)
            peer = dev.link
            if over_ble:
                from host.emulator.phone import PhoneGateway
                peer = PhoneGateway(dev)
            peer.connect(self._uplink_handler(device_id))
            self.peers[device_id] = peer
            for press in spec["button"]:
                dev.button.hold(press["hold_ms"], at_ms=press["at_s"] * 1000)
            for change in spec.get("mode_change") or ():
                self.world.at(change["at_s"] * 1000, self._mode_change, device_id, change)
            for step in spec["charger"]:
                (dev.battery.plug if step["plugged"] else dev.battery.unplug)(
                    at_ms=step["at_s"] * 1000)
            self.devices[device_id] = dev
        self.offenders = {}
        self.offender_reports = {}  # offender id -> [(t_ms, lat, lon)] as the tag reported
        for spec in sc["offender"]:
            route = _route(spec["route"], spec["location"])
            self.offenders[spec["id"]] = (route, spec)
            rng = self.world.rng("offender", spec["id"])
            period_ms = spec["report_s"] * 1000
            first_ms = rng.uniform(0, period_ms)
            for k in range(int((self.duration_ms - first_ms) // period_ms) + 1):
                self.world.at(first_ms + k * period_ms, self._offender_fix, spec["id"], rng)

    # --- wiring ------------------------------------------------------------------------
    def key_for(self, device_id):
        return device_key(self.seed, device_id)

    def utc_ms(self):
        return self.utc0_ms + int(self.world.now_ms)

    def _send(self, pairs):
        for link_id, wire in pairs:
            self.peers[link_id].send_downlink(wire)
        self._schedule_centre()

    def _uplink_handler(self, device_id):
        def on_uplink(data, _t_ms):
            replies = self.centre.receive(device_id, data, self.utc_ms())
            self._send((device_id, wire) for wire in replies)
        return on_uplink

    def _offender_fix(self, offender_id, rng):
        route, spec = self.offenders[offender_id]
        lat, lon = route.at(self.world.now_ms)[:2]
        # The tag's own error, within its stated accuracy.
        sigma_deg = spec["accuracy_m"] / 2 / 111_320
        lat += rng.gauss(0, sigma_deg)
        lon += rng.gauss(0, sigma_deg / max(0.1, math.cos(math.radians(lat))))
        self.offender_reports.setdefault(offender_id, []).append((self.world.now_ms, lat, lon))
        self._send(self.centre.offender_fix(offender_id, self.utc_ms(), round(lat * 1e7),
                                            round(lon * 1e7), int(spec["accuracy_m"]),
                                            self.utc_ms()))

    def _mode_change(self, device_id, change):
        """A scenario's [[device.mode_change]]: the operator (or court) switches the scheme."""
        from host.centre.modes import AWARE, PAIRED
        now = self.utc_ms()
        paired = change["mode"] == "paired"
        until = (now + int(change["valid_for_s"] * 1000)
                 if paired and change["valid_for_s"] is not None else 0)
        self.centre.set_mode(device_id, PAIRED if paired else AWARE,
                             offender_id=change["offender"] or 0, valid_until_ms=until,
                             by=change["by"], now_ms=now)
        self._send(self.centre.tick(now))

    def _schedule_centre(self):
        deadline = self.centre.next_deadline_ms()
        if deadline is None:
            return
        t_ms = max(float(deadline - self.utc0_ms), self.world.now_ms)
        if self._centre_tick_at is not None and self._centre_tick_at <= t_ms:
            return
        self._centre_tick_at = t_ms
        self.world.at(t_ms, self._centre_tick)

    def _centre_tick(self):
        self._centre_tick_at = None
        self._send(self.centre.tick(self.utc_ms()))

    # --- running -----------------------------------------------------------------------
    def run(self, progress=None, stop=None):
        """Run to the end. With `stop` (a function), it is asked between steps of at most
        STEP_MS of virtual time, and a True answer ends the run early with Interrupted:
        between steps no firmware thread holds the baton, so the world can close cleanly."""
        steps = 100 if progress else 1
        for i in range(1, steps + 1):
            end_ms = self.duration_ms * i / steps
            if stop is not None:
                while self.world.now_ms + STEP_MS < end_ms:
                    self.world.run_until(self.world.now_ms + STEP_MS)
                    if stop():
                        raise Interrupted(self.world.now_ms)
            self.world.run_until(end_ms)
            if stop is not None and stop():
                raise Interrupted(self.world.now_ms)
            if progress:
                progress(i / steps, self.world.now_ms)

    def close(self):
        self.world.close()
        self.centre.close()

    # --- results -----------------------------------------------------------------------
    def trace_lines(self):
        """Every event of the run as JSON lines, in time order: the emulator's trace (boots,
        sleeps, pins, frames on the link, firmware output) and the centre's events. After
        summary(), the run.* records of host/run_records.py frame them: the scenario first,
        then tracks, fixes, power samples, latency samples and the --json figures last."""
        items = [(t, 0, {"t_ms": round(t, 3), "device": dev, "kind": kind, "detail": detail})
                 for t, dev, kind, detail in self.world.trace]
        for event in self.centre.events:
            items.append((event.time_ms - self.utc0_ms, 1, {
                "t_ms": event.time_ms - self.utc0_ms, "device": event.device_id,
                "kind": "centre." + event.kind, "detail": event.detail}))
        items.sort(key=lambda item: (item[0], item[1]))
        lines = [json.dumps(item[2], sort_keys=True, default=str) for item in items]
        figures = getattr(self, "_figures", None)
        if figures is None:
            return lines
        head, tail = run_records.records(self, figures, self._samples)
        return ([json.dumps(r, sort_keys=True, default=str) for r in head] + lines +
                [json.dumps(r, sort_keys=True, default=str) for r in tail])

    def _device_alarms(self):
        """Alarms as the firmware raised them: (device, alarm_id) -> (t_ms, kind, counter)."""
        raised = {}
        for device_id, dev in self.devices.items():
            for t_ms, line in dev.log:
                m = _ALARM_LOG.search(line)
                if m and int(m.group(3)) == 1:
                    raised.setdefault((device_id, int(m.group(1))),
                                      (t_ms, int(m.group(2)), int(m.group(4))))
        return raised

    def _acks_delivered(self):
        """device -> [(t_ms, set of uplink counters acked)] for every ACK the device got."""
        keyring = codec.Keyring()
        for dev in self.sc["device"]:
            keyring.add(dev["id"], KEY_ID, device_key(self.seed, dev["id"]))
        receiver = codec.Receiver(keyring, downlink=True, check_replay=False)
        acks = {}
        for t_ms, device_id, kind, detail in self.world.trace:
            if kind != "downlink":
                continue
            for item in receiver.feed(bytes.fromhex(detail.split(" ", 1)[0])):
                if isinstance(item, codec.Frame) and item.name == "ACK":
                    highest, bitmap = item.fields["highest"], item.fields["bitmap"]
                    counters = {highest - 1 - i for i in range(64) if bitmap >> i & 1}
                    counters.add(highest)
                    acks.setdefault(device_id, []).append((t_ms, counters))
        return acks

    def _proximity_latencies(self):
        """For each time an offender truly comes within the warning radius: (device, t_ms,
        delay until the wearer's proximity haptic starts; 0 if a predicted warning came
        first, up to metrics.PRE_WARN_MS before), and the crossings never followed by one."""
        warning_m = self.sc["centre"]["warning_m"]
        latencies, missed = [], 0
        names = metrics.proximity_patterns()
        for spec in self.sc["device"]:
            if spec["offender"] is None:
                continue
            victim = self.routes[spec["id"]]
            offender = self.offenders[spec["offender"]][0]
            haptic_ms = metrics.haptic_starts(self.devices[spec["id"]].haptic.pulses(), names)

            def distance_at(t_ms, victim=victim, offender=offender):
                return distance_m(*victim.at(t_ms)[:2], *offender.at(t_ms)[:2])
            crossing_ms = metrics.crossings(distance_at, self.duration_ms, warning_m,
                                            PROXIMITY_SAMPLE_MS)
            found, never = metrics.crossing_latencies(crossing_ms, haptic_ms)
            latencies.extend((spec["id"], t_ms, ms) for t_ms, ms in found)
            missed += never
        return latencies, missed

    def _proximity_observed_latencies(self):
        """For each true crossing of the warning radius: the delay from the first tag report
        that shows the offender inside (the earliest the centre could know) to the wearer's
        proximity haptic starting (0 when a predicted warning came first). The tag's noise
        may show it inside up to one report early."""
        warning_m = self.sc["centre"]["warning_m"]
        latencies = []
        for spec in self.sc["device"]:
            if spec["offender"] is None:
                continue
            victim = self.routes[spec["id"]]
            offender, tag = self.offenders[spec["offender"]]
            reports = self.offender_reports.get(spec["offender"], [])
            haptic_on = metrics.haptic_starts(self.devices[spec["id"]].haptic.pulses(),
                                              metrics.proximity_patterns())
            inside = False
            for t_ms in range(0, self.duration_ms, PROXIMITY_SAMPLE_MS):
                d = distance_m(*victim.at(t_ms)[:2], *offender.at(t_ms)[:2])
                if d <= warning_m and not inside:
                    seen = [t for t, lat, lon in reports if t >= t_ms - tag["report_s"] * 1000
                            and distance_m(*victim.at(t)[:2], lat, lon) <= warning_m]
                    # A predicted warning (before the report) counts as 0, as for crossings.
                    later = [t for t in haptic_on
                             if seen and t >= min(seen[0], t_ms) - metrics.PRE_WARN_MS]
                    if later:
                        latencies.append((spec["id"], seen[0], max(0.0, later[0] - seen[0])))
                inside = d <= warning_m
        return latencies

    def safety_figures(self):
        """The ground-truth figures of issue 9 (host/metrics.py says what each one means)."""
        delivered = {}
        for row in self.centre.evidence.rows("frames"):
            if row["outcome"] == "delivered" and row["type"] == "ALARM":
                delivered.setdefault(row["device_id"], set()).add(row["counter"])
        keyring = codec.Keyring()
        for spec in self.sc["device"]:
            keyring.add(spec["id"], KEY_ID, device_key(self.seed, spec["id"]))
        warning_m = self.sc["centre"]["warning_m"]
        presses = lost = missed = false = wrong = 0
        haptic: dict = {}
        silence = []
        not_reporting = {}
        for event in self.centre.events:
            if event.kind == "not_reporting":
                not_reporting.setdefault(event.device_id, []).append(
                    event.time_ms - self.utc0_ms)
        outages = [o["start_s"] * 1000 for o in self.sc["link"]["outages"]]
        for spec in self.sc["device"]:
            device_id = spec["id"]
            dev = self.devices[device_id]
            long_presses = metrics.long_presses(spec)
            presses += len(long_presses)
            lost += len(metrics.lost_presses(long_presses, metrics.alarm_logs(dev.log),
                                             delivered.get(device_id, set())))
            for name, count in metrics.haptic_counts(dev.haptic.pulses()).items():
                haptic[name] = haptic.get(name, 0) + count
            deaths = [t for t, d, kind, _x in self.world.trace
                      if d == device_id and kind == "brownout"]
            silence.extend(metrics.silence_latencies(deaths + outages,
                                                     not_reporting.get(device_id, [])))
            routed = [(e.detail["raised_time_ms"] - self.utc0_ms, e.detail["endpoint"])
                      for e in self.centre.events
                      if e.kind == "alarm_raised" and e.device_id == device_id
                      and e.detail.get("raised_time_ms")]
            wrong += len(metrics.misrouted(spec, routed))
            if spec["offender"] is None:
                continue
            victim = self.routes[device_id]
            offender = self.offenders[spec["offender"]][0]

            def distance_at(t_ms, victim=victim, offender=offender):
                return distance_m(*victim.at(t_ms)[:2], *offender.at(t_ms)[:2])
            levels = metrics.proximity_levels_delivered(self.world.trace, keyring, device_id)
            missed += metrics.missed_crossings(
                metrics.crossings(distance_at, self.duration_ms, warning_m, PROXIMITY_SAMPLE_MS),
                levels)
            false += metrics.false_warnings(levels, distance_at, warning_m, self.duration_ms,
                                            PROXIMITY_SAMPLE_MS)
        return {
            "presses_long": presses,
            "alarms_lost": lost,
            "haptic": haptic,
            "centre_events": metrics.event_counts(self.centre.events),
            "not_reporting_latency_ms": percentiles(silence),
            "proximity_missed": missed,
            "proximity_false": false,
            # Alarms at an endpoint other than the scheme the scenario had the device in.
            "alarms_misrouted": wrong,
        }

    def summary(self, wall_s):
        raised = self._device_alarms()
        at_centre = {(a.device_id, a.alarm_id): a for a in self.centre.alarm_history}
        samples = self.latency_samples()
        prox_missed = samples.pop("proximity_warnings_missed")
        reports = [dev.energy.report(capacity_mah=spec["battery_mah"])
                   for dev, spec in zip(self.devices.values(), self.sc["device"], strict=True)]
        n = len(reports)
        figures = {
            "scenario": self.sc["scenario"]["name"],
            "seed": self.seed,
            "virtual_s": self.world.now_ms / 1000,
            "wall_s": round(wall_s, 3),
            "devices": n,
            "frames_up": sum(p.stats["up_sent"] for p in self.peers.values()),
            "frames_down": sum(p.stats["down_sent"] for p in self.peers.values()),
            "frames_refused": dict(self.centre.refused),
            "alarms_raised": len(raised),
            "alarms_acked": sum(1 for key in raised if key in at_centre and
                                at_centre[key].ack_delivered_ms is not None),
            # Alarms the firmware raised that never reached the centre (the figure before
            # issue 9; alarms_lost below counts from the scenario's presses instead).
            "alarms_raised_lost": sum(1 for key in raised if key not in at_centre),
            "panic_to_ack_ms": percentiles([x[2] for x in samples["panic_to_ack_ms"]]),
            "proximity_warn_latency_ms": percentiles(
                [x[2] for x in samples["proximity_warn_latency_ms"]]),
            "proximity_warnings_missed": prox_missed,
            "proximity_observed_latency_ms": percentiles(
                [x[2] for x in samples["proximity_observed_latency_ms"]]),
            # How long the link held each downlink for a sleeping device (listen windows).
            "downlink_wait_ms": percentiles([x[2] for x in samples["downlink_wait_ms"]]),
            "profile": self.sc["scenario"]["profile"],
            "energy_mah": round(sum(r["energy_mah"] for r in reports), 4),
            "board_mah": round(sum(r["board_mah"] for r in reports), 4),
            "avg_current_ma": round(sum(r["avg_current_ma"] for r in reports) / n, 4),
            # None when no device got a fix (the floor has no GNSS cost then: energy.py).
            "floor_ratio": _mean([r["floor_ratio"] for r in reports
                                  if r["floor_ratio"] is not None], 3),
            "projected_battery_days": round(min(r["projected_battery_days"] for r in reports), 2),
            "crashes": sum(len(d.crashes) for d in self.devices.values()),
            # What left a board unable to run its firmware: at the REPL, stuck in the ROM
            # (strapping), out of heap (docs/HARDWARE.md).
            "device_faults": [{"device": device_id, "t_ms": round(t_ms, 3), "kind": kind,
                               "detail": detail}
                              for device_id, d in self.devices.items()
                              for t_ms, kind, detail in d.faults],
            **runtime_summary(self.runtime, self.devices),
            **self.safety_figures(),
        }
        # The trace ends with these figures (less wall_s, which varies by machine, and the
        # runtime's heap figures, which differ between runtimes whose traces must not), so a
        # report made from the trace alone shows the same numbers as --json.
        self._figures = {k: v for k, v in figures.items()
                         if k not in ("wall_s", "runtime", "peak_heap_bytes")}
        self._samples = samples
        digest = hashlib.sha256()
        for line in self.trace_lines():
            digest.update(line.encode() + b"\n")
        figures["trace_sha256"] = digest.hexdigest()
        return figures

    def latency_samples(self):
        """Each latency that --json summarises, one (device, start t_ms, ms) per sample:
        panic -> transport ack, true crossing -> haptic, first tag report inside -> haptic,
        downlink held for a sleeping device; plus proximity_warnings_missed (a count)."""
        raised = self._device_alarms()
        acks = self._acks_delivered()
        panic_to_ack = []
        for (device_id, _alarm_id), (t_ms, kind, counter) in raised.items():
            if kind != 1:
                continue
            for ack_t, counters in acks.get(device_id, ()):
                if ack_t >= t_ms and counter in counters:
                    panic_to_ack.append((device_id, t_ms, ack_t - t_ms))
                    break
        prox_latency, prox_missed = self._proximity_latencies()
        return {
            "panic_to_ack_ms": panic_to_ack,
            "proximity_warn_latency_ms": prox_latency,
            "proximity_warnings_missed": prox_missed,
            "proximity_observed_latency_ms": self._proximity_observed_latencies(),
            "downlink_wait_ms": [(device_id, w[0], w[2]) for device_id, p in self.peers.items()
                                 for w in p.downlink_waits],
        }

    def timeline(self):
        """Key events in virtual time, for the readable summary."""
        rows = []
        for (device_id, alarm_id), (t_ms, kind, _c) in self._device_alarms().items():
            rows.append((t_ms, "device %d raised alarm %d (%s)" % (
                device_id, alarm_id, _ALARM_KINDS.get(kind, kind))))
        for event in self.centre.events:
            text = _CENTRE_LINES.get(event.kind)
            if text:
                rows.append((event.time_ms - self.utc0_ms,
                             text.format(device=event.device_id, **event.detail)))
        for device_id, dev in self.devices.items():
            for t_ms, _dev, kind, detail in ((t, d, k, x) for t, d, k, x in self.world.trace
                                             if d == device_id and k in ("crash", "reset")):
                rows.append((t_ms, "device %d %s: %s" % (device_id, kind, detail)))
            first = None
            for t_ms, level in dev.haptic.edges:
                if level and (first is None or t_ms - first > 60_000):
                    first = t_ms
                    rows.append((t_ms, "device %d haptic motor runs" % device_id))
        rows.sort(key=lambda r: r[0])
        return rows


_ALARM_KINDS = {1: "panic", 2: "battery 20 %", 3: "battery 10 %", 4: "battery 5 %",
                5: "GNSS lost", 6: "tamper", 7: "power-off attempt"}
_CENTRE_LINES = {
    "alarm_raised": "centre: alarm {alarm_id} of device {device} arrived",
    "alarm_acked": "centre: operator acked alarm {alarm_id} of device {device}",
    "alarm_ack_delivered": "centre: device {device} confirmed the operator ack of alarm {alarm_id}",
    "alarm_cleared": "centre: alarm {alarm_id} of device {device} cleared",
    "clear_requested": "centre: operator clears alarm {alarm_id} of device {device}",
    "proximity": "centre: proximity of device {device} is now {level} (was {previous})",
    "not_reporting": "centre: device {device} NOT REPORTING",
    "reporting": "centre: device {device} reporting again",
    "schema_mismatch": "centre: device {device} schema mismatch",
}


@contextlib.contextmanager
def one_core():
    """Keep the calling thread, and the firmware threads it starts, on one CPU.

    Only one thread of a World ever runs (the scheduler hands a baton to the firmware thread
    and waits), so a second core buys nothing, while waking the other thread on an idle core
    at every hand-over doubles the wall time of a run. The core is chosen by pid, so the
    processes of a fleet spread over the cores; the caller's affinity is restored after.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not Linux
        allowed = None
    if allowed and len(allowed) > 1:
        cpus = sorted(allowed)
        os.sched_setaffinity(0, {cpus[os.getpid() % len(cpus)]})  # 0: this thread only
    try:
        yield
    finally:
        if allowed and len(allowed) > 1:
            os.sched_setaffinity(0, allowed)


def firmware_tree(path):
    """Device files from another firmware tree: a checkout (with firmware/ and protocol/) or a
    firmware/ folder alone (the protocol then comes from this repository)."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError("--firmware %s: not a directory" % path)
    if (root / "firmware").is_dir():
        return device_files(root)
    if not (root / "main.py").is_file():
        raise ValueError("--firmware %s: neither a checkout with firmware/ nor a firmware "
                         "folder with main.py" % path)
    files = {path: data for path, data in device_files(REPO).items()
             if path.startswith("/lib/protocol/")}
    for src in sorted(root.glob("*.py")):
        name = src.name
        files["/" + name if name in ("boot.py", "main.py") else "/lib/firmware/" + name] = \
            src.read_bytes()
    return files


def _mean(values, digits):
    return round(sum(values) / len(values), digits) if values else None


def runtime_summary(runtime, devices):
    """`runtime` and `peak_heap_bytes` ({device id: bytes}, gc.mem_alloc() sampled in the VM
    at each wake, less the emulator's own modules, which are ROM on a board; None under
    CPython, whose heap is a model). Kept out of trace_sha256, which
    must be the same under both runtimes; a MemoryError is a device fault (device_faults)."""
    peaks = {str(device_id): dev.vm.peak_heap_bytes for device_id, dev in devices.items()
             if dev.vm is not None}
    return {"runtime": runtime, "peak_heap_bytes": peaks if runtime != "cpython" else None}


def run(sc, seed=None, progress=None, trace_path=None, record_path=None, source=None,
        firmware_files=None, stop=None, report_path=None, runtime="cpython", heap_bytes=None,
        save_flash=None):
    """Run a loaded scenario; returns (summary dict, timeline rows). With record_path, the
    centre's traffic and the stimuli are written there as pcapng (host/recording); with
    report_path, the session report (host.report) of the run's trace; with save_flash (a
    directory), each device's flash image as device-ID.img. When `stop()` says so, the run
    ends early: the trace so far is written and Interrupted raised."""
    started = time.perf_counter()
    run_class = ScenarioRun
    if record_path:
        from host.recording.emu import RecordingRun as run_class
    with one_core():
        sim = run_class(sc, seed, firmware_files=firmware_files, runtime=runtime,
                        heap_bytes=heap_bytes)
        try:
            try:
                sim.run(progress, stop)
            except Interrupted:
                if trace_path:
                    write_trace(trace_path, sim.trace_lines())
                raise
            wall_s = time.perf_counter() - started
            summary = sim.summary(wall_s)
            timeline = sim.timeline()
            if trace_path or report_path:
                lines = sim.trace_lines()
            if trace_path:
                write_trace(trace_path, lines)
            if record_path:
                sim.write(record_path, source or sc["scenario"]["name"])
            if report_path:
                from host.report import write_report
                write_report([json.loads(line) for line in lines], report_path)
            if save_flash:
                for device_id, dev in sim.devices.items():
                    Path(save_flash, "device-%s.img" % device_id).write_bytes(dev.flash.image)
            return summary, timeline
        finally:
            sim.close()


def write_trace(path, lines):
    """JSON lines to `path`, flushed and synced; any failure is a one-line TraceError."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
            f.flush()
            try:
                os.fsync(f.fileno())
            except OSError:
                pass  # a pipe or a character device cannot sync; its writes went through
    except OSError as e:
        raise TraceError("--trace %s: %s" % (path, e.strerror or e)) from None
