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
            return "%s (seed %s)" % (self.start["scenario"], self.start["seed"])
        return os.path.basename(str(self.source)) if self.source else "trace"


def _check(record, where):
    if not isinstance(record, dict) or not {"t_ms", "kind"} <= set(record):
        raise ReportError("%s: not a trace record (needs t_ms and kind)" % where)
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
