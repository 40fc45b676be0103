"""Flood: junk peers send random bytes while genuine devices run; prints figures, then one
JSON object as the last line.

    python bench/flood.py [--peers 10] [--rate-bps 1000000] [--devices 100] [--seconds 10]

Target (issue 8): every genuine HELLO answered within 1 s, and the evidence log grows by
O(peers) (aggregated `refusals` rows), not O(frames). Server and clients share one asyncio
loop in this process (host/centre/loadtest.py), on 127.0.0.1 only.
"""
import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.centre import loadtest  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", type=int, default=10)
    p.add_argument("--rate-bps", type=int, default=1_000_000)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    loadtest.raise_fd_limit(4 * (args.peers + args.devices) + 256)
    result = asyncio.run(loadtest.flood(args.peers, args.rate_bps, args.devices, args.seconds))
    print("%d junk peers sent %.1f MB; %d/%d HELLOs answered, max %.3f s, p99 %.3f s" % (
        result["junk_peers"], result["junk_bytes"] / 1e6, result["hellos_answered"],
        result["devices"], result["hello_max_s"] or -1, result["hello_p99_s"] or -1))
    print("evidence rows added: %s" % result["evidence_rows_added"])
    print(json.dumps(result))
    ok = (result["hellos_within_1s"] == args.devices and
          result["refusal_rows"] <= 16 * args.peers)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
