"""What one hostile or broken client may take of an agent: connections, memory, time.

Each attack runs against a real `strata dev` on raw sockets; afterwards the node must
still serve a real client, its memory must stay bounded, and the limit's metric must have
counted the event.
"""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

import fetch_wire as fw
import kafka_wire as kw
from support import (Rec, check_consumed, consume_confluent, create_topic, produce_confluent,
                     wait_until)

MiB = 1024 * 1024


def metric(strata, name: str, labels: str = "") -> float:
    """The value of one sample of the node's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{strata.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def rss_bytes(strata) -> int:
    with open(f"/proc/{strata.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def connect(strata) -> socket.socket:
    host, port = kw.parse_addr(strata.bootstrap)
    return socket.create_connection((host, port), timeout=10)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes `sock` within `within` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def assert_serves_real_clients(strata, topic: str = "still-alive") -> None:
    create_topic(strata.bootstrap, topic, 1)
    records = [Rec(f"k{i}".encode(), f"v{i}".encode(), (), 1_700_000_000_000 + i) for i in range(20)]
    deliveries = produce_confluent(strata.bootstrap, topic, records, partition=0)
    check_consumed(records, deliveries, consume_confluent(strata.bootstrap, topic, 1, timeout=60))


# --------------------------------------------------------------------------
# connections


def test_idle_connections_are_closed(strata_factory):
    strata = strata_factory("--connections-max-idle", "2s")
    idle = [connect(strata) for _ in range(20)]
    assert all(closed_by_server(s, within=10) for s in idle), "idle connections stayed open"
    assert metric(strata, "strata_agent_connections_limited_total", 'limit="idle"') >= 20
    assert_serves_real_clients(strata)


def test_connections_per_address_and_in_all_are_capped(strata_factory):
    strata = strata_factory("--max-connections-per-ip", "5", "--max-connections", "8")
    held = [connect(strata) for _ in range(5)]
    extra = connect(strata)
    assert closed_by_server(extra, within=5), "a sixth connection from one address was kept"
    assert not closed_by_server(held[0], within=0.5), "an admitted connection was closed"
    assert metric(strata, "strata_agent_connections_limited_total",
                  'limit="max_connections_per_ip"') >= 1
    # a place freed is a place taken again
    held.pop().close()
    wait_until(lambda: metric(strata, "strata_agent_connections_open") <= 4, 10, what="slot freed")
    with kw.KafkaConnection(strata.bootstrap) as conn:  # the fifth place: a real request works
        assert kw.api_versions(conn, 3).error_code == 0
    for s in held:
        s.close()


def test_stalled_and_trickling_requests_time_out(strata_factory):
    strata = strata_factory("--request-header-timeout", "1s", "--request-body-timeout", "3s")
    # two bytes of a size prefix, then nothing
    header = connect(strata)
    header.sendall(b"\x00\x00")
    # the header and the first 600 bytes at once (past the 512 that count as header), then
    # the rest one byte at a time (slowloris)
    trickle = connect(strata)
    start = kw.request_header(kw.METADATA, 1, 7) + b"\x00" * 600
    trickle.sendall(kw.i32(len(start) + 1000) + start)
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < 15:
        try:
            trickle.sendall(b"\x00")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(0.2)
    assert closed, "a request trickling in a byte at a time was kept open for 15 s"
    assert closed_by_server(header, within=5)
    assert metric(strata, "strata_agent_connections_limited_total", 'limit="header_timeout"') >= 1
    assert metric(strata, "strata_agent_connections_limited_total", 'limit="body_timeout"') >= 1
    assert_serves_real_clients(strata)


def test_announced_frames_hold_only_the_bytes_sent(strata_factory):
    """Twenty connections announce 40 MiB requests, send 1 MiB each and stall: the node holds
    what arrived (about 20 MiB), not the 800 MiB announced, and lets it go at the timeout."""
    strata = strata_factory("--request-body-timeout", "6s")
    before = rss_bytes(strata)
    conns = []
    for i in range(20):
        s = connect(strata)
        s.sendall(kw.i32(40 * MiB) + kw.request_header(kw.PRODUCE, 3, i) + b"\x00" * MiB)
        conns.append(s)
    wait_until(lambda: metric(strata, "strata_agent_queued_request_bytes") >= 20 * MiB, 10,
               what="the stalled requests' bytes to arrive")
    held = metric(strata, "strata_agent_queued_request_bytes")
    grown = rss_bytes(strata) - before
    assert held <= 20 * 2 * MiB, f"the pool holds {held / MiB:.0f} MiB for 20 MiB sent"
    assert grown < 200 * MiB, f"RSS grew {grown / MiB:.0f} MiB for 20 MiB sent"
    assert all(closed_by_server(s, within=15) for s in conns)
    wait_until(lambda: metric(strata, "strata_agent_queued_request_bytes") == 0, 10,
               what="the pool to be empty again")
    assert_serves_real_clients(strata)


def test_request_pool_makes_clients_wait_not_fail(strata_factory):
    """With a pool smaller than what producers send at once, producers wait for room and
    every record is stored."""
    strata = strata_factory("--queued-max-request-bytes", str(2 * MiB))
    topic = "small-pool"
    create_topic(strata.bootstrap, topic, 1)
    records = [Rec(f"k{i}".encode(), bytes([i % 251]) * 100_000, (), 1_700_000_000_000 + i)
               for i in range(60)]
    deliveries = produce_confluent(strata.bootstrap, topic, records, partition=0,
                                   **{"linger.ms": 50, "batch.size": 1_000_000})
    check_consumed(records, deliveries, consume_confluent(strata.bootstrap, topic, 1, timeout=60))


def test_oversized_frame_beyond_the_pool_is_refused(strata_factory):
    strata = strata_factory("--queued-max-request-bytes", str(MiB))
    s = connect(strata)
    s.sendall(kw.i32(2 * MiB) + kw.request_header(kw.PRODUCE, 3, 1))
    assert closed_by_server(s, within=5)
    assert metric(strata, "strata_agent_connections_limited_total",
                  'limit="request_too_large"') >= 1


# --------------------------------------------------------------------------
# fetch amplification


def _fill(strata, topic: str, batches: int, value_bytes: int) -> None:
    create_topic(strata.bootstrap, topic, 1)
    records = [Rec(f"k{i}".encode(), bytes([i % 251]) * value_bytes, (), 1_700_000_000_000 + i)
               for i in range(batches)]
    # one record per batch: linger 0 and one record per produce call
    for r in records:
        produce_confluent(strata.bootstrap, topic, [r], partition=0)


def test_fetch_naming_a_partition_many_times_is_served_once(strata):
    topic = "amplify"
    _fill(strata, topic, batches=8, value_bytes=100_000)
    with kw.KafkaConnection(strata.bootstrap) as conn:
        parts = fw.fetch_v4(conn, [(topic, 0, 0, MiB)] * 200, max_bytes=2**31 - 1)
    assert len(parts) == 1, f"{len(parts)} partition entries for one partition named 200 times"
    assert len(parts[0].records) <= MiB + 200_000, len(parts[0].records)
    assert fw.batch_count(parts[0].records) >= 1


def test_fetch_is_capped_by_fetch_max_bytes(strata_factory):
    strata = strata_factory("--fetch-max-bytes", str(300_000))
    topic = "capped"
    _fill(strata, topic, batches=10, value_bytes=100_000)
    with kw.KafkaConnection(strata.bootstrap) as conn:
        parts = fw.fetch_v4(conn, [(topic, 0, 0, 50 * MiB)], max_bytes=2**31 - 1)
        assert sum(len(p.records) for p in parts) <= 300_000
        assert fw.batch_count(parts[0].records) >= 2
        # max_bytes 0 or below is not "unlimited": the first batch, whole, and nothing more
        for max_bytes in (0, -1):
            parts = fw.fetch_v4(conn, [(topic, 0, 0, 50 * MiB)], max_bytes=max_bytes)
            assert fw.batch_count(parts[0].records) == 1, max_bytes
    # a real consumer asking for more than the cap still reads everything
    consumed = consume_confluent(strata.bootstrap, topic, 1, timeout=60,
                                 **{"fetch.max.bytes": 50 * MiB})
    assert len(consumed) == 10


# --------------------------------------------------------------------------
# topic auto-creation


def test_topic_auto_creation_is_rate_limited(strata_factory):
    strata = strata_factory("--auto-create-topics-per-second", "1")
    names = [f"auto-{i}" for i in range(40)]
    with kw.KafkaConnection(strata.bootstrap) as conn:
        resp = kw.metadata_v1(conn, names)
    created = [t for t in resp.topics if t.error_code == 0]
    refused = [t for t in resp.topics if t.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION]
    assert 10 <= len(created) <= 12, f"{len(created)} topics created in a burst of 10"
    assert len(created) + len(refused) == 40
    assert metric(strata, "strata_agent_auto_create_throttled_total") >= 28
    # the rate refills: a client asking again later gets its topic
    time.sleep(2.5)
    with kw.KafkaConnection(strata.bootstrap) as conn:
        again = kw.metadata_v1(conn, [refused[0].name])
    assert again.topics[0].error_code == 0
