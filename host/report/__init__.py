"""The session report: one self-contained HTML file to look at a run instead of reading it.

    from host.report import write_report
    write_report("run.jsonl", "report.html")          # a `vigil emulate --trace` file
    write_report(world.trace, "report.html")          # a World's (t_ms, device, kind, detail)

Sections: map (tracks, fixes by age, 1000/500 m rings at each proximity decision, alarm /
warning / uncertain markers), zoomable timeline, power (battery, current per component, CPU
sleep state), latency histograms with the p50/p95/max of `--json`, and the `--json` keys.

Jinja2 lays out the page (autoescaping, one template file instead of HTML in strings);
matplotlib draws the static plots as SVG (see figures.py); the map and the timeline are
plain SVG written here so a few lines of inline script can pan and zoom them. Nothing is
loaded from the network unless `tiles` names a tile server (`{z}/{x}/{y}` URL template).
The same trace gives the same bytes: no clock, no random ids, sorted keys.
"""
import json
import os
import re
from urllib.parse import urlsplit

from .load import ReportError, RunData, load

__all__ = ["write_report", "build_html", "report_summary", "ReportError", "RunData", "load"]

LATENCIES = [
    ("panic_to_ack_ms", "panic press to transport ack"),
    ("proximity_warn_latency_ms", "offender crossing the warning radius to haptic"),
    ("proximity_observed_latency_ms", "first tag report inside the radius to haptic"),
    ("downlink_wait_ms", "downlink held for a sleeping device (listen windows)"),
]
WALL_S_NOTE = "not in the trace: it varies with the machine, and the report must not"
_WAITED = re.compile(r" waited ([0-9.]+) ms$")


def _percentiles(values):
    from host.emulate import percentiles  # the very function --json uses
    return percentiles(values)


def _raw_summary(run):
    """What a trace without run.summary (a HIL test's World) still tells."""
    devices = {r["device"] for r in run.records
               if r["device"] is not None and not r["kind"].startswith("centre.")}
    waits = []
    for r in run.events("downlink"):
        m = _WAITED.search(str(r["detail"]))
        if m:
            waits.append(float(m.group(1)))
    return {
        "virtual_s": run.end_ms / 1000,
        "devices": len(devices),
        "frames_up": len(run.events("uplink")),
        "frames_down": len(run.events("downlink")),
        "alarms_raised": len(run.events("centre.alarm_raised")),
        "alarms_acked": len(run.events("centre.alarm_ack_delivered")),
        "crashes": len(run.events("crash")),
        "downlink_wait_ms": _percentiles(waits),
    }, {"downlink_wait_ms": waits}


def report_summary(run):
    """(summary dict with the --json keys the trace holds, {latency key: [ms samples]}).

    Latency figures are recomputed from the samples in run.latency with --json's own
    percentile function, so the histograms and the numbers cannot disagree."""
    if run.summary is None:
        summary, samples = _raw_summary(run)
    else:
        summary = dict(run.summary)
        samples = {}
        for key, _label in LATENCIES:
            if run.latency is not None and key in run.latency:
                samples[key] = [s[2] for s in run.latency[key]]
                summary[key] = _percentiles(samples[key])
    summary["trace_sha256"] = run.sha256
    summary.pop("wall_s", None)
    return summary, samples


def _fmt(value):
    if isinstance(value, dict):
        if set(value) == {"p50", "p95", "max", "n"}:
            if not value["n"]:
                return "none measured (n=0)"
            return "p50 %s, p95 %s, max %s (n=%d)" % (
                _num(value["p50"]), _num(value["p95"]), _num(value["max"]), value["n"])
        return ", ".join("%s %s" % (k, _num(v)) for k, v in sorted(value.items())) or "none"
    return _num(value)


def _num(value):
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _stats_text(stats):
    if not stats["n"]:
        return "No samples in this run."
    return "p50 %.0f ms, p95 %.0f ms, max %.0f ms, n=%d (as --json reports)" % (
        stats["p50"], stats["p95"], stats["max"], stats["n"])


def build_html(source, tiles=None):
    """The report as one HTML string, from anything load() takes or a RunData."""
    import jinja2

    from . import figures, svgmap, timeline

    run = source if isinstance(source, RunData) else load(source)
    if tiles is not None:
        parts = urlsplit(tiles)
        if parts.scheme not in ("http", "https") or not parts.netloc or not all(
                k in tiles for k in ("{z}", "{x}", "{y}")):
            raise ReportError("--tiles %s: expected an http(s) URL with {z}, {x} and {y}" % tiles)
    summary, samples = report_summary(run)
    start = run.start or {}
    map_result = svgmap.render(run, tiles=tiles)
    timeline_svg, _counts, devices = timeline.render(run)
    histograms = []
    for key, label in LATENCIES:
        stats = summary.get(key) or _percentiles([])
        values = samples.get(key, [])
        histograms.append({"key": key, "label": label, "stats": stats, "text": _stats_text(stats),
                           "svg": figures.histogram_svg(values, stats, label) if values else None})
    rows = [(key, _fmt(summary[key])) for key in sorted(summary)]
    rows.append(("wall_s", WALL_S_NOTE))
    rows.sort()
    if start:
        subtitle = "%s. %s of virtual time, %d device(s), %d offender(s)." % (
            start.get("description") or start.get("scenario", "?"), _duration(run.end_ms / 1000),
            len(start["devices"]), len(start["offenders"]))
    else:
        subtitle = "A raw trace without run.* records: %s of events." % (
            _duration(run.end_ms / 1000))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(__file__))),
        autoescape=True, keep_trailing_newline=True)
    tiles_origin = None
    if tiles:
        parts = urlsplit(tiles)
        tiles_origin = "%s://%s" % (parts.scheme, parts.netloc)
    return env.get_template("page.html.j2").render(
        title=run.title, subtitle=subtitle,
        warning_m=_num(start.get("warning_m", 1000)), alarm_m=_num(start.get("alarm_m", 500)),
        map_svg=map_result[0] if map_result else None,
        map_legend=map_result[1] if map_result else [],
        map_counts=map_result[2] if map_result else {},
        timeline_svg=timeline_svg, devices=[str(d) for d in devices],
        power_svg=figures.power_svg(run), histograms=histograms, summary_rows=rows,
        summary_json=json.dumps(summary, sort_keys=True).replace("</", "<\\/"),
        tiles_origin=tiles_origin)


def write_report(trace_path_or_events, out_path, tiles=None):
    """Write the report of a trace (a --trace JSONL path, its records, or World.trace
    tuples) to out_path; returns out_path. Raises ReportError (one line) on bad input."""
    html = build_html(trace_path_or_events, tiles=tiles)
    try:
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(html)
    except OSError as e:
        raise ReportError("%s: %s" % (out_path, e.strerror or e)) from None
    return out_path


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds >= 86400:
        return "%.1f days" % (seconds / 86400)
    return "%02d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)
