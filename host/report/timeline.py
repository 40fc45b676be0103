"""The report's timeline: one lane per kind of event, one thin row per device in a lane.

Items are drawn in seconds of virtual time inside one <g>; the page's script zooms and pans
by changing that group's transform alone (no element is touched), so a week of events stays
smooth. Strokes do not scale, so a 2 s haptic pulse in a week is still one pixel wide.
"""
from html import escape

from .svgmap import LEVEL_COLOURS, _clock

LABEL_W = 130  # px of lane labels left of the plot
PLOT_W = 860
ROW_H = 9
LANE_GAP = 6
MERGE_PER_VIEW = 5000  # spans closer than 1/5000 of the run merge (about a pixel at full view)

# (lane id, label, colour of its items)
LANES = [
    ("button", "panic button", "#542788"),
    ("alarms", "alarms", "#d73027"),
    ("acks", "acks", "#1a9850"),
    ("proximity", "proximity level", None),
    ("haptic", "haptic motor", "#8c510a"),
    ("not_reporting", "NOT_REPORTING", "#b2182b"),
    ("resets", "boots / resets", "#000000"),
    ("outages", "link outages", "#878787"),
    ("gnss", "GNSS on", "#35978f"),
]
_ALARM_KINDS = {
    "centre.alarm_raised": "#d73027",
    "centre.alarm_cancelled": "#878787",
    "centre.alarm_cleared": "#878787",
}
_ACK_KINDS = {"centre.alarm_acked": "#2166ac", "centre.alarm_ack_delivered": "#1a9850"}


def _spans(events, end_s):
    """[(t0_s, t1_s)] of on-periods from a sequence of (t_s, on?) edges."""
    out, since = [], None
    for t_s, on in events:
        if on and since is None:
            since = t_s
        elif not on and since is not None:
            out.append((since, t_s))
            since = None
    if since is not None:
        out.append((since, end_s))
    return out


def _merge(spans, gap_s):
    """[(t0, t1, count, seconds on)]: spans joined where the gap between them is < gap_s."""
    out = []
    for t0, t1 in spans:
        if out and t0 - out[-1][1] < gap_s:
            a, _b, n, on_s = out[-1]
            out[-1] = (a, t1, n + 1, on_s + t1 - t0)
        else:
            out.append((t0, t1, 1, t1 - t0))
    return out


def lanes(run):
    """{lane id: [(device, kind, t0_s, t1_s or None, colour, title)]}."""
    end_s = run.end_ms / 1000
    items = {lane: [] for lane, _label, _colour in LANES}
    by_device = {}
    for r in run.records:
        by_device.setdefault(r["device"], []).append(r)
    for device, records in by_device.items():
        presses, haptic, gnss, silent, levels = [], [], [], [], []
        for r in records:
            kind, detail, t_s = r["kind"], r["detail"], r["t_ms"] / 1000
            d = detail if isinstance(detail, dict) else {}
            if kind == "button":
                presses.append((t_s, detail == "press"))
            elif kind == "haptic":
                haptic.append((t_s, str(detail) == "1"))
            elif kind == "gnss" and (detail == "off" or str(detail).startswith("on ")):
                gnss.append((t_s, str(detail).startswith("on")))
            elif kind == "centre.not_reporting":
                silent.append((t_s, True))
            elif kind == "centre.reporting":
                silent.append((t_s, False))
            elif kind == "centre.proximity":
                levels.append((t_s, d.get("level", "?"), d.get("previous", "?")))
            elif kind in _ALARM_KINDS:
                items["alarms"].append((device, kind, t_s, None, _ALARM_KINDS[kind], "%s device %s %s %s" % (
                    _clock(r["t_ms"]), device, kind[7:].replace("_", " "),
                    d.get("alarm_id", ""))))
            elif kind in _ACK_KINDS:
                what = ("operator acked alarm" if kind == "centre.alarm_acked"
                        else "device confirmed the operator ack of alarm")
                items["acks"].append((device, kind, t_s, None, _ACK_KINDS[kind],
                                      "%s device %s: %s %s" % (_clock(r["t_ms"]), device, what,
                                                               d.get("alarm_id", ""))))
            elif kind in ("boot", "reset", "crash", "brownout", "main_returned"):
                items["resets"].append((device, kind, t_s, None, "#000000" if kind == "boot"
                                        else "#d73027", "%s device %s %s %s" % (
                                            _clock(r["t_ms"]), device, kind, detail)))
        for t0, t1 in _spans(presses, end_s):
            items["button"].append((device, "press", t0, t1, "#542788", "%s device %s button held %.1f s" % (
                _clock(t0 * 1000), device, t1 - t0)))
        for t0, t1 in _spans(haptic, end_s):
            items["haptic"].append((device, "haptic", t0, t1, "#8c510a", "%s device %s haptic %.1f s" % (
                _clock(t0 * 1000), device, t1 - t0)))
        # A fix every 15 s while tracking is thousands of sessions a week: sessions closer
        # than a pixel of the full view become one span (the title keeps the count).
        for t0, t1, n, on_s in _merge(_spans(gnss, end_s), end_s / MERGE_PER_VIEW):
            items["gnss"].append((device, "gnss", t0, t1, "#35978f", "%s device %s GNSS on %s" % (
                _clock(t0 * 1000), device, "%.0f s" % on_s if n == 1 else
                "%d times, %.0f s in all" % (n, on_s))))
        for t0, t1 in _spans(silent, end_s):
            items["not_reporting"].append((device, "not_reporting", t0, t1, "#b2182b",
                                           "%s device %s NOT_REPORTING for %.0f s" % (
                                               _clock(t0 * 1000), device, t1 - t0)))
        for i, (t0, level, previous) in enumerate(levels):
            t1 = levels[i + 1][0] if i + 1 < len(levels) else end_s
            if level == "clear":
                continue
            items["proximity"].append((device, level, t0, t1, LEVEL_COLOURS.get(level, "#888888"),
                                       "%s device %s proximity %s (was %s)" % (
                                           _clock(t0 * 1000), device, level, previous)))
    for start_ms, stop_ms in (run.start or {}).get("outages", []):
        items["outages"].append((None, "outage", start_ms / 1000, stop_ms / 1000, "#878787",
                                 "%s link outage %.0f s" % (_clock(start_ms),
                                                             (stop_ms - start_ms) / 1000)))
    return items


def render(run):
    """(svg text, {lane: item count})."""
    items = lanes(run)
    devices = sorted({d["id"] for d in (run.start or {}).get("devices", [])} |
                     {i[0] for lane in items.values() for i in lane if i[0] is not None},
                     key=str)
    row_of = {d: n for n, d in enumerate(devices)}
    rows = max(1, len(devices))
    end_s = max(run.end_ms / 1000, 1.0)
    y = 24
    labels, body = [], []
    for lane, label, _colour in LANES:
        height = rows * ROW_H
        labels.append('<text class="lane-label" x="4" y="%d">%s</text>' % (
            y + height / 2 + 4, escape(label)))
        if len(devices) > 1:  # which thin row is which device
            labels.extend('<text class="row-label" x="%d" y="%d">%s</text>' % (
                LABEL_W - 3, y + n * ROW_H + ROW_H - 2, escape(str(d)))
                for n, d in enumerate(devices))
        body.append('<rect class="lane-bg" x="0" y="%d" width="%.1f" height="%d"/>' % (
            y, end_s, height))
        for device, _kind, t0, t1, colour, title in items[lane]:
            row = row_of.get(device, 0) if device is not None else 0
            top = y + row * ROW_H + 1
            h = ROW_H - 2 if device is not None else height - 2
            if t1 is None:
                body.append('<line class="tick" x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s">'
                            '<title>%s</title></line>' % (t0, t0, top - 1, top + h + 1, colour,
                                                          escape(title)))
            else:
                body.append('<rect class="span" x="%.1f" y="%d" width="%.1f" height="%d" '
                            'fill="%s" stroke="%s"><title>%s</title></rect>' % (
                                t0, top, max(t1 - t0, 0.0), h, colour, colour, escape(title)))
        y += height + LANE_GAP
    height = y + 4
    counts = {lane: len(v) for lane, v in items.items()}
    svg = ('<svg id="timeline-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" '
           'data-end-s="%.3f" data-label-w="%d" data-plot-w="%d">'
           '<defs><clipPath id="tl-clip"><rect x="%d" y="0" width="%d" height="%d"/></clipPath></defs>'
           '<g class="axis" id="tl-axis"></g>%s'
           '<g clip-path="url(#tl-clip)"><g id="tl-items" transform="translate(%d,0) scale(%.6f,1)">'
           '%s</g></g></svg>' % (
               LABEL_W + PLOT_W + 10, height, end_s, LABEL_W, PLOT_W, LABEL_W, PLOT_W, height,
               "".join(labels), LABEL_W, PLOT_W / end_s, "".join(body)))
    return svg, counts, devices
