"""Issue 9's target suite: the safety scenarios in bench/safety/, each over many seeds, the
unchanged firmware against the emulated centre.

    python bench/safety.py [--seeds 20] [--jobs 2] [--only NAME ...]

Per scenario it prints one line; the last line is one JSON object with the figures:
  crossing_to_haptic_p95_ms   true 1000 m crossing -> the wearer's proximity haptic (warning,
                              alarm or uncertain pattern; 0 when a predicted warning came
                              first), p95 over every crossing of the proximity scenarios
  proximity_missed            crossings with no level at the wearer within 60 s (--json)
  proximity_false             warnings with no true approach within 1100 m (--json)
  circling_warnings           warnings while the offender circles at 1050-1100 m (target 0)
  uncertain_levels            PROXIMITY events at level uncertain, per scenario
  indoor_uncertain_latency_ms victim indoors: from the offender entering warning_m of her last
                              known position to the uncertain level at the wearer and the
                              operator (the later of the two), p95 and max
  brownout_to_operator_ms     brown-out during an active alarm -> the operator is told
                              (NOT_REPORTING / ESCALATED), p95 and max
  indoor_hour_ma              victim moving, then indoors (a route and an indoor span): her
                              average current over the first hour indoors, mean and max
                              (target <= 3 mA; the centre's locate requests included)
  alarms_lost                 long presses with no alarm at the centre, all runs
  alarms_misrouted            alarms at the wrong endpoint for the scheme the scenario had
                              the device in (mode-switch: aware -> paired -> aware)
"""
import argparse
import json
import math
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host import emulate, metrics, scenario  # noqa: E402
from protocol import codec  # noqa: E402
from protocol import host_constants as constants  # noqa: E402

SUITE = Path(__file__).resolve().parent / "safety"
PROXIMITY = ("offender-driving", "victim-bus", "both-moving", "tag-30s", "loss-30",
             "deep-sleep-victim")
CROSSING_P95_TARGET_MS = 30_000
INDOOR_TARGET_MS = 60_000
BROWNOUT_TARGET_MS = 90_000
INDOOR_HOUR_TARGET_MA = 3.0


def names():
    return sorted(p.stem for p in SUITE.glob("*.toml"))


def _keyring(run):
    ring = codec.Keyring()
    for spec in run.sc["device"]:
        ring.add(spec["id"], emulate.KEY_ID, emulate.device_key(run.seed, spec["id"]))
    return ring


def _indoor_latency(run, spec):
    """Offender within warning_m of the victim's last true position before indoors ->
    uncertain at both the wearer (delivered level) and the operator (centre event)."""
    span = spec["indoor"][0]
    victim = run.routes[spec["id"]]
    last_known = victim.at(span["start_s"] * 1000)[:2]
    offender = run.offenders[spec["offender"]][0]
    warning_m = run.sc["centre"]["warning_m"]
    start_ms = int(span["start_s"] * 1000)
    entered = next((t for t in range(start_ms, run.duration_ms, 1000)
                    if emulate.distance_m(*last_known, *offender.at(t)[:2]) <= warning_m), None)
    if entered is None:
        return None
    levels = metrics.proximity_levels_delivered(run.world.trace, _keyring(run), spec["id"])
    at_wearer = next((t for t, level in levels
                      if level >= constants.PROXIMITY_UNCERTAIN and t >= start_ms), None)
    at_operator = next((e.time_ms - run.utc0_ms for e in run.centre.events
                        if e.kind == "proximity" and e.detail["level"] != "clear"
                        and e.time_ms - run.utc0_ms >= start_ms), None)
    if at_wearer is None or at_operator is None:
        return float("inf")
    return max(0.0, max(at_wearer, at_operator) - entered)


def _brownout_latency(run, device_id):
    deaths = [t for t, d, kind, _x in run.world.trace if d == device_id and kind == "brownout"]
    if not deaths:
        return None
    told = [e.time_ms - run.utc0_ms for e in run.centre.events
            if e.device_id == device_id and e.kind in ("not_reporting", "escalated")
            and e.time_ms - run.utc0_ms >= deaths[0]]
    return told[0] - deaths[0] if told else float("inf")


def _indoor_hour_ma(run, spec):
    """Run to the end of her first hour indoors and return her average current over it, for a
    victim with a route (moving before she went in); None otherwise (nothing is run)."""
    if not spec["indoor"] or spec.get("route") is None:
        return None
    start_ms = int(spec["indoor"][0]["start_s"] * 1000)
    end_ms = min(start_ms + 3_600_000, start_ms + int(spec["indoor"][0]["duration_s"] * 1000),
                 run.duration_ms)
    energy = run.devices[spec["id"]].energy
    run.world.run_until(start_ms)
    before_mah = energy.mah()
    run.world.run_until(end_ms)
    return round((energy.mah() - before_mah) * 3_600_000 / (end_ms - start_ms), 3)


def one(job):
    """Figures of one scenario and seed."""
    name, seed = job
    sc = scenario.load(str(SUITE / (name + ".toml")))
    started = time.perf_counter()
    run = emulate.ScenarioRun(sc, seed)
    try:
        indoor_hour_ma = _indoor_hour_ma(run, sc["device"][0])
        run.run()
        summary = run.summary(time.perf_counter() - started)
        latencies = [ms for _d, _t, ms in run.latency_samples()["proximity_warn_latency_ms"]]
        spec = sc["device"][0]
        out = {
            "scenario": name, "seed": seed,
            "crossing_ms": latencies,
            "proximity_missed": summary["proximity_missed"],
            "proximity_false": summary["proximity_false"],
            "warnings": sum(1 for e in run.centre.events if e.kind == "proximity"
                            and e.detail["level"] in ("warning", "alarm")
                            and e.detail["previous"] in ("clear", "uncertain")),
            "uncertain": sum(1 for e in run.centre.events if e.kind == "proximity"
                             and e.detail["level"] == "uncertain"),
            "alarms_lost": summary["alarms_lost"],
            "alarms_misrouted": summary["alarms_misrouted"],
            "presses_long": summary["presses_long"],
            "avg_current_ma": summary["avg_current_ma"],
            "crashes": summary["crashes"],
            "haptic": summary["haptic"],
            "not_reporting": summary["centre_events"].get("not_reporting", 0),
            "wall_s": round(time.perf_counter() - started, 2),
        }
        if spec["indoor"] and spec["offender"] is not None:
            out["indoor_ms"] = _indoor_latency(run, spec)
        if indoor_hour_ma is not None:
            out["indoor_hour_ma"] = indoor_hour_ma
        out["brownout_ms"] = _brownout_latency(run, spec["id"])
        return out
    finally:
        run.close()


def _p95(values):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(0.95 * len(ordered)) - 1))]


def _mean(values):
    return round(sum(values) / len(values), 3) if values else None


def _finite(value):
    return None if value is None or value == float("inf") else round(value)


def aggregate(results):
    by = {}
    for r in results:
        by.setdefault(r["scenario"], []).append(r)
    crossing = [ms for name in PROXIMITY for r in by.get(name, ()) for ms in r["crossing_ms"]]
    indoor = [r["indoor_ms"] for r in by.get("victim-indoors", ()) if r.get("indoor_ms")
              is not None]
    brownout = [r["brownout_ms"] for r in by.get("brownout-panic", ())
                if r["brownout_ms"] is not None]
    indoor_ma = [r["indoor_hour_ma"] for r in results if "indoor_hour_ma" in r]
    figures = {
        "seeds": max((len(v) for v in by.values()), default=0),
        "crossing_to_haptic_p95_ms": _finite(_p95(crossing)),
        "crossing_to_haptic_max_ms": _finite(max(crossing, default=None)),
        "crossing_to_haptic_p95_ms_by_scenario": {
            name: _finite(_p95([ms for r in by[name] for ms in r["crossing_ms"]]))
            for name in PROXIMITY if name in by},
        "crossings": len(crossing),
        "proximity_missed": sum(r["proximity_missed"] for r in results),
        "proximity_false": sum(r["proximity_false"] for r in results),
        "circling_warnings": sum(r["warnings"] for r in by.get("offender-circling", ())),
        "uncertain_levels": {name: sum(r["uncertain"] for r in rs) for name, rs in
                             sorted(by.items())},
        "indoor_uncertain_latency_ms": {"p95": _finite(_p95(indoor)),
                                        "max": _finite(max(indoor, default=None)),
                                        "n": len(indoor)},
        "brownout_to_operator_ms": {"p95": _finite(_p95(brownout)),
                                    "max": _finite(max(brownout, default=None)),
                                    "n": len(brownout)},
        "indoor_hour_ma": {"mean": _mean(indoor_ma), "max": max(indoor_ma, default=None),
                           "n": len(indoor_ma)},
        "alarms_lost": sum(r["alarms_lost"] for r in results),
        "presses_long": sum(r["presses_long"] for r in results),
        "alarms_misrouted": sum(r["alarms_misrouted"] for r in results),
        "crashes": sum(r["crashes"] for r in results),
        "avg_current_ma": {name: round(sum(r["avg_current_ma"] for r in rs) / len(rs), 3)
                           for name, rs in sorted(by.items())},
    }
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="scenario names (default: all)")
    args = parser.parse_args(argv)
    chosen = args.only or names()
    jobs = [(name, seed) for name in chosen for seed in range(args.seeds)]
    started = time.perf_counter()
    with multiprocessing.Pool(args.jobs) as pool:
        results = []
        for r in pool.imap_unordered(one, jobs):
            results.append(r)
            print("%-18s seed %2d  crossing %s  missed %d  false %d  uncertain %d  lost %d  "
                  "%.1f s" % (r["scenario"], r["seed"],
                              [round(ms / 1000, 1) for ms in r["crossing_ms"]],
                              r["proximity_missed"], r["proximity_false"], r["uncertain"],
                              r["alarms_lost"], r["wall_s"]), flush=True)
    figures = aggregate(results)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
