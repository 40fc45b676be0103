"""The NMEA parser under the real MicroPython VM in a 48K heap: same epochs as CPython."""

import datetime
import random

import pytest

from firmware.gnss import NmeaParser
from tests.test_nmea import WHEN, gga, gsa, rmc
from tests.vm import device_lib, needs_micropython, run_micropython

pytestmark = [pytest.mark.micropython, needs_micropython]


def test_vm_parses_a_noisy_stream_like_cpython(tmp_path):
    rng = random.Random(3)
    blob = b""
    for s in range(40):
        t = WHEN + datetime.timedelta(seconds=s)
        lat, lon = -33.8 + rng.uniform(-1, 1), 151.2 + rng.uniform(-1, 1)
        status = "V" if s % 9 == 4 else "A"
        blob += rmc(t, lat, lon, status=status, spd=rng.uniform(0, 80), cog=rng.uniform(0, 359))
        blob += gga(t, lat, lon, quality=0 if status == "V" else 1, alt=rng.uniform(-50, 3000))
        blob += gsa()
        if s % 7 == 0:
            blob += bytes(rng.randrange(256) for _ in range(30))  # line noise
    stream = tmp_path / "nmea.bin"
    stream.write_bytes(blob)
    script = (
        "from firmware.gnss import NmeaParser\np = NmeaParser()\n"
        "f = open(%r, 'rb')\nbuf = bytearray(64)\nmv = memoryview(buf)\n"
        "while True:\n    n = f.readinto(buf)\n    if not n:\n        break\n"
        "    for e in p.feed(mv[:n]):\n        print(repr(sorted(e.items())))\n"
        "print(p.sentences, p.bad_checksum, p.garbage, p.ignored)\n"
        % str(stream)
    )
    result = run_micropython(script, path=[device_lib(tmp_path, compiled=True)])
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    lines = result.stdout.decode().splitlines()
    parser = NmeaParser()
    want = [sorted(e.items()) for e in parser.feed(blob)]
    assert lines[:-1] == [repr(e) for e in want]
    assert lines[-1] == "%d %d %d %d" % (
        parser.sentences, parser.bad_checksum, parser.garbage, parser.ignored
    )
    assert sum(1 for e in want if dict(e).get("no_fix")) >= 4
