"""A recording (pcapng, host/recording) as report records: what the wire and the stimuli
tell, in the trace record shapes the report draws (host/report/load.py).

    records = records_of_recording("run.pcapng", keystore)   # keystore None: no keys
    write_report(records, "report.html")

Every frame becomes an `uplink` or `downlink` record (its name and counter, or "sealed" and
the routing header without keys). With the device keys, the decrypted frames also give:
- run.fixes: every fix of POSITION, ALARM and NO_FIX, aged against the frame's time, and
  historic when a newer frame of that device came first (the centre's rule, SPEC 3.3);
- centre.alarm_raised / _cancelled / _cleared from ALARM uplinks, centre.alarm_acked from
  OPERATOR_ACK downlinks and centre.alarm_ack_delivered when the device's ACK covers one,
  centre.proximity from PROXIMITY downlinks;
- run.power: battery % from HEARTBEAT (the wire carries no currents or sleep states).
Stimuli give the button presses. Times are ms since the recording's epoch (epoch_utc_ms of
its metadata, else its first packet), like a trace's virtual time.
"""
import os

from host.decode import Decoder
from protocol import host_constants as constants

from .load import ReportError

_ALARM_STATES = {constants.ALARM_STATE_RAISED: "centre.alarm_raised",
                 constants.ALARM_STATE_CANCELLED: "centre.alarm_cancelled",
                 constants.ALARM_STATE_CLEARED: "centre.alarm_cleared"}
_LEVELS = {constants.PROXIMITY_CLEAR: "clear", constants.PROXIMITY_UNCERTAIN: "uncertain",
           constants.PROXIMITY_WARNING: "warning", constants.PROXIMITY_ALARM: "alarm"}


def is_recording(path):
    """True when the file starts like pcapng (whatever its name)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x0a\x0d\x0d\x0a"
    except OSError:
        return False


class _Run:
    def __init__(self, epoch_ms):
        self.epoch_ms = epoch_ms
        self.records = []
        self.fixes = {}
        self.power = {}
        self.highest = {}
        self.levels = {}
        self.operator_acks = {}  # device -> {downlink counter: alarm_id} not yet confirmed

    def add(self, t_ms, device, kind, detail=""):
        self.records.append({"t_ms": t_ms, "device": device, "kind": kind, "detail": detail})

    def fix(self, device, t_ms, fix, historic):
        if not isinstance(fix, dict) or "lat_e7" not in fix:
            return
        fix_t_ms = fix.get("fix_time_ms", self.epoch_ms + t_ms) - self.epoch_ms
        self.fixes.setdefault(device, []).append([
            round(fix_t_ms, 3), round(t_ms - fix_t_ms, 3), fix["lat_e7"] / 1e7,
            fix["lon_e7"] / 1e7, fix.get("accuracy_m"), 1 if historic else 0])

    def frame(self, t_ms, result):
        device = result["device_id"]
        name = result["name"]
        fields = result.get("fields") or {}
        up = result["direction"] == "up"
        self.add(t_ms, device, "uplink" if up else "downlink", "%s #%d%s" % (
            name, result["counter"], "" if result["status"] == "ok" else " " + result["status"]))
        if result["status"] != "ok":
            return  # a retransmission says nothing new; an unverified frame nothing at all
        if up:
            historic = result["counter"] < self.highest.get(device, 0)
            self.highest[device] = max(self.highest.get(device, 0), result["counter"])
            for fix in fields.get("fixes") or []:
                self.fix(device, t_ms, fix, historic)
            self.fix(device, t_ms, fields.get("fix"), historic)
            if name == "ALARM" and fields.get("state") in _ALARM_STATES:
                self.add(t_ms, device, _ALARM_STATES[fields["state"]],
                         {"alarm_id": fields.get("alarm_id"), "kind": fields.get("kind")})
            elif name == "ACK":
                self.confirmed(t_ms, device, fields)
            elif name == "HEARTBEAT" and "battery_pct" in fields:
                power = self.power.setdefault(device, {"t_ms": [], "battery_pct": [],
                                                       "mah": {}, "cpu_s": {}})
                power["t_ms"].append(t_ms)
                power["battery_pct"].append(fields["battery_pct"])
        elif name == "OPERATOR_ACK":
            self.add(t_ms, device, "centre.alarm_acked", {"alarm_id": fields.get("alarm_id")})
            self.operator_acks.setdefault(device, {})[result["counter"]] = fields.get("alarm_id")
        elif name == "PROXIMITY":
            level = _LEVELS.get(fields.get("level"), str(fields.get("level")))
            self.add(t_ms, device, "centre.proximity", {
                "level": level, "previous": self.levels.get(device, "clear")})
            self.levels[device] = level

    def confirmed(self, t_ms, device, ack):
        """An uplink ACK that covers an OPERATOR_ACK: the wearer's device has it (SPEC 6.8 and 8:
        `highest`, and bit i of `bitmap` for highest - 1 - i)."""
        pending = self.operator_acks.get(device) or {}
        highest, bitmap = ack.get("highest", 0), ack.get("bitmap", 0)
        for counter in sorted(pending):
            behind = highest - counter
            if behind == 0 or 0 < behind <= 64 and bitmap >> (behind - 1) & 1:
                self.add(t_ms, device, "centre.alarm_ack_delivered",
                         {"alarm_id": pending.pop(counter)})

    def stimulus(self, t_ms, stimulus):
        if not isinstance(stimulus, dict):
            return
        device = stimulus.get("device")
        if stimulus.get("kind") == "button":
            self.add(t_ms, device, "button", "press")
            self.add(t_ms + float(stimulus.get("hold_ms", 0)), device, "button", "release")


def records_of_recording(path, keystore=None):
    """Trace records of a recording; raises ReportError (one line) when it cannot be read.
    A recording cut short gives the records before the cut."""
    from host.recording import Reader, RecordingError

    decoder = Decoder(keystore)
    try:
        reader = Reader(path)
    except (RecordingError, OSError) as e:
        raise ReportError("%s: %s" % (path, e)) from None
    with reader:
        packets = list(reader)
    if not packets:
        raise ReportError("%s: no packets%s" % (
            path, " (%s)" % reader.error if reader.error else ""))
    meta = reader.meta or {}
    epoch_ms = meta.get("epoch_utc_ms")
    if not isinstance(epoch_ms, (int, float)):
        epoch_ms = min(p.time_ns for p in packets) / 1e6
    run = _Run(epoch_ms)
    for index, packet in enumerate(packets):
        t_ms = round(packet.time_ns / 1e6 - epoch_ms, 3)
        if packet.interface.is_stimuli:
            try:
                run.stimulus(t_ms, packet.stimulus())
            except ValueError:
                continue  # not JSON: nothing to draw
            continue
        data = packet.data[:-1] if packet.data.endswith(b"\x00") else packet.data
        result = decoder.decode(data, index) if data and b"\x00" not in data else None
        if result is None or result["status"] == "invalid" and "device_id" not in result:
            run.add(t_ms, packet.interface.device_id, "uplink" if packet.direction == "up"
                    else "downlink", "invalid: %s" % (result or {}).get("reason", "bad_cobs"))
            continue
        run.frame(t_ms, result)
    devices = sorted({r["device"] for r in run.records if r["device"] is not None}
                     | set(meta.get("devices") or []), key=str)
    end_ms = max([r["t_ms"] for r in run.records] + [0])
    start = {"scenario": meta.get("scenario") or os.path.basename(str(path)),
             "seed": meta.get("seed", "-"), "duration_s": end_ms / 1000,
             "devices": [{"id": d} for d in devices], "offenders": [],
             "description": "Recording %s (%s clock%s), %s" % (
                 os.path.basename(str(path)), meta.get("clock", "unknown"),
                 ", %s" % meta["transport"] if meta.get("transport") else "",
                 "decrypted with the device keys" if keystore is not None else
                 "without keys: only the routing header shows")}
    if reader.error:
        start["description"] += "; the file is cut short (%s)" % reader.error
    out = [{"t_ms": 0, "device": None, "kind": "run.start", "detail": start}]
    out += sorted(run.records, key=lambda r: r["t_ms"])
    for device, fixes in sorted(run.fixes.items(), key=lambda kv: str(kv[0])):
        out.append({"t_ms": end_ms, "device": device, "kind": "run.fixes",
                    "detail": {"fixes": fixes}})
    for device, power in sorted(run.power.items(), key=lambda kv: str(kv[0])):
        out.append({"t_ms": end_ms, "device": device, "kind": "run.power", "detail": power})
    return out
