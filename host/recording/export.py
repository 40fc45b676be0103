"""`vigil export FILE.pcapng --key-file F [--format jsonl|csv|gpx|geojson] [-o OUT]` and
`vigil export FILE.pcapng --key-file F --to osmand://HOST:PORT`: the positions and alarms of
a recorded session, decrypted with the device keys.

Only frames whose tag verified count, each once (a retransmission is the same record). Each
fix of a POSITION is one record; an ALARM is one record with its fix (if it had one).

The OsmAnd forwarder speaks the protocol Traccar ingests on its port 5055 (the Traccar Client
app's): one HTTP POST per record to http://HOST:PORT/?id=DEVICE&timestamp=UNIX_S&lat=&lon=
&speed=KNOTS&bearing=DEG&altitude=M&accuracy=M&hdop=&batt=PCT&alarm=sos (alarm only on panic
alarms). The battery is the latest HEARTBEAT's. Exit status: 0 done, 1 some records were not
accepted by the server, 2 unusable input or arguments.
"""
import argparse
import csv
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from host.decode import Decoder, format_time
from host.keys import KeyFileError, load_keys
from protocol import host_constants as constants
from protocol import host_names

FORMATS = ("jsonl", "csv", "gpx", "geojson")
CSV_COLUMNS = ("device_id", "kind", "time", "fix_time_ms", "lat", "lon", "alt_m", "speed_cmps",
               "course_cdeg", "accuracy_m", "hdop_x10", "sats", "source", "counter",
               "alarm_id", "alarm_kind", "alarm_state", "received_time")
KNOTS_PER_CMPS = 0.01 * 3600 / 1852
OSMAND_ALARMS = {constants.ALARM_KIND_PANIC: "sos", constants.ALARM_KIND_TAMPER: "tampering",
                 constants.ALARM_KIND_POWER_OFF_ATTEMPT: "powerOff",
                 constants.ALARM_KIND_BATTERY_5: "lowBattery",
                 constants.ALARM_KIND_BATTERY_10: "lowBattery",
                 constants.ALARM_KIND_BATTERY_20: "lowBattery"}


class ExportError(Exception):
    """One line for the user, exit 2."""


def _fix_record(fix):
    return {"fix_time_ms": fix["fix_time_ms"], "time": format_time(fix["fix_time_ms"] * 10**6),
            "lat": fix["lat_e7"] / 1e7, "lon": fix["lon_e7"] / 1e7, "alt_m": fix["alt_m"],
            "speed_cmps": fix["speed_cmps"], "course_cdeg": fix["course_cdeg"],
            "accuracy_m": fix["accuracy_m"], "hdop_x10": fix["hdop_x10"], "sats": fix["sats"],
            "source": fix["source"]}


def records(path, keys):
    """The session's records in recorded order: dicts with device_id, kind ("position",
    "alarm") and the fix fields; `battery_pct` is the latest heartbeat's."""
    from host.recording import Reader, RecordingError

    decoder = Decoder(keys)
    battery = {}
    out = []
    encrypted_unopened = 0
    try:
        with Reader(path) as reader:
            for index, packet in enumerate(reader, 1):
                if packet.interface.is_stimuli or packet.direction != "up":
                    continue
                data = packet.data[:-1] if packet.data.endswith(b"\x00") else packet.data
                if not data or b"\x00" in data:
                    continue
                result = decoder.decode(data, index)
                if result["status"] == "unverified":
                    encrypted_unopened += result["fields"] is None
                if result["status"] != "ok":
                    continue  # unverified, invalid, or a retransmission of a record kept
                fields = result["fields"]
                base = {"device_id": result["device_id"], "counter": result["counter"],
                        "received_time": format_time(packet.time_ns)}
                if result["name"] == "HEARTBEAT":
                    battery[result["device_id"]] = fields["battery_pct"]
                elif result["name"] == "POSITION":
                    for fix in fields["fixes"]:
                        out.append(dict(base, kind="position", **_fix_record(fix),
                                        battery_pct=battery.get(result["device_id"])))
                elif result["name"] == "ALARM":
                    record = dict(base, kind="alarm", alarm_id=fields["alarm_id"],
                                  alarm_kind=host_names.ALARM_KINDS.get(fields["kind"],
                                                                      fields["kind"]),
                                  alarm_state=host_names.ALARM_STATES.get(fields["state"],
                                                                        fields["state"]),
                                  alarm_kind_code=fields["kind"],
                                  battery_pct=battery.get(result["device_id"]))
                    if fields["fix"]:
                        record.update(_fix_record(fields["fix"]))
                    else:
                        record["time"] = format_time(fields["raised_time_ms"] * 10**6)
                        record["fix_time_ms"] = None
                    out.append(record)
            if reader.error:
                print("vigil export: %s: %s (exported the records before it)"
                      % (path, reader.error), file=sys.stderr)
    except RecordingError as e:
        raise ExportError(str(e)) from None
    if encrypted_unopened and not out:
        raise ExportError("%s: %d encrypted frames and no key for them (give --key-file)"
                          % (path, encrypted_unopened))
    return out


def write_jsonl(rows, out):
    for row in rows:
        out.write(json.dumps(row, sort_keys=True) + "\n")


def write_csv(rows, out):
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])


def write_gpx(rows, out):
    gpx = ET.Element("gpx", version="1.1", creator="vigil export",
                     xmlns="http://www.topografix.com/GPX/1/1")
    for row in rows:
        if row["kind"] == "alarm" and "lat" in row:
            wpt = ET.SubElement(gpx, "wpt", lat="%.7f" % row["lat"], lon="%.7f" % row["lon"])
            ET.SubElement(wpt, "time").text = row["time"]
            ET.SubElement(wpt, "name").text = "ALARM %s %s (device %d)" % (
                row["alarm_kind"], row["alarm_state"], row["device_id"])
    for device_id in sorted({row["device_id"] for row in rows}):
        trk = ET.SubElement(gpx, "trk")
        ET.SubElement(trk, "name").text = "device %d" % device_id
        seg = ET.SubElement(trk, "trkseg")
        for row in rows:
            if row["device_id"] == device_id and row["kind"] == "position":
                pt = ET.SubElement(seg, "trkpt", lat="%.7f" % row["lat"], lon="%.7f" % row["lon"])
                ET.SubElement(pt, "ele").text = str(row["alt_m"])
                ET.SubElement(pt, "time").text = row["time"]
                ET.SubElement(pt, "sat").text = str(row["sats"])
    out.write(ET.tostring(gpx, encoding="unicode", xml_declaration=True) + "\n")


def write_geojson(rows, out):
    features = []
    for row in rows:
        if "lat" not in row:
            continue
        properties = {k: v for k, v in row.items() if k not in ("lat", "lon")}
        features.append({"type": "Feature", "properties": properties,
                         "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]}})
    json.dump({"type": "FeatureCollection", "features": features}, out)
    out.write("\n")


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "gpx": write_gpx, "geojson": write_geojson}


def osmand_query(row):
    """The OsmAnd parameters of one record (None for an alarm without a fix)."""
    if "lat" not in row:
        return None
    params = {"id": str(row["device_id"]), "timestamp": str(row["fix_time_ms"] // 1000),
              "lat": "%.7f" % row["lat"], "lon": "%.7f" % row["lon"],
              "speed": "%.2f" % (row["speed_cmps"] * KNOTS_PER_CMPS),
              "bearing": "%.2f" % (row["course_cdeg"] / 100), "altitude": str(row["alt_m"]),
              "accuracy": str(row["accuracy_m"]), "hdop": "%.1f" % (row["hdop_x10"] / 10)}
    if row.get("battery_pct") is not None:
        params["batt"] = str(row["battery_pct"])
    if row["kind"] == "alarm" and row["alarm_state"] == "raised":
        alarm = OSMAND_ALARMS.get(row["alarm_kind_code"])
        if alarm:
            params["alarm"] = alarm
    return params


def forward_osmand(rows, url, timeout_s=5.0):
    """POST every record to an OsmAnd endpoint; returns (sent, failed, first error)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or not parts.port:
        raise ExportError("%s: expected osmand://HOST:PORT" % url)
    base = "http://%s:%d/" % (parts.hostname, parts.port)
    sent = failed = 0
    first_error = None
    for row in rows:
        params = osmand_query(row)
        if params is None:
            continue
        request = urllib.request.Request(base + "?" + urllib.parse.urlencode(params),
                                         data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            sent += 1
        except (urllib.error.URLError, OSError) as e:
            failed += 1
            first_error = first_error or str(getattr(e, "reason", e))
            if sent == 0 and failed >= 3:  # nothing is listening: stop early
                break
    return sent, failed, first_error


def main(argv=None):
    parser = argparse.ArgumentParser(prog="vigil export", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", metavar="FILE.pcapng")
    parser.add_argument("--key-file", metavar="F", help="device keys (positions are encrypted)")
    parser.add_argument("--format", choices=FORMATS, default="jsonl")
    parser.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    parser.add_argument("--to", metavar="osmand://HOST:PORT",
                        help="forward to an OsmAnd (Traccar) endpoint instead of writing a file")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        if args.to and not args.to.lower().startswith("osmand://"):
            raise ExportError("--to %s: only osmand://HOST:PORT is supported" % args.to)
        keys = load_keys(args.key_file) if args.key_file else None
        rows = records(args.file, keys)
        if args.to:
            sent, failed, error = forward_osmand(rows, args.to)
            print("forwarded %d records to %s%s" % (sent, args.to, "; %d failed (%s)" % (
                failed, error) if failed else ""))
            return 1 if failed else 0
        if args.output:
            try:
                with open(args.output, "w", encoding="utf-8", newline="") as out:
                    WRITERS[args.format](rows, out)
            except OSError as e:
                raise ExportError("%s: cannot write (%s)" % (args.output, e.strerror)) from None
        else:
            WRITERS[args.format](rows, sys.stdout)
    except (ExportError, KeyFileError) as e:
        print("vigil export: %s" % e, file=sys.stderr)
        return 2
    return 0
