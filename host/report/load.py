"""Read a run for the report: a `--trace` JSONL file, a list of its records, or a World's
trace tuples. The run.* records (host/run_records.py) are optional: a trace from a HIL test
has none, and the report then shows what the raw events hold."""
import hashlib
import json
import os


class ReportError(ValueError):
    """The input cannot be used; the message is one line for the user."""


class RunData:
    """One run: every record in order, plus the run.* records picked out."""

    def __init__(self, records, sha256, source):
        self.records = records
        self.sha256 = sha256
        self.source = source
        self.start = None  # run.start detail
        self.routes = {}  # id -> (role, [[t_ms, lat, lon]])
        self.fixes = {}  # device -> [[t_ms, age_ms, lat, lon, accuracy_m, historic]]
        self.tags = {}  # offender -> [[t_ms, lat, lon]]
        self.power = {}  # device -> run.power detail
        self.latency = None  # run.latency detail
        self.summary = None  # run.summary detail
        self.end_ms = 0.0
        for r in records:
            kind, detail = r["kind"], r["detail"]
            self.end_ms = max(self.end_ms, float(r["t_ms"]))
            if not kind.startswith("run."):
                continue
            problem = _shape_problem(kind, detail)
            if problem:
                raise ReportError("%s: %s record at t_ms %s: %s" % (
                    source or "trace", kind, r["t_ms"], problem))
            if kind == "run.start":
                self.start = detail
            elif kind == "run.route":
                self.routes[r["device"]] = (detail["role"], detail["points"])
            elif kind == "run.fixes":
                self.fixes[r["device"]] = detail["fixes"]
            elif kind == "run.tag":
                self.tags[r["device"]] = detail["reports"]
            elif kind == "run.power":
                self.power[r["device"]] = detail
            elif kind == "run.latency":
                self.latency = detail
            elif kind == "run.summary":
                self.summary = detail
        if self.start is not None:
            self.end_ms = max(self.end_ms, float(self.start["duration_s"]) * 1000)

    def events(self, *kinds):
        """The raw (non run.*) records of the given kinds, in order."""
        wanted = set(kinds)
        return [r for r in self.records if r["kind"] in wanted]

    @property
    def title(self):
        if self.start is not None:
            return "%s (seed %s)" % (self.start.get("scenario", "?"), self.start.get("seed", "?"))
        return os.path.basename(str(self.source)) if self.source else "trace"


def _rows(value, width):
    return isinstance(value, list) and all(
        isinstance(row, list) and len(row) == width and all(
            v is None or isinstance(v, (int, float)) for v in row) for row in value)


def _series(value):
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _shape_problem(kind, detail):
    """What is wrong with a run.* record's detail (None when it is usable)."""
    if not isinstance(detail, dict):
        return "detail must be an object"
    if kind == "run.start":
        if not isinstance(detail.get("devices"), list) or not isinstance(
                detail.get("offenders"), list) or "duration_s" not in detail:
            return "needs duration_s, devices and offenders"
        if not all(isinstance(d, dict) and "id" in d for d in
                   detail["devices"] + detail["offenders"]):
            return "each device and offender needs an id"
        if not _rows(detail.get("outages", []), 2):
            return "outages must be [start_ms, end_ms] pairs"
    elif kind == "run.route":
        if not _rows(detail.get("points"), 3) or not detail.get("points"):
            return "points must be [t_ms, lat, lon] rows"
    elif kind == "run.fixes":
        if not _rows(detail.get("fixes"), 6):
            return "fixes must be [t_ms, age_ms, lat, lon, accuracy_m, historic] rows"
    elif kind == "run.tag":
        if not _rows(detail.get("reports"), 3):
            return "reports must be [t_ms, lat, lon] rows"
    elif kind == "run.power":
        series = [detail.get("t_ms"), detail.get("battery_pct")]
        for group in ("mah", "cpu_s"):
            if not isinstance(detail.get(group), dict):
                return "needs t_ms, battery_pct, mah and cpu_s"
            series += list(detail[group].values())
        if not all(_series(v) and len(v) == len(series[0]) for v in series):
            return "its series must be lists of numbers of one length"
    elif kind == "run.latency":
        for key, value in detail.items():
            if key != "proximity_warnings_missed" and not _rows(value, 3):
                return "%s must be [device, t_ms, ms] rows" % key
    return None


def _check(record, where):
    if not isinstance(record, dict) or not {"t_ms", "kind"} <= set(record):
        raise ReportError("%s: not a trace record (needs t_ms and kind)" % where)
    if not isinstance(record["kind"], str):
        raise ReportError("%s: kind must be a string" % where)
    if isinstance(record["t_ms"], bool) or not isinstance(record["t_ms"], (int, float)):
        raise ReportError("%s: t_ms must be a number" % where)
    record.setdefault("device", None)
    record.setdefault("detail", "")
    return record


def load(source):
    """A RunData from a path (JSONL), a list of record dicts, or World.trace tuples."""
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ReportError("%s: %s" % (source, e.strerror or e)) from None
        records = []
        for number, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise ReportError("%s line %d: not JSON (expected a --trace JSONL file)" % (
                    source, number)) from None
            records.append(_check(record, "%s line %d" % (source, number)))
        if not records:
            raise ReportError("%s: no trace records" % source)
        return RunData(records, hashlib.sha256(data).hexdigest(), source)
    records = []
    for i, item in enumerate(source):
        if isinstance(item, (tuple, list)) and len(item) == 4:
            item = {"t_ms": round(item[0], 3), "device": item[1], "kind": item[2],
                    "detail": item[3]}
        records.append(_check(dict(item) if isinstance(item, dict) else item,
                              "record %d" % (i + 1)))
    if not records:
        raise ReportError("no trace records")
    digest = hashlib.sha256()
    for r in records:
        digest.update(json.dumps(r, sort_keys=True, default=str).encode() + b"\n")
    return RunData(records, digest.hexdigest(), None)
