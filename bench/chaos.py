"""Chaos campaign: many short randomized runs of the unchanged firmware against the emulated
centre, with everything going wrong at once. Prints progress and failures, then one JSON
object as the last line.

    python bench/chaos.py [--runs N] [--seed S] [--workers W] [--only SEED]

Each run (its own seed, derived from --seed and the run's index) is one device for
RUN_S (8 minutes) of virtual time. During the first CHAOS_S (5 minutes):
- its link loses, duplicates, reorders and corrupts frames both ways, with random rates,
  latency and jitter, and has 0-2 outages of 20-120 s;
- the wearer presses the panic button 1-3 times;
- 0-4 of: a reset (the EN button: HARD_RESET), a power cut (off for 1-20 s), a power cut at
  the n-th flash write from a random moment (n 0..15, as a brown-out mid-write), a restart
  of the monitoring centre (a new Centre on the same SQLite evidence file; downlinks it had
  queued are lost with the process, as they would be).
Then the link heals for the last HEAL_S (3 minutes), so whatever was held back can get
through.

Why a run this short is enough: every fault and every press falls inside the chaos window,
and what the checks look at (an alarm raised, stored on flash, retried, acked, counted by
the centre) plays out within seconds to a couple of minutes of each fault. The firmware
retries an unacknowledged alarm at 1, 2, 5, 10 and 30 s and then every 30 s, so the 3
healed minutes give the last alarm at least five clean tries: a run that still loses it has
found a real bug, not a short deadline. Hours of quiet (heartbeats, hours-long timers) add
wall time and no new interleavings of faults and alarms; those are the safety scenarios'
job (bench/safety.py). After a press the device tracks for panic_track_s = 60 s (the
smallest CONFIG allows) for the same reason: tracking is GNSS work, not alarm delivery.

Per-run setup that is the same for every run is done once per process, where that is
honest: the firmware files are read once, and the formatted littlefs image with the
firmware and its CONFIG is built once; each run copies it and writes its own device key
(the seed's key) into the copy, as provisioning writes a key after `vigil deploy`. The
centre's evidence files live on a RAM disk (/dev/shm) when there is one: a restart still
reopens the file, and no fsync stands in for what is being measured. Compiled firmware
modules are already shared by every boot in a process (host/emulator/runtime.py).

Figures (summed over runs):
- alarms_lost: alarms the firmware raised (its "alarm N kind K state 1" log line: stored on
  flash) that no centre incarnation ever heard of;
- alarms_duplicated: alarms the operator was shown more than once (an `alarm_raised` event of
  the same device, alarm id and raise time in any incarnation after the first);
- crashes: firmware crashes (uncaught exceptions on the board, app exceptions that main.py's
  catch-all logged as "vigil: crash:" before resetting, out of heap, stuck in the ROM) plus
  runs the harness could not finish (an emulator or centre exception);
- counter_reuse: (device, direction, counter) that sealed two different messages, from every
  byte the device wrote and every frame the centre sent, before any link fault (a
  retransmission of the same message is no reuse).
Also: presses, alarms_raised, alarms_acked (the device got the operator's ack), resets,
power_cuts, flash_cuts, centre_restarts, wall_s, runs_per_s, cpu_s (this process and its
workers; on a shared machine wall time measures the neighbours) and the seeds of failing
runs, so `--only SEED` replays one.

Ctrl-C stops the campaign (after the run in flight, or within a minute of its virtual
time): the summary covers the runs that finished, with `"interrupted": true`, exit status
130 (1 if a finished run failed).

Target (issue 8): 10,000 runs in under an hour on 2 cores, with 0 alarms lost, 0 delivered
twice to the operator, 0 crashes and 0 counter reuse.
"""
import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from littlefs.context import UserContext  # noqa: E402

from host import deploy, emulate, scenario  # noqa: E402
from host.centre import Centre  # noqa: E402
from host.emulator.flash import board_littlefs  # noqa: E402
from host.emulator.states import HARD_RESET, DeviceReset  # noqa: E402
from host.provision import KEY_PATH  # noqa: E402
from protocol import codec  # noqa: E402

RUN_S = 480
CHAOS_S = 300
HEAL_S = RUN_S - CHAOS_S
# After a panic the device tracks (GNSS on, awake) for panic_track_s; the campaign is about
# alarm delivery, so the smallest tracking CONFIG allows, not the default half hour, keeps
# the runs short.
PANIC_TRACK_S = 60
EXIT_INTERRUPTED = 130
APP_CRASH_LINE = "vigil: crash:"  # firmware/main.py, when the app raised
PROGRESS_EVERY_S = 30
DEVICE_ID = 4242
FIGURES = ("alarms_lost", "alarms_duplicated", "crashes", "counter_reuse")
COUNTS = ("presses", "alarms_raised", "alarms_acked", "resets", "power_cuts", "flash_cuts",
          "centre_restarts")


def run_seed(base_seed, index):
    """The seed of run `index`: spread, so neighbouring runs share nothing."""
    return random.Random("chaos|%d|%d" % (base_seed, index)).getrandbits(32)


def plan(seed):
    """The random scenario (a validated scenario dict) and the faults of one run."""
    rng = random.Random(seed)
    outages = []
    for _ in range(rng.randint(0, 2)):
        start = rng.uniform(0, CHAOS_S - 120)
        outages.append({"start_s": round(start, 3), "duration_s": round(rng.uniform(20, 120), 3)})
    presses = [{"at_s": round(rng.uniform(30, CHAOS_S - 60), 3),
                "hold_ms": rng.randint(2000, 3500)} for _ in range(rng.randint(1, 3))]
    data = {
        "scenario": {"name": "chaos", "duration_s": RUN_S, "seed": seed},
        "centre": {"operator_ack_delay_s": round(rng.uniform(0, 20), 3)},
        "link": {"loss": round(rng.uniform(0, 0.4), 3),
                 "duplicate": round(rng.uniform(0, 0.2), 3),
                 "reorder": round(rng.uniform(0, 0.2), 3),
                 "corrupt": round(rng.uniform(0, 0.05), 3),
                 "latency_ms": rng.randint(20, 500), "jitter_ms": rng.randint(0, 500),
                 "outages": outages},
        "device": [{"id": DEVICE_ID, "location": [52.0907, 5.1214], "button": presses,
                    "config": {"panic_track_s": PANIC_TRACK_S}}],
    }
    faults = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(("reset", "power_cut", "flash_cut", "centre_restart"))
        t_s = rng.uniform(10, CHAOS_S - 30)
        if kind == "power_cut":
            faults.append((t_s, kind, rng.uniform(1, 20)))
        elif kind == "flash_cut":
            faults.append((t_s, kind, rng.randint(0, 15)))
        else:
            faults.append((t_s, kind, None))
    faults.sort()
    return scenario.validate(data, "chaos-%d" % seed), faults


_FIRMWARE_FILES = {}  # "files" -> device_files(REPO), read once per process
_IMAGES = {}  # sha256 of the files -> the formatted image holding them, built once


def firmware_files():
    """The firmware as deployed (boot.py, main.py, lib/), read from the tree once."""
    files = _FIRMWARE_FILES.get("files")
    if files is None:
        files = _FIRMWARE_FILES["files"] = deploy.device_files(REPO)
    return files


def _files_digest(files):
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(b"%d:%s:%d:" % (len(path), path.encode(), len(files[path])))
        digest.update(files[path])
    return digest.digest()


def _with_file(image, path, data):
    """A copy of `image` with one more file written, through littlefs as a board would."""
    fs = board_littlefs(UserContext(buffer=bytearray(image)), mount=False)
    fs.mount()
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)
    fs.unmount()
    return bytes(fs.context.buffer)


@contextlib.contextmanager
def cached_images():
    """While it is in force, deploy.build_image builds the image of everything but the device
    key once per process, and gives each run a copy with its key written in: formatting 2 MiB
    and writing 200 KB of firmware through littlefs was a tenth of a run."""
    real = deploy.build_image

    def build_image(files, **geometry):
        if geometry or KEY_PATH not in files:
            return real(files, **geometry)
        base = {path: data for path, data in files.items() if path != KEY_PATH}
        digest = _files_digest(base)
        image = _IMAGES.get(digest)
        if image is None:
            _IMAGES.clear()  # one firmware per campaign; a test's variant replaces it
            image = _IMAGES[digest] = real(base)
        return _with_file(image, KEY_PATH, bytes(files[KEY_PATH]))

    deploy.build_image = build_image
    try:
        yield
    finally:
        deploy.build_image = real


class Chaos:
    """One run: a ScenarioRun with taps on both directions and the faults scheduled."""

    def __init__(self, seed, workdir):
        self.seed = seed
        sc, self.faults = plan(seed)
        with cached_images():
            self.sim = emulate.ScenarioRun(sc, firmware_files=firmware_files())
        self.dev = self.sim.devices[DEVICE_ID]
        self.evidence_path = os.path.join(workdir, "evidence-%d.sqlite" % seed)
        self.centres = []
        self._restart_centre(record=False)  # the first centre, on a file so it can restart
        self.up_bytes = []
        self.down_frames = []
        self.counts = dict.fromkeys(COUNTS, 0)
        self.counts["presses"] = len(sc["device"][0]["button"])
        write = self.dev.link.on_device_write
        self.dev.link.on_device_write = lambda data: (self.up_bytes.append(bytes(data)),
                                                      write(data))[1]
        send_down = self.dev.link.send_downlink
        self.dev.link.send_downlink = lambda data: (self.down_frames.append(bytes(data)),
                                                    send_down(data))[1]
        world = self.sim.world
        for t_s, kind, arg in self.faults:
            world.at(t_s * 1000, getattr(self, "_" + kind), arg)
        world.at(CHAOS_S * 1000, self._heal)

    # --- faults ------------------------------------------------------------------------------
    def _restart_centre(self, record=True):
        old = self.sim.centre
        old.close()
        if record:
            self.centres.append(old)
            self.counts["centre_restarts"] += 1
        # Its downlinks, operator-ack timers and proximity state were in the process's memory;
        # the replay windows and delivered counters are in the evidence file.
        self.sim.centre = Centre(old.keys, old.config, evidence=self.evidence_path)
        self.sim._centre_tick_at = None
        self.sim._schedule_centre()

    def _centre_restart(self, _arg):
        self._restart_centre()

    def _reset(self, _arg):
        # The EN button: the same reset path as a watchdog or machine.reset().
        if self.dev.state != "off":
            self.counts["resets"] += 1
            self.dev._interrupt_with(DeviceReset(HARD_RESET, why="reset button"))

    def _power_cut(self, off_s):
        self.counts["power_cuts"] += 1
        self.dev.power_cut()
        self.sim.world.after(off_s * 1000, self.dev.power_on)

    def _flash_cut(self, writes):
        self.counts["flash_cuts"] += 1
        self.dev.cut_power_after_flash_writes(writes)
        # Power comes back 10 s after the cut, whenever the cut happens.
        self.sim.world.after(10_000, self._power_back)

    def _power_back(self):
        if self.dev.flash.context.progs_left is not None and not self.dev.flash.context.cut:
            self.sim.world.after(10_000, self._power_back)  # not cut yet: look again later
            return
        self.dev.power_on()

    def _heal(self):
        link = self.dev.link
        link.loss = link.duplicate = link.reorder = link.corrupt = 0.0
        link.outages = []
        self.dev.flash.clear_fault()
        self.dev.power_on()

    # --- the run -----------------------------------------------------------------------------
    def run(self, stop=None):
        """Run to the end; with `stop`, asked every minute of virtual time, a True answer
        ends the run with emulate.Interrupted (a KeyboardInterrupt) at a point where no
        firmware thread holds the baton, so the run closes cleanly."""
        self.sim.run(stop=stop)
        self.centres.append(self.sim.centre)
        return self.result()

    def result(self):
        raised = self.sim._device_alarms()  # (device, alarm id) -> (t_ms, kind, counter)
        shown = {}
        acked = set()
        for centre in self.centres:
            for event in centre.events:
                if event.kind == "alarm_raised":
                    key = (event.device_id, event.detail["alarm_id"],
                           event.detail["raised_time_ms"])
                    shown[key] = shown.get(key, 0) + 1
                elif event.kind == "alarm_ack_delivered":
                    acked.add((event.device_id, event.detail["alarm_id"]))
        heard = {(d, a) for d, a, _t in shown}
        lost = [key for key in raised if key not in heard]
        crashes = self._crashes()
        out = dict(self.counts)
        out.update({
            "seed": self.seed,
            "alarms_raised": len(raised),
            "alarms_acked": sum(1 for key in raised if key in acked),
            "alarms_lost": len(lost),
            "alarms_duplicated": sum(n - 1 for n in shown.values()),
            "crashes": len(crashes),
            "crash_lines": crashes[:3],
            "counter_reuse": self._counter_reuse(),
        })
        return out

    def _crashes(self):
        """One line per crash: exceptions that reached the REPL, exceptions main.py's
        catch-all logged before it reset the board (the app died all the same: a press in
        the next second of boot is not heard), and faults that stop the firmware (out of
        heap, stuck in the ROM; "repl" is the REPL an uncaught exception already counts)."""
        lines = [line for _t, line in self.dev.crashes]
        lines += [line for _t, line in self.dev.log if line.startswith(APP_CRASH_LINE)]
        lines += ["%s: %s" % (kind, detail) for _t, kind, detail in self.dev.faults
                  if kind != "repl"]
        return lines

    def _counter_reuse(self):
        keyring = codec.Keyring()
        keyring.add(DEVICE_ID, emulate.KEY_ID, emulate.device_key(self.seed, DEVICE_ID))
        reused = 0
        for downlink, chunks in ((False, self.up_bytes), (True, self.down_frames)):
            receiver = codec.Receiver(keyring, downlink=downlink, check_replay=False)
            seen = {}
            for data in chunks:
                for item in receiver.feed(data):
                    if not isinstance(item, codec.Frame):
                        continue
                    content = (item.name, repr(sorted(item.fields.items())))
                    if seen.setdefault(item.counter, content) != content:
                        reused += 1
                        seen[item.counter] = content
        return reused

    def close(self):
        self.sim.close()  # closes the current centre; earlier ones were closed at restart


def one(args, stop=None):
    """Run one seed in a worker; never raises but emulate.Interrupted when `stop` says so (a
    harness failure is a crash of that run)."""
    seed, workdir = args
    chaos = None
    try:
        with emulate.one_core():
            chaos = Chaos(seed, workdir)
            return chaos.run(stop)
    except Exception as e:  # noqa: BLE001 - counted and reported, the campaign goes on
        out = dict.fromkeys(COUNTS + FIGURES, 0)
        out.update({"seed": seed, "crashes": 1, "crash_lines": [
            "harness: %s: %s" % (type(e).__name__, str(e)[:200])]})
        return out
    finally:
        if chaos is not None:
            chaos.close()
        try:
            os.unlink(os.path.join(workdir, "evidence-%d.sqlite" % seed))
        except OSError:
            pass


def _add(result, totals, failures, out):
    for key in COUNTS + FIGURES:
        totals[key] += result[key]
    if any(result[key] for key in FIGURES):
        failures.append({k: result[k] for k in ("seed",) + FIGURES + ("crash_lines",)})
        print("run seed %d: %s %s" % (result["seed"], ", ".join(
            "%s %d" % (k, result[k]) for k in FIGURES if result[k]),
            "; ".join(result["crash_lines"])), file=out, flush=True)


def _workdir():
    """Where the runs' evidence files go: a RAM disk when there is one (a centre restart
    reopens the file either way; an fsync would only measure the disk)."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return tempfile.mkdtemp(prefix="vigil-chaos-", dir=shm)
    return tempfile.mkdtemp(prefix="vigil-chaos-")


@contextlib.contextmanager
def _ctrl_c():
    """The first Ctrl-C asks the campaign to stop (the answer: stop() is True); it is looked
    at between runs and every minute of a run's virtual time, never inside the scheduler,
    where a KeyboardInterrupt could leave a firmware thread holding the baton. A second
    Ctrl-C interrupts at once. The handler is installed even when the shell started us with
    SIGINT ignored (a background job), so Ctrl-C or kill -INT always reaches the campaign."""
    pressed = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def on_sigint(_signum, _frame):
        pressed.append(True)
        if len(pressed) > 1:
            raise KeyboardInterrupt
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def _results(jobs, workers, stop):
    """Yield each run's result as it finishes, until the jobs are done or stop() is True."""
    if workers <= 1:
        for job in jobs:
            if stop():
                return
            try:
                yield one(job, stop)
            except emulate.Interrupted:
                return  # the run in flight stopped part-way: not a result
        return
    # Workers ignore Ctrl-C: the parent stops the campaign and reports what finished.
    pool = multiprocessing.get_context("fork").Pool(
        workers, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN),
        maxtasksperchild=500)
    try:
        # chunksize 1: a larger one hides the iterator (and its next(timeout)) behind a
        # generator; a run is a tenth of a second, so the handover costs nothing
        results = pool.imap_unordered(one, jobs)
        remaining = len(jobs)
        while remaining and not stop():
            try:
                result = results.next(timeout=0.2)  # wake up to look at stop()
            except multiprocessing.TimeoutError:
                continue
            remaining -= 1
            yield result
        if remaining:
            pool.terminate()  # the runs in flight are dropped, not counted
        else:
            pool.close()
    finally:
        pool.terminate()
        pool.join()


def campaign(runs, base_seed, workers, out=None, only=None):
    """Run the campaign; Ctrl-C stops it and the summary covers the runs that finished
    (`interrupted` true). Progress and failures go to `out` (stdout)."""
    out = sys.stdout if out is None else out
    seeds = [only] if only is not None else [run_seed(base_seed, i) for i in range(runs)]
    workdir = _workdir()
    totals = dict.fromkeys(COUNTS + FIGURES, 0)
    failures = []
    started = time.perf_counter()
    last_progress = started
    done = 0
    step = max(1, len(seeds) // 10)
    with _ctrl_c() as stop:
        try:
            jobs = [(seed, workdir) for seed in seeds]
            for result in _results(jobs, workers, stop):
                done += 1
                _add(result, totals, failures, out)
                now = time.perf_counter()
                if done % step == 0 or done == len(seeds) or now - last_progress >= \
                        PROGRESS_EVERY_S:
                    last_progress = now
                    print("%d/%d runs, %.0f s, %.2f runs/s" % (
                        done, len(seeds), now - started, done / (now - started)), file=out,
                        flush=True)
        except KeyboardInterrupt:  # a second Ctrl-C
            pass
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        interrupted = done < len(seeds)
        if interrupted:
            print("interrupted after %d runs" % done, file=out, flush=True)
    wall_s = time.perf_counter() - started
    # CPU seconds of this process and its (joined) workers: on a shared machine the wall time
    # says more about the neighbours than about the campaign.
    cpu_s = sum(getattr(resource.getrusage(who), field) for who in (
        resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for field in ("ru_utime", "ru_stime"))
    summary = {"runs": done, "seed": base_seed, "workers": workers, "interrupted": interrupted,
               "run_virtual_s": RUN_S, **totals, "wall_s": round(wall_s, 1),
               "runs_per_s": round(done / wall_s, 3), "cpu_s": round(cpu_s, 1),
               "cpu_s_per_run": round(cpu_s / max(1, done), 3),
               "failing_seeds": [f["seed"] for f in failures][:50]}
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="number of runs (10000)")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (1)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes (2)")
    parser.add_argument("--only", type=int, metavar="SEED", help="replay one run's seed")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.workers < 1:
        parser.error("--runs and --workers must be >= 1")
    summary = campaign(args.runs, args.seed, args.workers, only=args.only)
    print(json.dumps(summary, sort_keys=True), flush=True)
    if any(summary[k] for k in FIGURES):
        return 1
    return EXIT_INTERRUPTED if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
