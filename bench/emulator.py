"""Benchmark of the emulator: prints figures, then one JSON object as the last line.

    python bench/emulator.py [--quick] [--no-profile]
    python bench/emulator.py --runtime micropython [--quick]   (issue 10: bench/emulator_vm.py)

Measured, end to end through `host.emulate.run` (world, firmware, centre, summary):
- device-days per wall second for one `quiet-day` and one `commute` (24 h each), the median
  of several runs, and the ratio to real time;
- a fleet of 1,000 device-days (500 `quiet-day` + 500 `commute`, each with its own seed) on
  two worker processes, in wall time; `--quick` runs a fleet of 20;
- where the time goes: cProfile of one `commute` day, the scheduler thread and the firmware
  thread merged (the firmware runs in its own thread, invisible to a plain cProfile).

Targets (issue 4): one device-day <= 1 s of wall time; 1,000 device-days <= 5 min.
"""
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host import emulate, scenario  # noqa: E402

DAY_S = 86400
DAY_SCENARIOS = ("quiet-day", "commute")
TARGET_DAY_WALL_S = 1.0
TARGET_FLEET_WALL_S = 300.0
FLEET_WORKERS = 2


def run_once(name, seed=None):
    """(wall s, CPU s of the process, summary) of one run of a built-in scenario, summary
    included. CPU time counts the scheduler and firmware threads, and not other processes
    (the machine may be shared, so wall time can be inflated)."""
    sc = scenario.load(name)
    started, cpu_started = time.perf_counter(), time.process_time()
    summary, _timeline = emulate.run(sc, seed=seed)
    return time.perf_counter() - started, time.process_time() - cpu_started, summary


def bench_days(runs):
    figures = {}
    for name in DAY_SCENARIOS:
        run_once(name)  # warm: imports, compiled firmware code, profile files
        walls, cpus = zip(*[run_once(name)[:2] for _ in range(runs)], strict=True)
        wall_s = statistics.median(walls)
        figures["%s_wall_s" % name] = wall_s
        figures["%s_cpu_s" % name] = statistics.median(cpus)
        figures["%s_device_days_per_s" % name] = 1 / wall_s
        figures["%s_x_real_time" % name] = DAY_S / wall_s
        print("%-10s one device-day in %.3f s wall (median of %d; min %.3f, max %.3f): "
              "%.2f device-days/s, %.0fx real time; %.3f s CPU" % (
                  name, wall_s, runs, min(walls), max(walls), 1 / wall_s, DAY_S / wall_s,
                  statistics.median(cpus)))
    return figures


def _fleet_job(job):
    name, seed = job
    _wall_s, cpu_s, summary = run_once(name, seed)
    return (name, cpu_s, summary["virtual_s"], summary["crashes"], summary["alarms_lost"])


def _pin_worker(counter):
    """Give each worker a core of its own (emulate.run keeps a run on one core; without this
    it picks one by pid, and two workers could share one)."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    except (AttributeError, OSError):  # not Linux
        pass


def bench_fleet(device_days):
    jobs = [(DAY_SCENARIOS[i % 2], 1000 + i) for i in range(device_days)]
    # fork keeps the parent's imports; each worker compiles the firmware once, then reuses it.
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    started = time.perf_counter()
    counter = context.Value("i", 0)
    with context.Pool(FLEET_WORKERS, initializer=_pin_worker, initargs=(counter,)) as pool:
        results = pool.map(_fleet_job, jobs, chunksize=max(1, device_days // 40))
    wall_s = time.perf_counter() - started
    virtual_days = sum(r[2] for r in results) / DAY_S
    crashes = sum(r[3] for r in results)
    lost = sum(r[4] for r in results)
    cpu_s = sum(r[1] for r in results)
    print("fleet      %d device-days (%s, seeds 1000..%d) on %d workers: %.1f s wall, "
          "%.1f device-days/s, %.2f s CPU per device-day (%.1f s on %d idle cores); "
          "%d crashes, %d alarms lost" % (
              virtual_days, " + ".join(DAY_SCENARIOS), 999 + device_days, FLEET_WORKERS,
              wall_s, virtual_days / wall_s, cpu_s / len(results), cpu_s / FLEET_WORKERS,
              FLEET_WORKERS, crashes, lost))
    return {"fleet_device_days": virtual_days, "fleet_wall_s": wall_s,
            "fleet_device_days_per_s": virtual_days / wall_s,
            "fleet_projected_1000_wall_s": wall_s * 1000 / virtual_days,
            "fleet_cpu_s_per_device_day": cpu_s / len(results),
            "fleet_crashes": crashes, "fleet_alarms_lost": lost}


def profile_day(name="commute", top=20):
    """cProfile of one run, every thread of it (the firmware's included), merged."""
    profilers = []
    lock = threading.Lock()

    def start_in_thread(_frame, _event, _arg):
        # Called once in each new thread: hand the thread to its own profiler.
        profiler = cProfile.Profile()
        with lock:
            profilers.append(profiler)
        profiler.enable()

    main_profiler = cProfile.Profile()
    threading.setprofile(start_in_thread)
    try:
        main_profiler.enable()
        run_once(name)
        main_profiler.disable()
    finally:
        threading.setprofile(None)
    out = io.StringIO()
    stats = pstats.Stats(stream=out)
    split = []
    for label, profiler in [("scheduler", main_profiler)] + [("firmware", p) for p in profilers]:
        one = pstats.Stats(profiler)
        waited = _drop_baton_waits(one)
        split.append("%s thread %.3f s (+%.3f s waiting for the baton)" % (
            label, one.total_tt, waited))
        stats.add(one)
    stats.sort_stats("tottime").print_stats(top)
    body = out.getvalue()
    start = body.find("   ncalls")
    print("where the time goes in one %s day under cProfile: %s" % (name, "; ".join(split)))
    print(body[start:].rstrip() if start >= 0 else body.rstrip())


def _drop_baton_waits(stats):
    """Remove the lock waits of the scheduler/firmware hand-over (each thread waits while the
    other runs, so they count every second twice); returns the seconds removed."""
    waited = 0.0
    for key in list(stats.stats):
        if key[2] == "<method 'acquire' of '_thread.lock' objects>":
            waited += stats.stats.pop(key)[2]
    stats.total_tt -= waited
    return waited


def main(argv):
    quick = "--quick" in argv
    started = time.perf_counter()
    if "micropython" in argv:  # --runtime micropython: issue 10's figures (bench/emulator_vm.py)
        from emulator_vm import bench_vm
        figures = bench_vm(quick)
        figures["quick"] = quick
        figures["bench_seconds"] = time.perf_counter() - started
        print(json.dumps(figures, sort_keys=True))
        return 0
    figures = bench_days(runs=2 if quick else 5)
    figures.update(bench_fleet(20 if quick else 1000))
    if "--no-profile" not in argv:
        profile_day()
    day_wall_s = max(figures["%s_wall_s" % n] for n in DAY_SCENARIOS)
    targets = {
        "one device-day <= 1 s wall": day_wall_s <= TARGET_DAY_WALL_S,
        "1,000 device-days <= 5 min": figures["fleet_projected_1000_wall_s"] <=
        TARGET_FLEET_WALL_S,
    }
    for target, met in targets.items():
        print("target %-40s %s" % (target, "met" if met else "NOT met"))
    figures["targets_met"] = {k: bool(v) for k, v in targets.items()}
    figures["quick"] = quick
    figures["bench_seconds"] = time.perf_counter() - started
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                      for k, v in figures.items()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
