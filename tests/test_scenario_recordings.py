"""Every built-in scenario, recorded (`vigil emulate NAME --record`):
- no plaintext encoding of the victim's coordinates appears anywhere in the file;
- tshark with protocol/wireshark/vigil.lua and `vigil decode` agree on every frame (name,
  direction, device, counter, status and every decrypted field).
tshark comes from Debian (.ci/run installs it); without it the comparison is skipped."""
import json
import math
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from host import scenario as scenarios
from host.decode import main as decode_main
from host.emulator import Route
from host.recording import emu, read_all
from protocol import host_make_dissector

LUA = Path(host_make_dissector.LUA_PATH)
TSHARK = shutil.which("tshark")
NAMES = scenarios.builtin_names()


def test_the_generated_part_of_the_dissector_is_fresh():
    assert host_make_dissector.main(["--check"]) == 0


def _record(name, directory):
    sc = scenarios.load(name)
    path = directory / (name + ".pcapng")
    emu.record(sc, sc["scenario"]["seed"], str(path))
    keys = directory / (name + ".keys.json")
    keys.write_text(emu.session_keys(sc, sc["scenario"]["seed"]).to_json())
    return sc, path, keys


def _decoded(path, keys, capsys):
    capsys.readouterr()
    decode_main([str(path), "--json", "--key-file", str(keys)])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _victim_points(sc, decoded):
    """(lat, lon) of every place the victim was: home, waypoints, GPX points, and every fix
    the devices reported (decrypted)."""
    points = set()
    for spec in sc["device"]:
        points.add(tuple(spec["location"]))
        route = spec["route"]
        if route and route.get("waypoints"):
            points.update((p[0], p[1]) for p in route["waypoints"])
        if route and route.get("gpx"):
            points.update((leg[2], leg[3]) for leg in Route.from_gpx(route["gpx"])._legs)
    for result in decoded:
        fields = result.get("fields") or {}
        for fix in list(fields.get("fixes") or []) + [fields.get("fix"), fields.get("last_fix")]:
            if fix:
                points.add((fix["lat_e7"] / 1e7, fix["lon_e7"] / 1e7))
    return points


def _encodings(lat, lon):
    """Ways a position could be written in clear. Binary forms of 4 bytes are searched for
    as the (lat, lon) pair, as a fix record holds them: a lone 4-byte value turns up by
    chance in a few hundred kilobytes of ciphertext (2**-32 per offset and needle)."""
    out = set()
    for a, b in ((lat, lon), (lon, lat)):
        for scale in (1e7, 1e6):
            for fmt in (">ii", "<ii"):
                out.add(struct.pack(fmt, round(a * scale), round(b * scale)))
        out |= {struct.pack(fmt, a, b) for fmt in (">ff", "<ff")}
    for value in (lat, lon):
        out |= {struct.pack(fmt, value) for fmt in (">d", "<d")}
        out |= {("%.*f" % (digits, value)).encode() for digits in (3, 4, 5, 6, 7)}
        out.add(str(round(value * 1e7)).encode())
        degrees = int(abs(value))
        minutes = (abs(value) - degrees) * 60
        out.add(("%d%07.4f" % (degrees, minutes)).encode())  # NMEA ddmm.mmmm
    return out


@pytest.mark.parametrize("name", NAMES)
def test_builtin_scenario_recording(name, tmp_path, capsys):
    """One recording per scenario (each takes seconds), checked both ways."""
    sc, path, keys = _record(name, tmp_path)
    decoded = _decoded(path, keys, capsys)
    _check_no_coordinates(name, sc, path.read_bytes(), decoded)
    if TSHARK is not None:  # test_tshark_is_installed says when it is not
        _check_tshark_agrees(name, path, keys, decoded)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark), "
                    "so the dissector is not compared with vigil decode")
def test_tshark_is_installed():
    assert TSHARK


def _check_no_coordinates(name, sc, data, decoded):
    points = _victim_points(sc, decoded)
    assert points
    if any(r.get("fields") and (r["fields"].get("fixes") or r["fields"].get("fix"))
           for r in decoded):
        assert len(points) > len(sc["device"])  # fixes were decrypted and are searched for
    for lat, lon in points:
        for needle in _encodings(lat, lon):
            assert len(needle) >= 5 and math.isfinite(lat + lon)
            assert needle not in data, (name, lat, lon, needle)


def _words(fields, prefix=""):
    out = []
    if isinstance(fields, dict):
        for key, value in fields.items():
            out += _words(value, prefix + key + ".")
    elif isinstance(fields, list):
        for i, value in enumerate(fields):
            out += _words(value, prefix + str(i) + ".")
    else:
        out.append("%s=%s" % (prefix[:-1], "none" if fields is None else fields))
    return out


def _vigil_rows(decoded):
    rows = []
    for r in decoded:
        if r.get("kind") == "stimulus":
            rows.append(("stimulus",))
            continue
        status = r["status"]
        if status in ("retransmission",) or r.get("reason") == "replayed":
            status = "ok"  # tshark sees frames one by one: no replay window
        elif status == "invalid":
            status = r["reason"]
        if "name" not in r:
            rows.append((status,))
            continue
        fields = r["fields"]
        words = " ".join(sorted(_words(fields))) if fields is not None else ""
        rows.append((status, r["name"], r["direction"], str(r["device_id"]),
                     str(r["counter"]), words))
    return rows


def _tshark_rows(path, keys):
    out = subprocess.run(
        [TSHARK, "-X", "lua_script:%s" % LUA, "-o", "vigil.key_file:%s" % keys, "-r", str(path),
         "-T", "fields", "-E", "separator=/t", "-e", "frame.protocols", "-e", "vigil.status",
         "-e", "vigil.name", "-e", "vigil.direction", "-e", "vigil.device_id",
         "-e", "vigil.counter", "-e", "vigil.fields"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, LC_ALL="C"))
    assert out.returncode == 0, out.stderr
    assert "Lua" not in out.stderr and "Error" not in out.stderr, out.stderr
    rows = []
    for line in out.stdout.splitlines():
        protocols, status, name, direction, device_id, counter, words = line.split("\t")
        if protocols.endswith("vigil_stimulus"):
            rows.append(("stimulus",))
        elif not name or status not in ("ok", "unverified"):
            rows.append((status,))
        else:
            rows.append((status, name, direction, device_id, counter, words))
    return rows


def _check_tshark_agrees(name, path, keys, decoded):
    vigil_rows = _vigil_rows(decoded)
    tshark_rows = _tshark_rows(path, keys)
    _reader, packets = read_all(str(path))
    assert len(vigil_rows) == len(tshark_rows) == len(packets)
    for i, (ours, theirs) in enumerate(zip(vigil_rows, tshark_rows, strict=True)):
        assert ours == theirs, (name, i + 1)
    assert sum(1 for row in vigil_rows if row[0] == "ok") > 5


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")
def test_without_a_key_tshark_shows_the_header_and_encrypted(tmp_path):
    path = Path(__file__).parent / "golden" / "panic-walk.pcapng"
    out = subprocess.run(
        [TSHARK, "-X", "lua_script:%s" % LUA, "-r", str(path), "-T", "fields",
         "-e", "vigil.name", "-e", "vigil.device_id", "-e", "vigil.encrypted",
         "-e", "vigil.status", "-e", "vigil.fields", "-Y", "vigil"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, LC_ALL="C"))
    lines = out.stdout.splitlines()
    # Protocol v2 seals the type and payload: the routing header is all that shows.
    assert len(lines) > 100 and all(
        line.split("\t") == ["SEALED", "1003", "encrypted", "unverified", ""]
        for line in lines), lines[:3]
