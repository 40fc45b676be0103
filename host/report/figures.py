"""The report's static plots, drawn by matplotlib as SVG: power over time and the latency
histograms. matplotlib because it is the most widely used and maintained Python plotting
library, needs no JavaScript and no network to show its output, and writes small vector
files that are byte-identical run to run once its SVG hash salt and date are fixed."""
import io
import math
import re

import matplotlib
from matplotlib.figure import Figure

STATE_COLOURS = {"active": "#d73027", "boot": "#fc8d59", "light_sleep": "#4575b4",
                 "deep_sleep": "#313695", "off": "#bbbbbb"}
COMPONENT_COLOURS = {"cpu": "#4575b4", "gnss": "#35978f", "radio": "#f46d43",
                     "haptic": "#8c510a", "led": "#fee090"}
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
# For components a board profile adds (board:usb_bridge, board:power_led...), in name order.
SPARE_COLOURS = ["#abd9e9", "#e0f3f8", "#c2a5cf", "#a6dba0", "#d9d9d9", "#fdb863", "#b2abd2"]
MAX_POWER_BINS = 600  # enough for a readable plot, few enough for a week in a small file
_RC = {"svg.hashsalt": "vigil-report", "svg.fonttype": "none", "font.size": 9,
       "font.family": "sans-serif", "axes.spines.top": False, "axes.spines.right": False}


def _svg(fig):
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None},
                    bbox_inches="tight")
    text = buf.getvalue()
    # The RDF metadata block only names namespaces (URLs a reader might take for requests).
    return _METADATA.sub("", text[text.index("<svg"):])


def _time_axis(end_s):
    """(divisor, unit) for a run of end_s seconds."""
    if end_s > 2 * 86400:
        return 86400.0, "days"
    if end_s > 3 * 3600:
        return 3600.0, "hours"
    return 60.0, "minutes"


def power_bins(power, start_pct):
    """Bins of a run.power record: (edges_s, battery_pct at each edge, {component: mean mA
    per bin}, {cpu state: fraction of each bin}). Means come from cumulative energy, so the
    bins add up to the run's energy exactly, however coarse they are."""
    t = [0.0] + [x / 1000 for x in power["t_ms"]]
    if len(t) < 2:
        return None
    stride = max(1, math.ceil((len(t) - 1) / MAX_POWER_BINS))
    index = list(range(0, len(t), stride))
    if index[-1] != len(t) - 1:
        index.append(len(t) - 1)
    edges = [t[i] for i in index]
    pct = [start_pct] + power["battery_pct"]
    battery = [pct[i] for i in index]
    current = {}
    for name, cumulative in power["mah"].items():
        c = [0.0] + cumulative
        current[name] = [(c[b] - c[a]) * 3600 / (t[b] - t[a]) if t[b] > t[a] else 0.0
                         for a, b in zip(index, index[1:], strict=False)]
    states = {}
    for name, cumulative in power["cpu_s"].items():
        c = [0.0] + cumulative
        states[name] = [(c[b] - c[a]) / (t[b] - t[a]) if t[b] > t[a] else 0.0
                        for a, b in zip(index, index[1:], strict=False)]
    return edges, battery, current, states


def power_svg(run):
    """The power figure (battery %, current per component, CPU state), or None."""
    if not run.power:
        return None
    start_pct = {d["id"]: d["battery_pct"] for d in (run.start or {}).get("devices", [])
                 if isinstance(d.get("battery_pct"), (int, float))}
    binned = {}
    for device, power in sorted(run.power.items(), key=lambda kv: str(kv[0])):
        first = power["battery_pct"][0] if power["battery_pct"] else 0.0
        result = power_bins(power, start_pct.get(device, first))
        if result is not None:
            binned[device] = result
    if not binned:
        return None
    end_s = max(r[0][-1] for r in binned.values())
    div, unit = _time_axis(end_s)
    if not any(r[2] or r[3] for r in binned.values()):
        return _battery_only_svg(binned, end_s, div, unit)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(10, 6.4))
        ax_bat, ax_ma, ax_state = fig.subplots(3, 1, sharex=True,
                                                gridspec_kw={"height_ratios": [2, 3, 1]})
        for device, (edges, battery, _current, _states) in binned.items():
            ax_bat.plot([e / div for e in edges], battery, label="device %s" % device,
                        linewidth=1.2)
        ax_bat.set_ylabel("battery %")
        if len(binned) <= 8:
            ax_bat.legend(loc="lower left", fontsize=7, frameon=False)
        n = len(binned)
        components = sorted({c for r in binned.values() for c in r[2]})
        states = sorted({s for r in binned.values() for s in r[3]})
        first = next(iter(binned.values()))
        # Mean over devices per bin; devices share their bin edges when they share a run.
        x = [e / div for e in first[0]]
        bottom = [0.0] * (len(x) - 1)
        spare = iter(SPARE_COLOURS * 4)
        colours = {name: COMPONENT_COLOURS.get(name) or next(spare) for name in components}
        for name in components:
            values = [sum(r[2].get(name, [0.0] * len(bottom))[i] for r in binned.values()) / n
                      for i in range(len(bottom))]
            top = [b + v for b, v in zip(bottom, values, strict=True)]
            ax_ma.fill_between(x, bottom + bottom[-1:], top + top[-1:], step="post",
                               label=name, color=colours[name], linewidth=0)
            bottom = top
        ax_ma.set_ylabel("current, mA" + (" (mean of %d devices)" % n if n > 1 else ""))
        ax_ma.legend(loc="upper right", fontsize=7, frameon=True, framealpha=0.9,
                     ncol=min(len(components), 5))
        bottom = [0.0] * (len(x) - 1)
        for name in states:
            values = [sum(r[3].get(name, [0.0] * len(bottom))[i] for r in binned.values()) / n
                      for i in range(len(bottom))]
            top = [b + v for b, v in zip(bottom, values, strict=True)]
            ax_state.fill_between(x, bottom + bottom[-1:], top + top[-1:], step="post",
                                  label=name.replace("_", " "),
                                  color=STATE_COLOURS.get(name, "#999999"), linewidth=0)
            bottom = top
        ax_state.set_ylim(0, 1)
        ax_state.set_ylabel("CPU state")
        ax_state.set_yticks([0, 1], ["0", "100 %"])
        # A framed legend: over a band that is all light sleep, a bare blue swatch vanishes.
        ax_state.legend(loc="upper right", fontsize=7, frameon=True, framealpha=0.9,
                        ncol=len(states))
        ax_state.set_xlabel("time since start, %s" % unit)
        ax_state.set_xlim(0, end_s / div)
        fig.align_ylabels()
    return _svg(fig)


def _battery_only_svg(binned, end_s, div, unit):
    """Battery % alone: what a recording's HEARTBEATs tell (currents and CPU states are not
    on the wire)."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(10, 2.6))
        ax = fig.subplots()
        for device, (edges, battery, _current, _states) in binned.items():
            ax.plot([e / div for e in edges], battery, label="device %s" % device,
                    linewidth=1.2, drawstyle="steps-post")
        ax.set_ylabel("battery %")
        if len(binned) <= 8:
            ax.legend(loc="lower left", fontsize=7, frameon=False)
        ax.set_xlabel("time since start, %s (battery %% from HEARTBEAT; currents and sleep "
                      "states are not on the wire)" % unit)
        ax.set_xlim(0, end_s / div)
    return _svg(fig)


def histogram_svg(values, stats, label):
    """One latency histogram with its p50/p95/max lines, or None without samples."""
    if not values:
        return None
    seconds = [v / 1000 for v in values]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(4.6, 2.4))
        ax = fig.subplots()
        bins = max(1, min(40, len(set(seconds))))
        ax.hist(seconds, bins=bins, color="#74add1", edgecolor="#4575b4", linewidth=0.5)
        for key, style in (("p50", "-"), ("p95", "--"), ("max", ":")):
            ax.axvline(stats[key] / 1000, color="#a50026", linestyle=style, linewidth=1,
                       label="%s %.0f ms" % (key, stats[key]))
        ax.set_xlabel(label + ", s")
        ax.set_ylabel("count")
        ax.legend(loc="upper right", fontsize=7, frameon=False)
    return _svg(fig)
