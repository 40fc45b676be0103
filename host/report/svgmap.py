"""The report's map: victim and offender tracks as plain SVG in Web Mercator metres.

Web Mercator, so optional slippy-map tiles (`--tiles URL`) line up with the tracks; without
them nothing is fetched. Positions are drawn relative to the map's centre and rounded to a
tenth of the on-screen unit, which keeps a week of fixes to a few hundred kilobytes.
"""
import bisect
import math
from html import escape

EARTH_RADIUS_M = 6378137.0  # Web Mercator's sphere
# Fix age classes (upper bound in seconds, colour, label): a fresh fix is what the centre
# decides on; an old one is why a decision is "uncertain".
AGE_CLASSES = [(30, "#1a9850", "< 30 s"), (120, "#91cf60", "30 s - 2 min"),
               (600, "#fc8d59", "2 - 10 min"), (float("inf"), "#d73027", "> 10 min")]
LEVEL_COLOURS = {"clear": "#4575b4", "uncertain": "#888888", "warning": "#f46d43",
                 "alarm": "#a50026"}


def mercator(lat, lon):
    x = EARTH_RADIUS_M * math.radians(lon)
    lat = max(-85.0, min(85.0, lat))
    y = EARTH_RADIUS_M * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return x, y


def _age_colour(age_s):
    for limit, colour, _label in AGE_CLASSES:
        if age_s < limit:
            return colour
    return AGE_CLASSES[-1][1]


class _Projection:
    def __init__(self, points_latlon, pad_m):
        xs, ys = [], []
        for lat, lon in points_latlon:
            x, y = mercator(lat, lon)
            xs.append(x)
            ys.append(y)
        mid_lat = (min(p[0] for p in points_latlon) + max(p[0] for p in points_latlon)) / 2
        self.scale = 1 / math.cos(math.radians(mid_lat))  # Mercator units per ground metre
        pad = pad_m * self.scale
        self.x0, self.y0 = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        half = max(max(xs) - min(xs), max(ys) - min(ys)) / 2 + pad
        self.half = max(half, 200 * self.scale)
        self.unit = self.half / 500  # about one pixel of the initial 1000-px-wide view

    def xy(self, lat, lon):
        x, y = mercator(lat, lon)
        return self._fmt((x - self.x0) / self.unit), self._fmt(-(y - self.y0) / self.unit)

    @staticmethod
    def _fmt(v):
        return "%.1f" % v

    def metres(self, m):
        return m * self.scale / self.unit


def _position_at(fixes, route, t_ms):
    """Where the centre last knew the victim at t_ms: the newest fix received by then, else
    the true route's position (before any fix arrived)."""
    if fixes:
        times = [f[0] for f in fixes]
        i = bisect.bisect_right(times, t_ms) - 1
        if i >= 0:
            return fixes[i][2], fixes[i][3]
    if route:
        before = [p for p in route if p[0] <= t_ms] or route[:1]
        return before[-1][1], before[-1][2]
    return None


def _polyline(proj, points, cls, title):
    out, last = [], None
    for lat, lon in points:
        xy = proj.xy(lat, lon)
        if xy != last:
            out.append("%s,%s" % xy)
            last = xy
    if len(out) == 1:
        out.append(out[0])
    return '<polyline class="%s" points="%s"><title>%s</title></polyline>' % (
        cls, " ".join(out), escape(title))


def _tiles(proj, url):
    """<image> elements of the slippy-map tiles under the view (only with --tiles)."""
    world = 2 * math.pi * EARTH_RADIUS_M
    span = 2 * proj.half
    zoom = max(0, min(19, int(math.log2(world / span * 4))))
    size = world / 2 ** zoom
    out = []
    x_min = proj.x0 - proj.half
    x_max = proj.x0 + proj.half
    y_min = proj.y0 - proj.half
    y_max = proj.y0 + proj.half
    for tx in range(int((x_min + world / 2) // size), int((x_max + world / 2) // size) + 1):
        for ty in range(int((world / 2 - y_max) // size), int((world / 2 - y_min) // size) + 1):
            left = tx * size - world / 2
            top = world / 2 - ty * size
            href = url.replace("{z}", str(zoom)).replace("{x}", str(tx)).replace("{y}", str(ty))
            out.append('<image class="tile" href="%s" x="%.1f" y="%.1f" width="%.1f" '
                       'height="%.1f" preserveAspectRatio="none"/>' % (
                           escape(href), (left - proj.x0) / proj.unit,
                           -(top - proj.y0) / proj.unit, size / proj.unit, size / proj.unit))
    return out


def render(run, tiles=None):
    """(svg text, legend rows, counts) for the map; None when the trace has no positions."""
    start = run.start or {}
    warning_m = float(start.get("warning_m", 1000))
    alarm_m = float(start.get("alarm_m", 500))
    latlon = [(p[1], p[2]) for _role, points in run.routes.values() for p in points]
    latlon += [(f[2], f[3]) for fixes in run.fixes.values() for f in fixes]
    latlon += [(r[1], r[2]) for reports in run.tags.values() for r in reports]
    if not latlon:
        return None
    proj = _Projection(latlon, pad_m=warning_m * 1.1)
    parts = []
    if tiles:
        parts.append('<g class="tiles">%s</g>' % "".join(_tiles(proj, tiles)))
    counts = {"tracks": 0, "fixes": 0, "rings": 0, "markers": 0}

    # Rings first, under everything: where the centre measured from at each decision.
    ring_parts = []
    marker_parts = []
    for event in run.events("centre.proximity", "centre.alarm_raised"):
        device = event["device"]
        route = run.routes.get(device, (None, []))[1]
        where = _position_at(run.fixes.get(device, []), route, event["t_ms"])
        if where is None:
            continue
        cx, cy = proj.xy(*where)
        detail = event["detail"] if isinstance(event["detail"], dict) else {}
        clock = _clock(event["t_ms"])
        if event["kind"] == "centre.proximity":
            level = detail.get("level", "")
            colour = LEVEL_COLOURS.get(level, "#888888")
            for radius, name in ((warning_m, "warning"), (alarm_m, "alarm")):
                ring_parts.append(
                    '<circle class="ring ring-%s" cx="%s" cy="%s" r="%.1f" stroke="%s">'
                    '<title>%s device %s: %s (%d m ring)</title></circle>' % (
                        name, cx, cy, proj.metres(radius), colour, clock, device, level,
                        radius))
                counts["rings"] += 1
            shape = {"warning": "warning", "alarm": "warning", "uncertain": "uncertain"}.get(level)
            if shape:
                marker_parts.append(_marker(shape, cx, cy, "%s device %s proximity %s (was %s)" % (
                    clock, device, level, detail.get("previous", "?"))))
                counts["markers"] += 1
        else:
            marker_parts.append(_marker("alarm", cx, cy, "%s device %s alarm %s (%s)" % (
                clock, device, detail.get("alarm_id", "?"), detail.get("kind", "?"))))
            counts["markers"] += 1
    parts.append('<g class="rings">%s</g>' % "".join(ring_parts))

    for ident, (role, points) in sorted(run.routes.items(), key=lambda kv: str(kv[0])):
        what = "victim %s true route" % ident if role == "victim" else \
            "offender %s true route" % ident
        parts.append(_polyline(proj, [(p[1], p[2]) for p in points], "route-" + role, what))
        counts["tracks"] += 1
    for ident, reports in sorted(run.tags.items(), key=lambda kv: str(kv[0])):
        if reports:
            parts.append(_polyline(proj, [(r[1], r[2]) for r in reports], "tag",
                                   "offender %s as its tag reported" % ident))
            counts["tracks"] += 1

    # Fixes: one dot per screen unit and age class (a week at home is thousands of fixes
    # on one spot; drawing each would only add bytes).
    fix_parts = []
    for device, fixes in sorted(run.fixes.items(), key=lambda kv: str(kv[0])):
        seen = set()
        for t_ms, age_ms, lat, lon, accuracy_m, historic in fixes:
            colour = _age_colour(age_ms / 1000)
            xy = proj.xy(lat, lon)
            key = (xy, colour, historic)
            if key in seen:
                continue
            seen.add(key)
            fix_parts.append(
                '<circle class="fix%s" cx="%s" cy="%s" r="3" fill="%s"><title>%s device %s fix '
                'age %.0f s, accuracy %s m%s</title></circle>' % (
                    " historic" if historic else "", xy[0], xy[1], colour, _clock(t_ms),
                    device, age_ms / 1000, accuracy_m, ", historic" if historic else ""))
            counts["fixes"] += 1
    parts.append('<g class="fixes">%s</g>' % "".join(fix_parts))
    parts.append('<g class="markers">%s</g>' % "".join(marker_parts))

    bar_m = _nice(proj.half * 2 / proj.scale / 5)
    bar = proj.metres(bar_m)
    parts.append('<g class="scalebar" transform="translate(%.1f,%.1f)"><line x1="0" y1="0" '
                 'x2="%.1f" y2="0"/><text x="0" y="-6">%s</text></g>' % (
                     -480, 480, bar, "%d m" % bar_m if bar_m < 1000 else "%g km" % (bar_m / 1000)))
    svg = ('<svg id="map-svg" class="zoomable" xmlns="http://www.w3.org/2000/svg" '
           'viewBox="-500 -500 1000 1000" data-home="-500 -500 1000 1000">%s</svg>' % "".join(parts))
    legend = [(colour, "fix age " + label) for _limit, colour, label in AGE_CLASSES]
    return svg, legend, counts


def _marker(shape, cx, cy, title):
    x, y = float(cx), float(cy)
    if shape == "alarm":  # a triangle
        d = "M%.1f,%.1fL%.1f,%.1fL%.1f,%.1fZ" % (x, y - 11, x + 10, y + 7, x - 10, y + 7)
    elif shape == "warning":  # a diamond
        d = "M%.1f,%.1fL%.1f,%.1fL%.1f,%.1fL%.1f,%.1fZ" % (x, y - 9, x + 9, y, x, y + 9, x - 9, y)
    else:  # uncertain: a square
        d = "M%.1f,%.1fh14v14h-14Z" % (x - 7, y - 7)
    return '<path class="marker marker-%s" d="%s"><title>%s</title></path>' % (
        shape, d, escape(title))


def _nice(value):
    """The largest 1, 2 or 5 times a power of ten not above value."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (5, 2, 1):
        if step * power <= value:
            return step * power
    return power


def _clock(t_ms):
    s = int(t_ms // 1000)
    day = s // 86400
    text = "%02d:%02d:%02d" % (s // 3600 % 24, s // 60 % 60, s % 60)
    return ("d%d " % (day + 1) + text) if day else text
