"""Regression tests for the CLI failures of issue 8, each through the real `vigil` process
where the failure was about the process (signals, closed streams, /dev/full), in-process
otherwise: one line on stderr, the right exit code, never a traceback."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host import cli
from tests.scenario_text import SHORT_PANIC as SHORT

REPO = Path(__file__).resolve().parent.parent
# Thirty virtual days: far longer than any test waits, so Ctrl-C always lands mid-run.
LONG = SHORT.replace("duration_s = 600", "duration_s = 2592000").replace('"short-panic"', '"long"')


@pytest.fixture
def short(tmp_path):
    path = tmp_path / "short.toml"
    path.write_text(SHORT)
    return path


def run_vigil(*argv, shell_redirect="", timeout=120, **kw):
    """`python -m host.cli ARGV` as a process; shell_redirect (e.g. ">&-") closes a stream
    before Python starts, as a user's shell would."""
    command = " ".join([_quote(sys.executable), "-m", "host.cli"] +
                       [_quote(str(a)) for a in argv]) + " " + shell_redirect
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(["/bin/sh", "-c", command], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, **kw)


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def assert_one_line(done, code, *names):
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])


# --- vigil alone, --version ---------------------------------------------------------------
def test_vigil_alone_prints_help_and_exits_2():
    done = run_vigil()
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("usage: vigil") and "emulate" in done.stderr


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys, flag):
    assert cli.main([flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vigil ") and "protocol schema 0x" in out
    assert len(out.strip().splitlines()) == 1


# --- Ctrl-C during emulate ----------------------------------------------------------------
def test_ctrl_c_during_emulate_prints_interrupted_exits_130_and_keeps_a_valid_trace(tmp_path):
    scenario = tmp_path / "long.toml"
    scenario.write_text(LONG)
    trace = tmp_path / "trace.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "host.cli", "emulate", str(scenario),
                                "--trace", str(trace), "--json"], cwd=REPO,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not trace.exists():  # created (empty) once the scenario is loaded
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        time.sleep(1.0)  # well into the run: a 30-day run takes far longer
        assert process.poll() is None, "the run ended before the test pressed Ctrl-C"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err == "vigil emulate: interrupted\n"
    assert out == ""
    lines = trace.read_text().splitlines()
    assert lines, "the trace written so far is kept"
    events = [json.loads(line) for line in lines]  # every line is whole JSON
    times = [e["t_ms"] for e in events]
    assert times == sorted(times)
    assert {"boot", "uplink"} <= {e["kind"] for e in events}
    assert times[-1] < 2592000 * 1000, "stopped before the end"


# --- closed streams, /dev/full --------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--version"], ["scenarios"], ["emulate", "SHORT", "--json"],
                                  ["decode", "-"]])
def test_a_closed_stdout_is_one_line_exit_2(short, argv):
    argv = [str(short) if a == "SHORT" else a for a in argv]
    done = run_vigil(*argv, shell_redirect=">&-")
    assert_one_line(done, 2, "standard output is closed")


def test_a_closed_stdin_is_one_line_exit_2():
    done = run_vigil("decode", "-", shell_redirect="<&-")
    assert_one_line(done, 2, "standard input is closed")


def test_a_closed_stderr_still_exits_2_without_output():
    done = run_vigil("emulate", "no-such-scenario", shell_redirect="2>&-")
    assert done.returncode == 2 and done.stdout == ""


def test_a_reader_that_goes_away_is_one_line_exit_2():
    process = subprocess.Popen([sys.executable, "-m", "host.cli", "--help"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before vigil writes
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_trace_to_dev_full_is_one_line_exit_2(short):
    done = run_vigil("emulate", short, "--trace", "/dev/full")
    assert_one_line(done, 2, "--trace /dev/full", "No space left on device")
    assert done.stdout == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_keys_to_dev_full_is_one_line_exit_2(short, capsys):
    code = cli.main(["emulate", str(short), "--keys", "/dev/full/nope"])
    err = capsys.readouterr().err
    assert code == 2 and "--keys /dev/full/nope" in err and len(err.splitlines()) == 1


# --- files: missing, unreadable, a device, huge ------------------------------------------------
@pytest.mark.parametrize("path, names", [
    ("/no/such/file.toml", ["/no/such/file.toml", "cannot read"]),
    ("/proc/self/mem", ["/proc/self/mem", "cannot read"]),          # open works, read fails
    ("/dev/zero", ["/dev/zero", "larger than"]),                    # bounded, never 4 GB
    ("/", ["/", "cannot read"]),                                    # a directory
])
def test_unusable_scenario_files_are_one_line_exit_2(capsys, path, names):
    if path.startswith(("/proc", "/dev")) and not os.path.exists(path):
        pytest.skip("%s does not exist here" % path)
    code = cli.main(["emulate", path])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in names), lines


def test_a_huge_scenario_file_is_refused_in_bounded_memory(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(8 << 30)  # sparse: 8 GiB of zeros, which must never be read whole
    done = run_vigil("emulate", big)
    assert_one_line(done, 2, str(big), "larger than")


def test_a_key_file_on_dev_zero_is_one_line(capsys):
    code = cli.main(["keys", "list", "/dev/zero"])
    err = capsys.readouterr().err
    assert code == 2 and "larger than" in err and len(err.strip().splitlines()) == 1


# --- vigil centre flags -------------------------------------------------------------------------
@pytest.mark.parametrize("flags, names", [
    (["--heartbeat-s", "0"], ["--heartbeat-s", ">= 1"]),
    (["--heartbeat-s", "-900"], ["--heartbeat-s"]),
    (["--heartbeat-s", "nan"], ["--heartbeat-s"]),
    (["--operator-delay-s", "-1"], ["--operator-delay-s", ">= 0"]),
    (["--operator-delay-s", "nan"], ["--operator-delay-s", "finite"]),
    (["--operator-delay-s", "inf"], ["--operator-delay-s", "finite"]),
    (["--alarm-m", "2000"], ["--alarm-m 2000", "below --warning-m 1000"]),
    (["--alarm-m", "600", "--warning-m", "600"], ["--alarm-m", "below"]),
    (["--warning-m", "nan"], ["--warning-m", "finite"]),
    (["--warning-m", "-1"], ["--warning-m", "> 0"]),
    (["--alarm-m", "0"], ["--alarm-m", "> 0"]),
    (["--prealert-m", "-5"], ["--prealert-m"]),
    (["--warning-m", "1e400"], ["--warning-m", "finite"]),
    (["--heartbeat-s", "9223372036854775808"], ["--heartbeat-s", "<="]),
])
def test_bad_centre_flags_are_one_line_exit_2(tmp_path, capsys, flags, names):
    keys = tmp_path / "keys.json"
    keys.write_text("[]")
    argv = ["centre", "--listen", "tcp://127.0.0.1:0", "--keys", str(keys), *flags]
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err and "listening" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("vigil centre: ")
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_centre_flag_errors_through_the_process_are_one_line(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text("[]")
    done = run_vigil("centre", "--listen", "tcp://127.0.0.1:0", "--keys", keys,
                     "--heartbeat-s", "0")
    assert_one_line(done, 2, "--heartbeat-s")
