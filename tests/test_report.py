"""The session report (issue 14): `vigil report RUN -o report.html`, `vigil emulate --report`,
and host.report.write_report for the HIL plugin.

The numbers a reader sees must be the --json numbers of the same run; the page must be the
same bytes for the same seed, fetch nothing, and show a map, a timeline and power plots in a
real browser (headless Chromium from Debian, driven by Playwright)."""
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from host import cli, emulate
from host import scenario as scenarios
from host.report import ReportError, build_html, load, write_report
from host.report.figures import power_bins

REPO = Path(__file__).resolve().parent.parent
LATENCY_KEYS = ["panic_to_ack_ms", "proximity_warn_latency_ms",
                "proximity_observed_latency_ms", "downlink_wait_ms"]


def _run(tmp_path_factory, name, seed=None):
    out = tmp_path_factory.mktemp(name)
    trace, report = out / "run.jsonl", out / "report.html"
    summary, _timeline = emulate.run(scenarios.load(name), seed=seed, trace_path=str(trace),
                                     report_path=str(report))
    return summary, trace, report


@pytest.fixture(scope="module")
def approach(tmp_path_factory):
    return _run(tmp_path_factory, "offender-approach")


@pytest.fixture(scope="module")
def panic(tmp_path_factory):
    return _run(tmp_path_factory, "panic-walk")


def _embedded_summary(page):
    m = re.search(r'<script type="application/json" id="summary-json">(.*?)</script>', page, re.S)
    assert m, "the report has no summary-json block"
    return json.loads(m.group(1).replace("<\\/", "</"))


@pytest.mark.parametrize("which", ["approach", "panic"])
def test_report_numbers_equal_the_json_numbers(which, request):
    summary, trace, report = request.getfixturevalue(which)
    page = report.read_text()
    # wall_s varies by machine, and the runtime's heap figures by runtime: both are kept out
    # of the trace (whose hash must match across runtimes), so out of the report too.
    expected = {k: v for k, v in summary.items()
                if k not in ("wall_s", "runtime", "peak_heap_bytes")}
    assert _embedded_summary(page) == expected
    # The table a person reads: every key, and each latency's p50/p95/max as --json has them.
    rows = dict(re.findall(r'<tr data-key="([a-z_0-9]+)"><td><code>[^<]*</code></td>'
                           r'<td class="num">([^<]*)</td>', page))
    assert set(rows) == set(expected) | {"wall_s"}   # wall_s: a row with a note, no number
    assert rows["trace_sha256"] == summary["trace_sha256"]
    assert rows["frames_up"] == str(summary["frames_up"])
    for key in LATENCY_KEYS:
        stats = summary[key]
        hist = re.search(r'<div class="hist" id="hist-%s" data-key="%s" data-n="(\d+)" '
                         r'data-p50="([^"]*)" data-p95="([^"]*)" data-max="([^"]*)"' % (key, key),
                         page)
        assert hist, key
        assert hist.groups() == (str(stats["n"]), str(stats["p50"]), str(stats["p95"]),
                                 str(stats["max"]))
        if stats["n"]:
            assert "p50 %r" % stats["p50"] in html.unescape(rows[key])


def test_the_runs_measure_something(approach, panic):
    # Otherwise the equality above would compare empty figures.
    assert panic[0]["panic_to_ack_ms"]["n"] >= 1
    assert approach[0]["proximity_warn_latency_ms"]["n"] >= 1
    assert approach[0]["downlink_wait_ms"]["n"] > 10


def test_report_from_the_trace_file_equals_the_one_emulate_wrote(approach, tmp_path):
    _summary, trace, report = approach
    out = tmp_path / "again.html"
    assert cli.main(["report", str(trace), "-o", str(out)]) == 0
    assert out.read_bytes() == report.read_bytes()


def test_same_seed_same_bytes_other_seed_other_bytes(approach, tmp_path):
    summary, _trace, report = approach
    again = tmp_path / "again.html"
    assert cli.main(["emulate", "offender-approach", "--json", "--report", str(again)]) == 0
    assert again.read_bytes() == report.read_bytes()
    other = tmp_path / "other.html"
    emulate.run(scenarios.load("offender-approach"), seed=summary["seed"] + 1,
                report_path=str(other))
    assert other.read_bytes() != report.read_bytes()


def test_same_bytes_in_fresh_processes_whatever_the_hash_seed(approach, tmp_path):
    # Set order and matplotlib's ids must not leak into the page.
    _summary, trace, report = approach
    for hash_seed in ("1", "2"):
        out = tmp_path / ("hash%s.html" % hash_seed)
        done = subprocess.run([sys.executable, "-m", "host.cli", "report", str(trace), "-o",
                               str(out)], cwd=REPO, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PYTHONHASHSEED=hash_seed),
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == report.read_bytes()


def test_report_is_self_contained_and_small(approach):
    page = approach[2].read_text()
    assert len(page.encode()) < 3 * 1024 * 1024
    # No external resource at all: every URL in the page is an SVG namespace.
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", page)
    assert "<image" not in page
    assert "default-src 'none'" in page


def test_map_draws_tracks_fixes_rings_and_markers(approach):
    run = load(str(approach[1]))
    decisions = run.events("centre.proximity")
    assert decisions, "offender-approach makes proximity decisions"
    page = approach[2].read_text()
    counts = re.search(r'id="map-counts" data-tracks="(\d+)" data-fixes="(\d+)" '
                       r'data-rings="(\d+)" data-markers="(\d+)"', page).groups()
    tracks, fixes, rings, markers = map(int, counts)
    assert tracks == 3  # victim route, offender route, offender's tag reports
    assert fixes > 10
    assert rings == 2 * len(decisions)  # a warning and an alarm ring per decision
    warned = [d for d in decisions if d["detail"]["level"] in ("warning", "alarm", "uncertain")]
    assert markers == len(warned)
    assert page.count('class="ring ring-warning"') == len(decisions)


def test_power_bins_add_up_to_the_runs_energy(approach):
    summary, trace, _report = approach
    run = load(str(trace))
    (device, power), = run.power.items()
    edges, battery, current, states = power_bins(power, 90)
    mah = sum(ma * (b - a) / 3600 for values in current.values()
              for ma, a, b in zip(values, edges[:-1], edges[1:], strict=True))
    # The last sample is at the last whole minute; the run's energy is to the end.
    assert mah == pytest.approx(summary["energy_mah"], rel=0.02)
    assert battery[0] == 90 and battery[-1] < 90
    for i in range(len(edges) - 1):
        assert sum(s[i] for s in states.values()) == pytest.approx(1.0, abs=1e-4)
    assert "light_sleep" in states and "gnss" in current


def test_timeline_lanes_hold_the_runs_events(panic):
    page = panic[2].read_text()
    run = load(str(panic[1]))
    assert run.events("centre.alarm_raised")
    assert "device 1003 button held" in page
    assert "alarm raised" in page
    assert "operator acked alarm" in page
    assert "device 1003 boot" in page


def test_tiles_only_when_asked(approach):
    page = build_html(str(approach[1]), tiles="https://tiles.example/{z}/{x}/{y}.png")
    images = re.findall(r'<image class="tile" href="https://tiles\.example/(\d+)/(\d+)/(\d+)\.png"',
                        page)
    assert images and len(images) < 64
    assert "img-src data: https://tiles.example" in page
    with pytest.raises(ReportError, match="--tiles"):
        build_html(str(approach[1]), tiles="ftp://x/{z}/{x}/{y}")
    with pytest.raises(ReportError, match=r"\{z\}"):
        build_html(str(approach[1]), tiles="https://tiles.example/tile.png")


def test_write_report_takes_a_worlds_raw_trace(approach, tmp_path):
    """The HIL plugin's call: World.trace tuples, no run.* records."""
    run = load(str(approach[1]))
    raw = [(r["t_ms"], r["device"], r["kind"], r["detail"]) for r in run.records
           if not r["kind"].startswith("run.")]
    out = write_report(raw, tmp_path / "raw.html")
    page = out.read_text()
    summary = _embedded_summary(page)
    assert summary["frames_up"] == len(run.events("uplink"))
    assert summary["downlink_wait_ms"]["n"] == len(run.events("downlink"))
    assert "no run.route" in page and "no run.power" in page
    assert 'id="timeline-svg"' in page


def _vigil(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    code, err = _vigil(["report", str(tmp_path / "missing.jsonl"), "-o",
                        str(tmp_path / "r.html")], capsys)
    assert code == 2 and err.count("\n") == 1 and "missing.jsonl" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t_ms": 0, "kind": "boot"}\nnot json\n')
    code, err = _vigil(["report", str(bad), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and "line 2: not JSON" in err and "Traceback" not in err
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"time": 0}\n')
    code, err = _vigil(["report", str(wrong), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and "line 1: not a trace record" in err
    kind = tmp_path / "kind.jsonl"
    kind.write_text('{"t_ms": 0, "kind": 3}\n')
    code, err = _vigil(["report", str(kind), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and "kind must be a string" in err
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text('{"t_ms": 0, "kind": "run.fixes", "device": 1, '
                         '"detail": {"fixes": [[1, 2]]}}\n')
    code, err = _vigil(["report", str(malformed), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and err.count("\n") == 1 and "run.fixes record at t_ms 0" in err
    code, err = _vigil(["report", str(tmp_path / "x.pcapng")], capsys)
    assert code == 2 and "pcapng" in err
    good = tmp_path / "good.jsonl"
    good.write_text('{"t_ms": 0, "device": 1, "kind": "boot", "detail": "power_on"}\n')
    code, err = _vigil(["report", str(good), "-o", str(tmp_path / "no" / "dir.html")], capsys)
    assert code == 2 and err.count("\n") == 1 and "dir.html" in err
    code, err = _vigil(["emulate", "offender-approach", "--report",
                        str(tmp_path / "no" / "dir.html")], capsys)
    assert code == 2 and err.startswith("vigil emulate: --report")


# --- as a person would look: headless Chromium --------------------------------------------

def _browser_or_skip():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; CI does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return chromium, sync_playwright


def _coloured_pixels(png):
    from PIL import Image

    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3)
               if max(data[i:i + 3]) - min(data[i:i + 3]) > 40)


@pytest.mark.slow
def test_chromium_renders_map_timeline_and_power_offline(approach, tmp_path):
    chromium, sync_playwright = _browser_or_skip()
    report = approach[2]
    url = report.resolve().as_uri()
    requests, problems = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append((m.type, m.text))
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(("pageerror", str(e))))
            page.goto(url)
            page.wait_for_load_state("load")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            for selector in ("#map-svg", "#timeline-svg", "#power svg"):
                element = page.locator(selector).first
                box = element.bounding_box()
                assert box and box["width"] > 300 and box["height"] > 150, (selector, box)
                assert _coloured_pixels(element.screenshot()) > 500, selector
            # Zoomable: a wheel over the timeline narrows its time window.
            timeline = page.locator("#timeline-svg")
            assert timeline.get_attribute("data-view") == "0.000 7200.000"
            timeline.scroll_into_view_if_needed()
            box = timeline.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -300)
            page.wait_for_function(
                "document.getElementById('timeline-svg').getAttribute('data-view') !== "
                "'0.000 7200.000'")
            v0, v1 = map(float, timeline.get_attribute("data-view").split())
            assert 0 <= v0 < v1 <= 7200 and v1 - v0 < 7200
            assert page.locator("#tl-axis text").count() >= 3
        finally:
            browser.close()
    assert requests == [url], "the page asked for more than itself: %r" % requests
    assert problems == []
