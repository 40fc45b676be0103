"""`vigil export`: jsonl, csv, gpx and geojson of a golden session, and the OsmAnd forwarder
against a local HTTP server that checks the fields Traccar reads."""
import csv
import io
import json
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from host import scenario as scenarios
from host.decode import main as decode_main
from host.recording import Reader, emu
from host.recording import export as export_mod

GOLDEN = Path(__file__).parent / "golden" / "panic-walk.pcapng"


@pytest.fixture()
def keys(tmp_path):
    meta = Reader(str(GOLDEN)).meta
    path = tmp_path / "keys.json"
    path.write_text(emu.session_keys(scenarios.load(meta["scenario_source"]),
                                     meta["seed"]).to_json())
    return str(path)


def _export(capsys, *argv):
    capsys.readouterr()
    code = export_mod.main([str(GOLDEN)] + list(argv))
    return code, capsys.readouterr()


def _expected_fixes(keys, capsys):
    """Every fix of every verified, first-seen POSITION, straight from vigil decode."""
    capsys.readouterr()
    decode_main([str(GOLDEN), "--json", "--key-file", keys])
    fixes = []
    for line in capsys.readouterr().out.splitlines():
        result = json.loads(line)
        if result.get("name") == "POSITION" and result["status"] == "ok":
            fixes += result["fields"]["fixes"]
    return fixes


def test_jsonl_has_every_fix_once_and_the_alarm(keys, capsys):
    code, out = _export(capsys, "--key-file", keys)
    assert code == 0
    rows = [json.loads(line) for line in out.out.splitlines()]
    positions = [r for r in rows if r["kind"] == "position"]
    fixes = _expected_fixes(keys, capsys)
    assert len(fixes) > 20
    assert [(r["lat"], r["lon"], r["fix_time_ms"]) for r in positions] == [
        (f["lat_e7"] / 1e7, f["lon_e7"] / 1e7, f["fix_time_ms"]) for f in fixes]
    alarms = [r for r in rows if r["kind"] == "alarm"]
    assert [(a["alarm_kind"], a["alarm_state"]) for a in alarms][:1] == [("panic", "raised")]


def test_csv_gpx_geojson_carry_the_same_points(keys, capsys):
    _code, out = _export(capsys, "--key-file", keys)
    rows = [json.loads(line) for line in out.out.splitlines()]
    points = [(round(r["lat"], 7), round(r["lon"], 7)) for r in rows if r["kind"] == "position"]

    code, out = _export(capsys, "--key-file", keys, "--format", "csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out.out)))
    assert [(float(r["lat"]), float(r["lon"])) for r in table if r["kind"] == "position"] == points

    code, out = _export(capsys, "--key-file", keys, "--format", "gpx")
    assert code == 0
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    root = ET.fromstring(out.out.split("\n", 1)[1])
    track = root.findall("g:trk/g:trkseg/g:trkpt", ns)
    assert [(float(p.get("lat")), float(p.get("lon"))) for p in track] == points
    assert all(p.find("g:time", ns).text.endswith("Z") for p in track)
    assert any("ALARM panic" in w.find("g:name", ns).text for w in root.findall("g:wpt", ns))

    code, out = _export(capsys, "--key-file", keys, "--format", "geojson")
    assert code == 0
    collection = json.loads(out.out)
    coords = [tuple(f["geometry"]["coordinates"]) for f in collection["features"]
              if f["properties"]["kind"] == "position"]
    assert [(lat, lon) for lon, lat in coords] == points


def test_without_keys_and_bad_arguments_one_line_exit_2(tmp_path, keys, capsys):
    for argv in ([], ["--to", "http://x:1"], ["--key-file", str(tmp_path / "none.json")]):
        code, out = _export(capsys, *argv)
        assert code == 2, argv
        assert out.out == "" and len(out.err.strip().splitlines()) == 1, (argv, out.err)
    assert export_mod.main([str(tmp_path / "missing.pcapng"), "--key-file", keys]) == 2
    assert "cannot read" in capsys.readouterr().err


class _OsmAnd(BaseHTTPRequestHandler):
    """Accepts what Traccar's OsmAnd decoder needs, refuses anything else with 400."""
    received = []

    def do_POST(self):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        ok = (query.get("id", "").isdigit() and query.get("timestamp", "").isdigit()
              and -90 <= float(query.get("lat", "nan")) <= 90
              and -180 <= float(query.get("lon", "nan")) <= 180
              and float(query.get("speed", "-1")) >= 0
              and 0 <= float(query.get("bearing", "-1")) < 360)
        if ok:
            self.received.append(query)
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_osmand_forwarder_posts_every_record_with_traccar_fields(keys, capsys):
    _OsmAnd.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OsmAnd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        code, out = _export(capsys, "--key-file", keys, "--to", "osmand://127.0.0.1:%d" % port)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, out
    _code, plain = _export(capsys, "--key-file", keys)
    rows = [json.loads(line) for line in plain.out.splitlines() if '"lat"' in line]
    assert out.out.strip() == "forwarded %d records to osmand://127.0.0.1:%d" % (len(rows), port)
    assert len(_OsmAnd.received) == len(rows)
    first = _OsmAnd.received[0]
    assert first["id"] == "1003"
    assert (float(first["lat"]), float(first["lon"])) == (rows[0]["lat"], rows[0]["lon"])
    assert int(first["timestamp"]) == rows[0]["fix_time_ms"] // 1000
    sos = [q for q in _OsmAnd.received if q.get("alarm") == "sos"]
    assert len(sos) == 1
    assert any("batt" in q for q in _OsmAnd.received)


def test_osmand_forwarder_with_nothing_listening_exits_1(keys, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    code, out = _export(capsys, "--key-file", keys, "--to", "osmand://127.0.0.1:%d" % port)
    assert code == 1 and "failed" in out.out
