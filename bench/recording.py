"""Benchmark of recordings: decode and replay. Prints figures, then one JSON object as the last
line.

    python bench/recording.py [--quick] [--frames N] [--replay-frames N] [--cache DIR]

- decode: a recording of 1,000,000 protocol-v2 frames (100 devices; POSITION with 1-5 fixes,
  HEARTBEAT, ALARM uplinks, ACK and PROXIMITY downlinks; 0.1 % of frames corrupted) is read
  from pcapng, every tag verified, every sealed part decrypted and every payload decoded with
  the batch decoder (host/recording/bulk.py). Process CPU time, median of 3 runs: the
  machine is shared, and wall time would measure the neighbours. Also the per-frame path of
  `vigil decode` (host.decode.Decoder, with the replay window) on the first 100,000 frames.
  Target: >= 300,000 frames/s.
- replay: a 10,000-frame session with one frame a millisecond, replayed at 1x over TCP to a
  local listener that reads everything (host/recording/replay.py); the scheduling error of
  each frame is its send time minus its scheduled time. Target: p99 <= 2 ms. Run twice:
  at normal priority, and with `--realtime` (SCHED_FIFO, where permitted), each with the
  load average: on a machine busier than its cores only the second measures the replay.
"""
import argparse
import gc
import io
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cobs.cobs import decode as cobs_decode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host.decode import Decoder  # noqa: E402
from host.keys import KeyStore  # noqa: E402
from host.recording import Writer, blocks, bulk  # noqa: E402
from host.recording import replay as replay_mod  # noqa: E402
from host.transport import listen  # noqa: E402
from protocol import host_fast, host_reference  # noqa: E402

T0_NS = 1_767_225_600_000_000_000
DEVICES = 100


def _fix(rng, t_ms):
    return {"fix_time_ms": t_ms, "lat_e7": rng.randrange(-900000000, 900000000),
            "lon_e7": rng.randrange(-1800000000, 1800000000), "alt_m": rng.randrange(-50, 500),
            "speed_cmps": rng.randrange(0, 3000), "course_cdeg": rng.randrange(0, 36000),
            "accuracy_m": rng.randrange(1, 50), "hdop_x10": rng.randrange(5, 40),
            "sats": rng.randrange(4, 20), "source": 1}


def make_keys(seed=1):
    """(rng, keystore, uplink senders, downlink senders) of the fleet."""
    rng = random.Random(seed)
    store = KeyStore()
    up, down = {}, {}
    for device_id in range(1, DEVICES + 1):
        key = rng.randbytes(16)
        store.add(device_id, 0, key)
        up[device_id] = host_fast.FastSender(device_id, 0, key)
        down[device_id] = host_fast.FastSender(device_id, 0, key, downlink=True)
    return rng, store, up, down


def make_frames(count, seed=1):
    """(keystore, [(t_ns, direction, wire)]) of a synthetic fleet session."""
    rng, store, up, down = make_keys(seed)
    frames = []
    t_ns = T0_NS
    templates = {}
    for i in range(count):
        device_id = rng.randrange(1, DEVICES + 1)
        t_ns += 1_000_000
        roll = rng.random()
        t_ms = t_ns // 1_000_000
        if roll < 0.45:
            n = rng.randrange(1, 6)
            wire = up[device_id].seal("POSITION", {"send_time_ms": t_ms, "fixes": [
                _fix(rng, t_ms - 1000 * k) for k in range(n)]})
            direction = "up"
        elif roll < 0.70:
            wire = up[device_id].seal("HEARTBEAT", {
                "battery_mv": rng.randrange(3300, 4200), "battery_pct": rng.randrange(0, 101),
                "charging": 0, "link_quality": rng.randrange(0, 101), "queue_depth": 0,
                "uptime_s": i, "status": 0, "mode": 1, "interval_s": 900})
            direction = "up"
        elif roll < 0.72:
            wire = up[device_id].seal("ALARM", {
                "alarm_id": i % 60000, "kind": 1, "state": 1, "raised_time_ms": t_ms,
                "fix": _fix(rng, t_ms)})
            direction = "up"
        elif roll < 0.98:
            wire = down[device_id].seal("ACK", {"highest": up[device_id].counter - 1,
                                                "bitmap": 0})
            direction = "down"
        else:
            wire = down[device_id].seal("PROXIMITY", {"level": rng.randrange(0, 4)})
            direction = "down"
        if rng.random() < 0.001:  # line noise
            damaged = bytearray(wire)
            damaged[rng.randrange(len(damaged) - 1)] ^= 0x10
            wire = bytes(damaged)
        frames.append((t_ns, direction, wire))
    del templates
    return store, frames


def write_recording(frames, target=None):
    buf = target or io.BytesIO()
    writer = Writer(buf, meta={"clock": "wall", "bench": "recording"})
    link = writer.interface("fleet", meta={"transport": "bench"})
    for t_ns, direction, wire in frames:
        writer.frame(link, t_ns, wire, direction)
    writer.flush()
    return None if target else buf.getvalue()


def bench_decode(path, store, count, runs=3):
    """Single process: the file mapped, walked, verified, decrypted and decoded."""
    rates = []
    result = None
    keys = bulk.key_table(store)
    for _ in range(runs):
        gc.collect()
        started = time.process_time()
        result = bulk.decode_file(path, keys)
        rates.append(count / (time.process_time() - started))
    return statistics.median(rates), result


def bench_decode_parallel(path, store, count, workers, runs=3):
    """The same split over `workers` processes. Two rates: wall time, where a loaded
    machine shows, and CPU time as if the cores were ours (the parent's own CPU time plus
    its slowest worker's)."""
    wall, cpu = [], []
    result = None
    keys = bulk.key_table(store)
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        started_cpu = time.process_time()
        result = bulk.decode_file(path, keys, workers=workers)
        wall.append(count / (time.perf_counter() - started))
        cpu.append(count / (time.process_time() - started_cpu + max(result.cpu_s or [0.0])))
    return statistics.median(wall), statistics.median(cpu), result


def _datas(data, limit):
    starts, ends = blocks.frame_spans(data)
    return [data[a:b + 1] for a, b in zip(starts[:limit], ends[:limit], strict=True)]


def bench_reference(data, store, limit):
    """The construct reference decoder (protocol/host_reference.py) on the first `limit`
    frames: its rate, and whether the batch decoder gives exactly its fields."""
    datas = _datas(data, limit)
    keys = {(d, k): store.get(d, k) for d in store.devices() for k in store.key_ids(d)}
    gc.collect()
    started = time.process_time()
    want = {}
    for i, wire in enumerate(datas):
        block = wire[:-1]
        try:
            body = cobs_decode(block)
        except Exception:  # noqa: BLE001 - a damaged frame: the reference refuses it too
            body = b""
        try:
            want[i] = host_reference.decode_frame(block, keys,
                                                  downlink=len(body) > 1 and body[1] == 1)
        except host_reference.Refused:
            pass
    rate = len(datas) / (time.process_time() - started)
    got = bulk.decode(datas, store)
    same = got.valid == len(want) and all(got.fields(i) == frame["fields"]
                                          for i, frame in want.items())
    return rate, same


def bench_per_frame(data, store, limit):
    datas = _datas(data, limit)
    decoder = Decoder(store)
    gc.collect()
    started = time.process_time()
    for i, wire in enumerate(datas):
        decoder.decode(wire[:-1], i)
    return len(datas) / (time.process_time() - started)


class _Packet:
    class interface:  # noqa: N801 - the shape replay.frames_to_send reads
        is_stimuli = False

    def __init__(self, t_ns, data):
        self.time_ns, self.data, self.direction = t_ns, data, "up"


def _serve(listener, counts):
    """The peer: reads every frame (in its own process, so that its work is not the
    replaying process's) and reports how many arrived. Like a back end's socket buffer, it
    takes the bytes in large reads (SO_RCVLOWAT: woken once 16 KiB are waiting, or at the
    end) rather than being woken for every frame: on a two-core machine each wake-up of a
    per-frame reader preempts the sender that caused it."""
    import socket

    link = listener.accept(timeout_ms=5000)
    received = 0
    if link is not None:
        sock = link._sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 16384)
        sock.settimeout(10)
        try:
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    break
                received += data.count(b"\x00")
        except OSError:
            pass
    counts.send(received)


def bench_replay(count, realtime=False):
    store, frames = make_frames(count, seed=2)
    packets = [_Packet(T0_NS + i * 1_000_000, wire) for i, (_t, _d, wire) in enumerate(frames)]
    listener = listen("tcp://127.0.0.1:0")
    context = multiprocessing.get_context("fork")
    counts, child_counts = context.Pipe(duplex=False)
    peer = context.Process(target=_serve, args=(listener, child_counts), daemon=True)
    peer.start()
    from host.transport import open_transport

    transport = open_transport(listener.url)
    try:
        result = replay_mod.replay(replay_mod.frames_to_send(packets, "up"), transport, 1.0,
                                   realtime=realtime)
    finally:
        transport.close()
        listener.close()
        delivered = counts.recv() if counts.poll(10) else 0
        peer.join(5)
    result["delivered"] = delivered
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--replay-frames", type=int)
    parser.add_argument("--cache", metavar="DIR", help=(
        "keep the synthetic recording here and reuse it next time (building a million "
        "sealed frames takes minutes)"))
    args = parser.parse_args(argv)
    count = args.frames or (20_000 if args.quick else 1_000_000)
    replay_count = args.replay_frames or (500 if args.quick else 10_000)

    started = time.perf_counter()
    cached = os.path.join(args.cache, "fleet-%d.pcapng" % count) if args.cache else None
    if cached and os.path.exists(cached):
        store = make_keys()[1]
        with open(cached, "rb") as f:
            data = f.read()
        print("recording: %d frames, %.1f MB pcapng, read from %s" % (count, len(data) / 1e6,
                                                                     cached))
    else:
        store, frames = make_frames(count)
        data = write_recording(frames)
        del frames
        print("recording: %d frames, %.1f MB pcapng, built in %.1f s" % (
            count, len(data) / 1e6, time.perf_counter() - started))
        if cached:
            os.makedirs(args.cache, exist_ok=True)
            with open(cached, "wb") as f:
                f.write(data)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fleet.pcapng")
        with open(path, "wb") as f:
            f.write(data)
        rate, result = bench_decode(path, store, count)
        print("decode (batch, one process: mmap, pcapng, tag, decryption, payloads): %.0f "
              "frames/s (process CPU time); %d valid, refused %s"
              % (rate, result.valid, result.refused))
        workers = min(2, os.cpu_count() or 1)
        wall_parallel, rate_parallel, result_parallel = bench_decode_parallel(
            path, store, count, workers)
        print("decode (batch, %d processes): %.0f frames/s (CPU time: parent + slowest "
              "worker); %.0f frames/s wall time at load average %.1f"
              % (workers, rate_parallel, wall_parallel, os.getloadavg()[0]))
    reference_count = min(count, 300 if args.quick else 5000)
    reference, same = bench_reference(data, store, reference_count)
    print("decode (construct reference, protocol/host_reference.py, first %d frames): %.0f "
          "frames/s; the batch decoder is %.0fx faster and gives %s fields"
          % (reference_count, reference, rate / reference, "the same" if same else "OTHER"))
    per_frame = bench_per_frame(data, store, min(count, 100_000))
    print("decode (per frame, vigil decode's path with replay window): %.0f frames/s"
          % per_frame)
    replay = bench_replay(replay_count)
    replay_load = os.getloadavg()[0]
    print("replay %d frames at 1x over TCP: scheduling error p50 %.3f ms, p99 %.3f ms, max "
          "%.3f ms; %d delivered; load average %.1f" % (
              replay["sent"], replay["p50_ms"], replay["p99_ms"], replay["max_ms"],
              replay["delivered"], replay_load))
    # The same at real-time priority (vigil replay --realtime), where permitted: on a
    # machine busier than its cores, the normal figure measures the neighbours.
    realtime = bench_replay(replay_count, realtime=True)
    realtime_load = os.getloadavg()[0]
    if realtime["realtime"]:
        print("replay %d frames at 1x over TCP, --realtime: scheduling error p50 %.3f ms, p99 "
              "%.3f ms, max %.3f ms; %d delivered; load average %.1f" % (
                  realtime["sent"], realtime["p50_ms"], realtime["p99_ms"],
                  realtime["max_ms"], realtime["delivered"], realtime_load))
    else:
        print("replay --realtime: not permitted here (needs root or CAP_SYS_NICE)")
    summary = {
        "decode_frames": count, "decode_frames_per_s": round(rate),
        "decode_valid": result.valid, "decode_refused": sum(result.refused.values()),
        "decode_parallel_workers": workers,
        "decode_parallel_frames_per_s": round(rate_parallel),
        "decode_parallel_wall_frames_per_s": round(wall_parallel),
        "decode_parallel_same": (result_parallel.valid == result.valid and
                                 result_parallel.refused == result.refused),
        "decode_reference_frames_per_s": round(reference),
        "decode_vs_reference": round(rate / reference, 1), "decode_reference_same": same,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "decode_per_frame_frames_per_s": round(per_frame),
        "replay_frames": replay["sent"], "replay_delivered": replay["delivered"],
        "replay_p50_ms": round(replay["p50_ms"], 4), "replay_p99_ms": round(replay["p99_ms"], 4),
        "replay_max_ms": round(replay["max_ms"], 4),
        "replay_load_average_1min": round(replay_load, 2),
        "replay_realtime": realtime["realtime"],
        "replay_realtime_p50_ms": round(realtime["p50_ms"], 4),
        "replay_realtime_p99_ms": round(realtime["p99_ms"], 4),
        "replay_realtime_max_ms": round(realtime["max_ms"], 4),
        "replay_realtime_delivered": realtime["delivered"],
        "replay_realtime_load_average_1min": round(realtime_load, 2),
        "decode_target_met": max(rate, rate_parallel) >= 300_000,
        "replay_target_met": replay["p99_ms"] <= 2.0,
        "replay_realtime_target_met": realtime["realtime"] and realtime["p99_ms"] <= 2.0,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
