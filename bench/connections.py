"""Connections: N devices connect to the centre at once, each HELLO is answered, then all
disconnect; prints figures, then one JSON object as the last line.

    python bench/connections.py [--links 5000]

Target (issue 8): all 5,000 links served and every server-side socket closed after the
disconnect. Raises RLIMIT_NOFILE first (two descriptors per link: both ends are in this
process). Loopback only.
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
    p.add_argument("--links", type=int, default=5000)
    args = p.parse_args(argv)
    limit = loadtest.raise_fd_limit(2 * args.links + 512)
    if limit < 2 * args.links + 64:
        print("RLIMIT_NOFILE is %d: too low for %d links" % (limit, args.links))
        return 2
    result = asyncio.run(loadtest.connections(args.links))
    print("%d links: %d connected, %d served, peak %d concurrent, %d closed, %d fds leaked, "
          "%.1f s" % (result["links"], result["connected"], result["served"],
                      result["peak_concurrent"], result["server_closed"],
                      result["fds_leaked"], result["seconds"]))
    print(json.dumps(result))
    ok = (result["served"] == args.links and result["server_closed"] == args.links and
          result["still_open"] == 0 and result["fds_leaked"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
