"""`vigil emulate` and `vigil scenarios`, through host.cli.main and as a subprocess: the text
summary, --json, --trace, --seed, and one-line errors (exit 2, no traceback) for bad input."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from host import cli, emulate, scenario
from tests.scenario_text import SHORT_PANIC as SHORT

REPO = Path(__file__).resolve().parent.parent
ISSUE_KEYS = {"scenario", "seed", "virtual_s", "wall_s", "frames_up", "frames_down",
              "alarms_raised", "alarms_acked", "alarms_lost", "panic_to_ack_ms",
              "proximity_warn_latency_ms", "energy_mah", "avg_current_ma", "floor_ratio",
              "projected_battery_days", "trace_sha256"}


@pytest.fixture
def short(tmp_path):
    path = tmp_path / "short-panic.toml"
    path.write_text(SHORT)
    return path


def vigil(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *names):
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])


# --- vigil emulate ---------------------------------------------------------------------------
def test_text_summary_has_timeline_alarms_latency_energy_and_hash(capsys, short):
    code, out, err = vigil(capsys, "emulate", short)
    assert code == 0, err
    assert out.startswith("scenario short-panic (seed 21): 00:10:00 of virtual time")
    assert "timeline:" in out
    assert "device 77 raised alarm 1 (panic)" in out
    assert "centre: operator acked alarm 1 of device 77" in out
    assert "alarms: 1 raised, 1 acked, 0 lost" in out
    assert "panic to transport ack: p50 " in out
    assert "energy: " in out and "mAh" in out
    digest = [line for line in out.splitlines() if line.startswith("trace sha256: ")]
    assert len(digest) == 1 and len(digest[0].split()[-1]) == 64
    assert err == "", "no progress bar unless stderr is a terminal"


def test_json_is_one_object_with_every_issue_key(capsys, short):
    code, out, err = vigil(capsys, "emulate", short, "--json", "--seed", "5")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    summary = json.loads(out)
    assert ISSUE_KEYS <= set(summary), ISSUE_KEYS - set(summary)
    assert summary["scenario"] == "short-panic"
    assert summary["seed"] == 5
    assert summary["virtual_s"] == 600
    assert summary["alarms_raised"] == 1 and summary["alarms_lost"] == 0
    for key in ("panic_to_ack_ms", "proximity_warn_latency_ms"):
        assert {"p50", "p95", "max"} <= set(summary[key])
    assert 0 < summary["panic_to_ack_ms"]["p95"] <= 2000


def test_seed_changes_the_run_and_the_same_seed_repeats_it(capsys, short):
    hashes = []
    for seed in (5, 6, 5):
        code, out, _err = vigil(capsys, "emulate", short, "--json", "--seed", seed)
        assert code == 0
        hashes.append(json.loads(out)["trace_sha256"])
    assert hashes[0] == hashes[2] != hashes[1]


def test_trace_file_is_json_lines_hashing_to_trace_sha256(capsys, short, tmp_path):
    trace = tmp_path / "out" / "trace.jsonl"
    trace.parent.mkdir()
    code, out, err = vigil(capsys, "emulate", short, "--json", "--trace", trace)
    assert code == 0, err
    summary = json.loads(out)
    data = trace.read_bytes()
    assert hashlib.sha256(data).hexdigest() == summary["trace_sha256"]
    kinds = {json.loads(line)["kind"] for line in data.decode().splitlines()}
    assert {"boot", "button", "uplink", "downlink", "centre.alarm_raised"} <= kinds


def test_progress_reports_virtual_time_up_to_the_end():
    seen = []
    emulate.run(scenario.parse(SHORT), progress=lambda fraction, now_ms: seen.append(
        (fraction, now_ms)))
    assert len(seen) == 100
    assert seen[-1] == (1.0, 600_000)
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


@pytest.mark.parametrize("argv, names", [
    (["emulate", "no-such-scenario"], ["no-such-scenario", "no such built-in"]),
    (["emulate", "missing/nope.toml"], ["missing/nope.toml", "cannot read"]),
])
def test_bad_scenario_name_or_path_is_one_line(capsys, argv, names):
    assert_one_line_error(*vigil(capsys, *argv), *names)


@pytest.mark.parametrize("edit, names", [
    (SHORT.replace("duration_s = 600", "duration_s = -5"), ["scenario.duration_s", ">= 1"]),
    (SHORT.replace("hold_ms = 2000", "hold_ms = 'long'"), ["device[0].button[0].hold_ms"]),
    (SHORT + "\n[link]\nloss = 2\n", ["link.loss"]),
    (SHORT.replace("[scenario]", "[scenario"), ["not valid TOML"]),
    (SHORT + "\nwheels = 4\n", ["device[0].wheels", "unknown field"]),
])
def test_bad_scenario_file_is_one_line_naming_file_and_field(capsys, tmp_path, edit, names):
    path = tmp_path / "bad.toml"
    path.write_text(edit)
    assert_one_line_error(*vigil(capsys, "emulate", path), path, *names)


def test_binary_scenario_file_is_one_line(capsys, tmp_path):
    path = tmp_path / "blob.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert_one_line_error(*vigil(capsys, "emulate", path), path, "UTF-8")


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range_is_one_line(capsys, short, seed):
    assert_one_line_error(*vigil(capsys, "emulate", short, "--seed", seed), "--seed", seed)


def test_seed_that_is_not_a_number_is_a_usage_error(capsys, short):
    with pytest.raises(SystemExit) as info:
        cli.main(["emulate", str(short), "--seed", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "abc" in err and "Traceback" not in err


def test_unwritable_trace_is_one_line_and_runs_nothing(capsys, short, tmp_path):
    trace = tmp_path / "no-such-dir" / "trace.jsonl"
    assert_one_line_error(*vigil(capsys, "emulate", short, "--trace", trace), trace)
    assert not trace.exists()


def test_emulate_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["emulate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--seed", "--json", "--trace"):
        assert option in out


# --- vigil scenarios, vigil --help, unknown commands -----------------------------------------
def test_scenarios_lists_every_builtin_with_duration_and_description(capsys):
    code, out, _err = vigil(capsys, "scenarios")
    assert code == 0
    lines = out.strip().splitlines()
    names = scenario.builtin_names()
    assert [line.split()[0] for line in lines] == names
    assert {"quiet-day", "commute", "panic-walk", "offender-approach", "lossy-link",
            "low-battery", "indoor-no-fix"} <= set(names)
    quiet = next(line for line in lines if line.startswith("quiet-day "))
    assert "24.0 h" in quiet and scenario.load("quiet-day")["scenario"]["description"] in quiet


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"], ["help"]])
def test_vigil_help_lists_the_commands(capsys, argv):
    code, out, err = vigil(capsys, *argv)
    # `vigil` alone is a usage error: the help goes to stderr and the exit code is 2.
    assert code == (2 if not argv else 0)
    text = err if not argv else out
    assert (out if not argv else err) == ""
    assert text.startswith("usage: vigil [--version] COMMAND")
    for command in ("emulate", "scenarios", "centre", "decode", "keys"):
        assert "\n  %s " % command in text


def test_unknown_command_is_one_line(capsys):
    assert_one_line_error(*vigil(capsys, "emulat"), "emulat", "unknown command")


# --- as a subprocess -------------------------------------------------------------------------
def run_vigil(*argv):
    return subprocess.run([sys.executable, "-m", "host.cli", *map(str, argv)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_subprocess_json_of_a_builtin():
    done = run_vigil("emulate", "silent-device", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (line,) = done.stdout.strip().splitlines()
    summary = json.loads(line)
    assert summary["scenario"] == "silent-device" and ISSUE_KEYS <= set(summary)
    assert summary["crashes"] == 0


def test_subprocess_text_summary(short):
    done = run_vigil("emulate", short, "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("scenario short-panic (seed 3)")
    assert "alarms: 1 raised, 1 acked, 0 lost" in done.stdout


@pytest.mark.parametrize("argv, names", [
    (["emulate", "nope"], ["nope"]),
    (["emulate", "--seed", "-3", "quiet-day"], ["--seed"]),
    (["frobnicate"], ["frobnicate"]),
])
def test_subprocess_bad_input_is_exit_2_with_one_line(argv, names):
    done = run_vigil(*argv)
    assert_one_line_error(done.returncode, done.stdout, done.stderr, *names)


def test_subprocess_scenarios_and_help():
    done = run_vigil("scenarios")
    assert done.returncode == 0
    assert [line.split()[0] for line in done.stdout.strip().splitlines()] == \
        scenario.builtin_names()
    done = run_vigil("--help")
    assert done.returncode == 0 and "emulate" in done.stdout


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux CPU affinity and at least 2 CPUs")
def test_a_run_keeps_its_threads_on_one_core_and_restores_the_affinity():
    before = os.sched_getaffinity(0)
    seen = []
    with emulate.one_core():
        seen.append(os.sched_getaffinity(0))
        sim = emulate.ScenarioRun(scenario.parse(SHORT))
        try:
            sim.world.run_until(1000)  # the firmware thread has started and waits
            (dev,) = sim.devices.values()
            seen.append(os.sched_getaffinity(dev._thread.native_id))
        finally:
            sim.close()
    assert seen[0] == seen[1] and len(seen[0]) == 1 and seen[0] <= before
    assert os.sched_getaffinity(0) == before
