"""Fuzzing harness for the centre's receive path and the decoders (bench/fuzz.py, tests).

    target = FuzzTarget(seed=1)
    target.run(data)          # one input: never raises; counts what went wrong
    target.stats()            # {"inputs", "crashes", "forged_accepted", "replayed_accepted"}
    mutate(rng, corpus)       # one structure-aware mutant (valid CRC and COBS half the time)

Each input goes, as one chunk on one link, through `Centre.receive` (deframing, the fast
receiver, replay check, handlers, the evidence log), through both codecs' receivers and
through `vigil decode`'s decoder with and without keys. Oracles:
- crash: any exception escaping any of them;
- forged_accepted: the centre delivered a frame whose body no genuine sender sealed;
- replayed_accepted: the centre delivered the same genuine body twice.
The genuine frames (the corpus) are sealed with the devices' real keys and delivered once at
start, so every later copy of one is a replay.
"""
import random
import struct

from host.centre.centre import Centre, CentreConfig
from host.decode import Decoder
from host.keys import KeyStore
from protocol import codec, framing, host_fast, host_make_vectors, messages

KEYS = {(7, 1): bytes(range(16)), (8, 1): bytes(range(1, 17)), (8, 2): bytes(range(2, 18))}
_FIX = {"fix_time_ms": 1767225600000, "lat_e7": 523702000, "lon_e7": 48952000, "alt_m": 2,
        "speed_cmps": 140, "course_cdeg": 27000, "accuracy_m": 5, "hdop_x10": 9, "sats": 11,
        "source": 1}
T0_MS = 1_767_600_000_000


def genuine_frames():
    """A corpus of real uplinks and downlinks of every kind, sealed with the real keys."""
    out = []
    for (device_id, key_id), key in sorted(KEYS.items()):
        up = host_fast.FastSender(device_id, key_id, key)
        down = host_fast.FastSender(device_id, key_id, key, downlink=True)
        out += [
            up.seal("HELLO", {"fw_major": 1, "fw_minor": 0, "fw_patch": 0,
                              "schema_hash": messages.SCHEMA_HASH, "reset_cause": 1,
                              "boot_count": 1, "config_version": 0, "mode": 1,
                              "interval_s": 900}),
            up.seal("HEARTBEAT", {"battery_mv": 3900, "battery_pct": 80, "charging": 0,
                                  "link_quality": 90, "queue_depth": 0, "uptime_s": 10,
                                  "status": 0, "mode": 1, "interval_s": 900}),
            up.seal("ALARM", {"alarm_id": 1, "kind": 1, "state": 1, "raised_time_ms": T0_MS,
                              "fix": _FIX}),
            up.seal("POSITION", {"send_time_ms": T0_MS, "fixes": [_FIX] * 7}),
            up.seal("NO_FIX", {"send_time_ms": T0_MS, "age_s": 5, "last_fix": None}),
            up.seal("EVENT", {"kind": 1, "time_ms": T0_MS, "value": 3}),
            up.seal("ACK", {"highest": 3, "bitmap": 5}),
            down.seal("PROXIMITY", {"level": 2}),
            down.seal("CONFIG", {"config_version": 2, "items": [(1, 60), (9, 10000)]}),
        ]
    return out + [host_make_vectors.V1_HEARTBEAT]


def _restuff(body):
    return framing.cobs_encode(body) + b"\x00"


def mutate(rng, corpus):
    """One mutant: byte-level (flips, inserts, deletes, splices, random bytes) or, half the
    time, a mutated body re-stuffed with a valid CRC, so the input reaches the version, tag
    and payload checks instead of dying at the CRC."""
    base = bytearray(rng.choice(corpus))
    choice = rng.randrange(10)
    if choice == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 600)))
    if choice == 1:  # splice two frames, maybe cut
        other = rng.choice(corpus)
        data = bytes(base) + other
        cut = rng.randrange(len(data) + 1)
        return data[:cut] if rng.random() < 0.5 else data
    if choice <= 4:  # raw byte mutations of the wire
        for _ in range(rng.randrange(1, 8)):
            op = rng.randrange(4)
            pos = rng.randrange(len(base) + 1)
            if op == 0 and pos < len(base):
                base[pos] ^= 1 << rng.randrange(8)
            elif op == 1:
                base[pos:pos] = bytes([rng.getrandbits(8)])
            elif op == 2 and pos < len(base):
                del base[pos]
            else:
                base[pos:pos] = b"\x00"
        return bytes(base)
    # structured: unstuff, mutate the body (header fields, sealed bytes, tag, length), then
    # recompute the CRC and restuff
    try:
        body = bytearray(framing.cobs_decode(bytes(base[:-1])))
    except ValueError:
        return bytes(base)
    body = body[:-2]
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        if op == 0 and body:
            body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
        elif op == 1 and len(body) > 11:  # a header field
            field = rng.choice([(0, 1), (1, 1), (2, 1), (3, 4), (7, 4)])
            value = rng.choice([0, 1, 2, 0xFF, 0xFFFFFFFF, rng.getrandbits(32)])
            width = field[1]
            body[field[0]:field[0] + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(
                width, "big")
        elif op == 2:
            body = body[:rng.randrange(len(body) + 1)]
        elif op == 3:
            body += bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40)))
        elif op == 4 and len(body) > 21:  # swap in another frame's sealed part or tag
            other = framing.cobs_decode(rng.choice(corpus)[:-1])
            cut = rng.randrange(11, min(len(body), len(other)) + 1)
            body = body[:cut] + bytearray(other[cut:-2])
        else:
            body = body[:11] + bytearray(rng.getrandbits(8) for _ in range(len(body) - 11))
    body = bytes(body)
    return _restuff(body + struct.pack(">H", framing.crc16(body)))


class FuzzTarget:
    def __init__(self):
        # No rate limit: every input must be parsed, not dropped as part of a flood.
        self.centre = Centre(KEYS, CentreConfig(operator_ack_delay_ms=0, refused_per_s=10**9))
        self.corpus = genuine_frames()
        self.genuine = set()
        for wire in self.corpus:
            try:
                self.genuine.add(framing.cobs_decode(wire[:-1]))
            except ValueError:
                pass
        self.delivered = {}
        log = self.centre.evidence
        original = log.frame

        def record(rx_ms, link, outcome, frame=None, detail=""):
            if outcome == "delivered" and frame is not None:
                self.delivered[frame.raw] = self.delivered.get(frame.raw, 0) + 1
            return original(rx_ms, link, outcome, frame, detail)

        log.frame = record
        self.keystore = KeyStore.coerce(KEYS)
        self.decoders = [Decoder(self.keystore), Decoder(None)]
        portable = codec.Keyring()
        fast = host_fast.Keyring()
        for (device_id, key_id), key in KEYS.items():
            portable.add(device_id, key_id, key)
            fast.add(device_id, key_id, key)
        self.receivers = [codec.Receiver(portable), codec.Receiver(portable, downlink=True),
                          host_fast.FastReceiver(fast), host_fast.FastReceiver(fast, True)]
        self.inputs = self.crashes = 0
        self.first_crash = None
        self.now_ms = T0_MS
        for wire in self.corpus:  # the genuine frames arrive once, first
            self.run(wire)

    def run(self, data):
        self.inputs += 1
        self.now_ms += 7
        try:
            self.centre.receive("link%d" % (self.inputs % 13), data, self.now_ms)
            if self.inputs % 97 == 0:
                self.centre.tick(self.now_ms)
            for receiver in self.receivers:
                for item in receiver.feed(data):
                    if not isinstance(item, (codec.Frame, codec.FrameError)):
                        raise TypeError("receiver yielded %r" % (item,))
            for decoder in self.decoders:
                for block in data.split(b"\x00"):
                    if block:
                        decoder.decode(block)
        except Exception as e:  # noqa: BLE001 - any escape is a crash, by definition
            self.crashes += 1
            if self.first_crash is None:
                self.first_crash = "%s: %s (input %s)" % (type(e).__name__, e, data.hex())

    def stats(self):
        forged = sum(n for raw, n in self.delivered.items() if raw not in self.genuine)
        replayed = sum(n - 1 for raw, n in self.delivered.items() if n > 1)
        return {"inputs": self.inputs, "crashes": self.crashes, "forged_accepted": forged,
                "replayed_accepted": replayed}


def fuzz(n, seed=1, target=None):
    """Run n structure-aware random mutants; returns the target."""
    rng = random.Random(seed)
    target = target or FuzzTarget()
    for _ in range(n):
        target.run(mutate(rng, target.corpus))
    return target
