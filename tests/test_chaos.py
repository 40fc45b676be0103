"""bench/chaos.py: a tiny campaign runs clean, exercises every fault, and its figures can fail
(an alarm the centre drops is lost, a counter sealed twice is reuse, a centre that forgets
what it showed the operator shows an alarm twice)."""
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import chaos  # noqa: E402

from host.centre import centre as centre_module  # noqa: E402
from host.emulator.flash import Flash  # noqa: E402
from protocol import codec  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "chaos.py"), "--runs", "20",
                           "--seed", "3"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    return done


def test_tiny_campaign_last_line_is_json_with_zero_failures(tiny):
    assert tiny.stderr == "" or "Traceback" not in tiny.stderr, tiny.stderr
    summary = json.loads(tiny.stdout.strip().splitlines()[-1])
    assert summary["runs"] == 20
    for key in ("alarms_lost", "alarms_duplicated", "crashes", "counter_reuse"):
        assert summary[key] == 0, (key, tiny.stdout)
    assert tiny.returncode == 0


def test_tiny_campaign_exercises_every_fault(tiny):
    summary = json.loads(tiny.stdout.strip().splitlines()[-1])
    assert summary["presses"] >= 20 and summary["alarms_raised"] >= 10
    for key in ("resets", "power_cuts", "flash_cuts", "centre_restarts"):
        assert summary[key] > 0, (key, summary)


def test_runs_are_reproducible_by_seed():
    seed = chaos.run_seed(3, 0)
    first = chaos.one((seed, tempfile.mkdtemp()))
    again = chaos.one((seed, tempfile.mkdtemp()))
    assert first == again
    assert chaos.plan(seed)[1] == chaos.plan(seed)[1]
    assert chaos.run_seed(3, 0) != chaos.run_seed(3, 1) != chaos.run_seed(4, 0)


def _seed_with(predicate):
    for index in range(3000):
        seed = chaos.run_seed(99, index)
        if predicate(*chaos.plan(seed)):
            return seed
    raise AssertionError("no plan matched")


def test_an_alarm_the_centre_drops_counts_as_lost(monkeypatch):
    seed = _seed_with(lambda sc, faults: not faults)
    monkeypatch.setitem(centre_module._HANDLERS, "ALARM", lambda self, device, frame, now_ms: None)
    result = chaos.one((seed, tempfile.mkdtemp()))
    assert result["alarms_raised"] >= 1
    assert result["alarms_lost"] == result["alarms_raised"]


def test_a_restarted_centre_that_shows_an_alarm_again_counts_as_duplicated(monkeypatch):
    seed = _seed_with(lambda sc, faults: faults and {k for _t, k, _a in faults} == {
        "centre_restart"} and min(p["at_s"] for p in sc["device"][0]["button"]) + 60 <
        faults[0][0] and sc["link"]["loss"] < 0.2)
    original = chaos.Chaos._restart_centre

    def restart_and_replay(self, record=True):
        old = self.sim.centre
        original(self, record)
        if record:  # the new centre is told of every alarm the old one had: shown again
            for alarm in old.alarm_history:
                self.sim.centre._event(self.sim.utc_ms(), "alarm_raised", alarm.device_id,
                                       alarm_id=alarm.alarm_id, kind="panic",
                                       raised_time_ms=alarm.raised_time_ms, historic=False)
    monkeypatch.setattr(chaos.Chaos, "_restart_centre", restart_and_replay)
    result = chaos.one((seed, tempfile.mkdtemp()))
    assert result["alarms_duplicated"] >= 1


def test_a_counter_sealed_twice_counts_as_reuse():
    seed = chaos.run_seed(5, 0)
    run = chaos.Chaos(seed, tempfile.mkdtemp())
    try:
        key = chaos.emulate.device_key(seed, chaos.DEVICE_ID)
        sender = codec.Sender(chaos.DEVICE_ID, chaos.emulate.KEY_ID, key)
        run.up_bytes.append(sender.seal("EVENT", {"kind": 1, "time_ms": 5, "value": 0},
                                        counter=7))
        assert run._counter_reuse() == 0
        run.up_bytes.append(sender.seal("EVENT", {"kind": 1, "time_ms": 5, "value": 0},
                                        counter=7))
        assert run._counter_reuse() == 0, "the same message again is a retransmission"
        run.up_bytes.append(sender.seal("EVENT", {"kind": 2, "time_ms": 6, "value": 0},
                                        counter=7))
        assert run._counter_reuse() == 1
    finally:
        run.close()


def test_a_restarted_centre_never_reuses_a_downlink_counter():
    """Found by the campaign: ACK counters were not logged, so a restarted centre sealed new
    downlinks under counters its ACKs had used."""
    seed = _seed_with(lambda sc, faults: [k for _t, k, _a in faults] == ["centre_restart"])
    result = chaos.one((seed, tempfile.mkdtemp()))
    assert result["centre_restarts"] == 1 and result["counter_reuse"] == 0


# --- issue 8, the campaign's speed and stop ---------------------------------------------
def test_a_centre_that_drops_only_the_first_alarm_fails_the_campaign(monkeypatch, capsys):
    """The checks see one alarm lost out of several, through the campaign's own summary,
    failure line and exit status."""
    seed = _seed_with(lambda sc, faults: not faults and len(sc["device"][0]["button"]) >= 2)
    real = centre_module._HANDLERS["ALARM"]
    dropped = []

    def drop_first(self, device, frame, now_ms):
        key = (device.device_id, frame.fields["alarm_id"], frame.fields["raised_time_ms"])
        if not dropped:
            dropped.append(key)
        if key == dropped[0]:
            return None  # never shown, never acked: the device keeps retrying in vain
        return real(self, device, frame, now_ms)
    monkeypatch.setitem(centre_module._HANDLERS, "ALARM", drop_first)
    assert chaos.main(["--only", str(seed), "--workers", "1"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["runs"] == 1 and summary["alarms_lost"] == 1, summary
    assert summary["failing_seeds"] == [seed]
    assert any(line.startswith("run seed %d: alarms_lost 1" % seed) for line in out), out


def test_an_app_crash_that_main_catches_counts_as_a_crash(monkeypatch):
    """main.py's catch-all logs the crash and resets: the board lives on, the app died."""
    files = dict(chaos.firmware_files())
    alarm = files["/lib/firmware/alarm.py"]
    hook = b"def raise_panic(c, now, out):\n"
    assert alarm.count(hook) == 1
    files["/lib/firmware/alarm.py"] = alarm.replace(
        hook, hook + b"    raise ValueError('chaos test: a bug in the panic path')\n")
    monkeypatch.setattr(chaos, "firmware_files", lambda: files)
    seed = _seed_with(lambda sc, faults: not faults)
    result = chaos.one((seed, tempfile.mkdtemp()))
    assert result["crashes"] >= 1
    assert any("chaos test" in line for line in result["crash_lines"]), result
    assert result["alarms_raised"] == 0  # the bug sits before the alarm is stored


def test_each_run_boots_the_whole_firmware_and_its_own_key_from_the_cached_image():
    from host.provision import KEY_PATH

    seeds = (chaos.run_seed(8, 0), chaos.run_seed(8, 1))
    keys = []
    for seed in seeds:
        run = chaos.Chaos(seed, tempfile.mkdtemp())
        try:
            flash = Flash(run.dev.flash.image)  # what the board will mount at its first boot
            flash.mount()
            for path, data in chaos.firmware_files().items():
                assert flash.read_file(path) == data, path
            keys.append(flash.read_file(KEY_PATH))
            assert keys[-1] == chaos.emulate.device_key_file_bytes(
                chaos.DEVICE_ID, {chaos.emulate.KEY_ID: chaos.emulate.device_key(
                    seed, chaos.DEVICE_ID)})
        finally:
            run.close()
    assert keys[0] != keys[1]


def _progress_then_sigint(workers, runs):
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "chaos.py"), "--runs",
                             str(runs), "--workers", str(workers), "--seed", "11"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline()]
        while "runs/s" not in lines[-1]:  # the first progress line: runs have finished
            assert lines[-1], "chaos.py ended before any progress"
            lines.append(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return lines + rest.splitlines(), err, proc.returncode


@pytest.mark.parametrize("workers,runs", [(1, 60), (2, 200)])
def test_ctrl_c_stops_the_campaign_with_a_summary_of_the_runs_so_far(workers, runs):
    lines, err, code = _progress_then_sigint(workers, runs)
    assert "Traceback" not in err, err
    assert code == chaos.EXIT_INTERRUPTED, (code, lines, err)
    summary = json.loads(lines[-1])
    assert summary["interrupted"] is True
    assert runs // 10 <= summary["runs"] < runs, summary
    assert summary["alarms_lost"] == summary["crashes"] == 0, summary
    assert any(line.startswith("interrupted after %d runs" % summary["runs"]) for line in lines)
