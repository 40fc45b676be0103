"""The HIL plugin, run as QA runs it, on a test that fails: next to the JUnit file it leaves
the failing test's traffic as pcapng (readable by `vigil decode`), its traffic.jsonl, console
log and session report."""
import json
import subprocess
import sys

from host.recording import read_all
from tests.vm import REPO

FAILING = '''
def test_an_alarm_that_never_comes(dut):
    dut.press_button(2500)
    dut.wait(10_000)
    assert False, "on purpose"
'''


def test_a_failing_hil_test_leaves_a_pcapng_next_to_the_junit_file(tmp_path):
    (tmp_path / "test_fails.py").write_text(FAILING)
    report = tmp_path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(tmp_path / "test_fails.py"), "--vigil-board=emu", "--vigil-report=" + str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert (report / "junit.xml").exists()
    (folder,) = [p for p in report.iterdir() if p.is_dir()]
    assert {"traffic.pcapng", "traffic.jsonl", "console.log", "report.html"} <= {
        p.name for p in folder.iterdir()}
    reader, packets = read_all(str(folder / "traffic.pcapng"))
    assert reader.error is None and reader.meta["source"] == "hil"
    assert {p.direction for p in packets} == {"up", "down"}
    # the same uplinks traffic.jsonl decoded, as wire frames
    rows = [json.loads(line) for line in (folder / "traffic.jsonl").read_text().splitlines()]
    assert sum(p.direction == "up" for p in packets) >= sum(
        r["dir"] == "up" for r in rows) > 0
