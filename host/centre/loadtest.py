"""Load scenarios against a real CentreServer on loopback TCP (bench/flood.py,
bench/connections.py and their reduced tests share them).

    result = asyncio.run(flood(junk_peers=10, junk_bps=1_000_000, devices=100, duration_s=10))
    result = asyncio.run(connections(links=5000))

Both run the server and the clients on one asyncio loop in this process, so every latency
includes the clients' own work: the figures are conservative. Only 127.0.0.1 is used.
"""
import asyncio
import os
import random
import resource
import time

from host.centre.centre import Centre, CentreConfig
from host.centre.server import CentreServer
from protocol import codec, host_fast, messages

KEY_BASE = bytes(range(16))


def device_key(device_id):
    return bytes((b + device_id) & 0xFF for b in KEY_BASE)


def _hello(boot_count=1):
    return {"fw_major": 1, "fw_minor": 0, "fw_patch": 0, "schema_hash": messages.SCHEMA_HASH,
            "reset_cause": 1, "boot_count": boot_count, "config_version": 0,
            "mode": 1, "interval_s": 900}


_HEARTBEAT = {"battery_mv": 3900, "battery_pct": 80, "charging": 0, "link_quality": 90,
              "queue_depth": 0, "uptime_s": 10, "status": 0, "mode": 1, "interval_s": 900}


def make_centre(device_ids, evidence=":memory:"):
    keys = {(d, 1): device_key(d) for d in device_ids}
    return Centre(keys, CentreConfig(operator_ack_delay_ms=100), evidence=evidence)


async def _close(writer):
    """Close a client connection; a peer that already went away is not an error."""
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def start(centre):
    server = CentreServer(centre)
    url = await server.start_tcp("tcp://127.0.0.1:0")
    stop = asyncio.Event()
    task = asyncio.ensure_future(server.run(stop))
    port = int(url.rsplit(":", 1)[1])
    return server, port, stop, task


async def _await_ack(reader, receiver, counter, timeout_s):
    """Read until an ACK covering `counter` arrives; returns True, or False on timeout/EOF."""
    deadline = time.perf_counter() + timeout_s
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return False
        try:
            data = await asyncio.wait_for(reader.read(4096), left)
        except asyncio.TimeoutError:
            return False
        if not data:
            return False
        for item in receiver.feed(data):
            if isinstance(item, codec.Frame) and item.name == "ACK":
                highest, bitmap = item.fields["highest"], item.fields["bitmap"]
                offset = highest - counter
                if offset == 0 or 0 < offset <= 64 and bitmap >> (offset - 1) & 1:
                    return True


async def device(port, device_id, delay_s, heartbeats=1, timeout_s=5.0):
    """One genuine device: connect, HELLO, then heartbeats; returns HELLO→ACK latency in s
    (None if unanswered within timeout_s)."""
    await asyncio.sleep(delay_s)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ring = host_fast.Keyring()
    ring.add(device_id, 1, device_key(device_id))
    receiver = host_fast.FastReceiver(ring, downlink=True)
    sender = host_fast.FastSender(device_id, 1, device_key(device_id))
    try:
        start_s = time.perf_counter()
        writer.write(sender.seal("HELLO", _hello()))
        await writer.drain()
        latency = None
        if await _await_ack(reader, receiver, 1, timeout_s):
            latency = time.perf_counter() - start_s
        for _ in range(heartbeats):
            counter = sender.counter
            writer.write(sender.seal("HEARTBEAT", _HEARTBEAT))
            await writer.drain()
            await _await_ack(reader, receiver, counter, timeout_s)
        return latency
    finally:
        await _close(writer)


async def junk_peer(port, rate_bps, duration_s, seed, chunk=16384):
    """A keyless stranger sending random bytes at rate_bps for duration_s; returns bytes
    sent."""
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    start_s = time.perf_counter()
    try:
        while True:
            elapsed = time.perf_counter() - start_s
            if elapsed >= duration_s:
                break
            due = rate_bps * elapsed
            if sent > due:
                await asyncio.sleep(min(0.05, (sent - due) / rate_bps))
                continue
            data = os.urandom(chunk) if rng.random() < 0.5 else bytes(
                rng.getrandbits(8) | 1 for _ in range(64)) * (chunk // 64)  # no zeros at all
            writer.write(data)
            sent += len(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        await _close(writer)
    return sent


def evidence_rows(centre):
    db = centre.evidence._db
    return {t: db.execute("SELECT COUNT(*) FROM %s" % t).fetchone()[0]
            for t in ("frames", "refusals", "events", "downlinks")}


async def flood(junk_peers=10, junk_bps=1_000_000, devices=100, duration_s=10.0, seed=1):
    ids = list(range(1000, 1000 + devices))
    centre = make_centre(ids)
    server, port, stop, task = await start(centre)
    before = evidence_rows(centre)
    rng = random.Random(seed)
    try:
        junk = [asyncio.ensure_future(junk_peer(port, junk_bps, duration_s, seed + i))
                for i in range(junk_peers)]
        await asyncio.sleep(0.2)  # the flood is on before the first device
        latencies = await asyncio.gather(*[
            device(port, d, rng.uniform(0, max(0.0, duration_s - 1.5))) for d in ids])
        sent = await asyncio.gather(*junk)
        await asyncio.sleep(0.2)  # the junk links' closes reach the centre
    finally:
        stop.set()
        await task
        await server.close()
    after = evidence_rows(centre)
    answered = [x for x in latencies if x is not None]
    growth = {t: after[t] - before[t] for t in after}
    result = {
        "junk_peers": junk_peers, "junk_bytes": sum(sent), "devices": devices,
        "hellos_answered": len(answered),
        "hello_max_s": round(max(answered), 3) if answered else None,
        "hello_p99_s": round(sorted(answered)[int(0.99 * (len(answered) - 1))], 3)
        if answered else None,
        "hellos_within_1s": sum(1 for x in answered if x <= 1.0),
        "refusal_rows": growth["refusals"], "refused_events": sum(
            1 for e in centre.events if e.kind == "refused"),
        "evidence_rows_added": growth, "refused": dict(centre.refused),
        "rate_limited_bytes": sum(r["bytes"] for r in centre.evidence.rows("refusals")
                                  if r["outcome"] == "rate_limited"),
    }
    centre.close()
    return result


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_fds():
    return len(os.listdir("/proc/self/fd"))


async def connections(links=5000, hold_s=0.5):
    """`links` devices connect at once, all stay connected, each HELLO is answered; then all
    disconnect and every server-side socket must be closed."""
    ids = list(range(10_000, 10_000 + links))
    centre = make_centre(ids)
    fds_before = open_fds()
    server, port, stop, task = await start(centre)
    opened = []
    barrier = asyncio.Event()
    results = []

    async def one(device_id):
        ring = host_fast.Keyring()
        ring.add(device_id, 1, device_key(device_id))
        receiver = host_fast.FastReceiver(ring, downlink=True)
        sender = host_fast.FastSender(device_id, 1, device_key(device_id))
        for attempt in range(20):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            results.append(False)
            return
        opened.append(device_id)
        try:
            writer.write(sender.seal("HELLO", _hello()))
            await writer.drain()
            results.append(await _await_ack(reader, receiver, 1, 60.0))
            await barrier.wait()  # everyone is connected at the same time
        finally:
            await _close(writer)

    start_s = time.perf_counter()
    try:
        clients = [asyncio.ensure_future(one(d)) for d in ids]
        while len(results) < links and not all(c.done() for c in clients):
            await asyncio.sleep(0.05)
        peak_links = len(server.links)
        await asyncio.sleep(hold_s)
        barrier.set()
        await asyncio.gather(*clients)
        for _ in range(200):  # the server sees the EOFs
            if not server.links:
                break
            await asyncio.sleep(0.05)
        served_s = time.perf_counter() - start_s
        open_after = len(server.links)
    finally:
        stop.set()
        await task
        await server.close()
    centre.close()
    await asyncio.sleep(0.1)
    return {"links": links, "connected": len(opened), "served": sum(1 for r in results if r),
            "peak_concurrent": peak_links, "server_opened": server.opened,
            "server_closed": server.closed, "still_open": open_after,
            "fds_leaked": max(0, open_fds() - fds_before), "seconds": round(served_s, 2)}
