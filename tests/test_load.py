"""Reduced versions of bench/flood.py and bench/connections.py (loopback only)."""
import asyncio

from host.centre import loadtest


def test_a_junk_flood_does_not_starve_genuine_devices_nor_grow_the_log_per_frame():
    peers = 3
    result = asyncio.run(loadtest.flood(junk_peers=peers, junk_bps=1_000_000, devices=10,
                                        duration_s=2.0))
    assert result["junk_bytes"] >= peers * 1_000_000
    assert result["hellos_answered"] == 10
    # The target is 1 s (bench/flood.py); a shared CI machine gets some slack.
    assert result["hello_max_s"] < 2.0, result
    # O(peers): a few aggregate rows per junk peer, whatever the frame count.
    refused_frames = sum(result["refused"].values())
    assert refused_frames > 500
    assert result["refusal_rows"] <= 8 * peers
    assert result["refused_events"] <= 8 * peers
    assert result["evidence_rows_added"]["frames"] == 20  # the genuine HELLOs and heartbeats
    assert result["rate_limited_bytes"] > 0  # the budget cut the flood short


def test_more_links_than_select_allows_are_all_served_and_closed():
    links = 1100  # past FD_SETSIZE (1,024), where the select() server broke
    assert loadtest.raise_fd_limit(2 * links + 512) >= 2 * links + 64
    result = asyncio.run(loadtest.connections(links, hold_s=0.1))
    assert result["served"] == result["connected"] == links
    assert result["peak_concurrent"] == links
    assert result["server_closed"] == links and result["still_open"] == 0
    assert result["fds_leaked"] == 0
