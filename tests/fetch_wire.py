"""Fetch v4 requests and responses on a raw connection, for tests that need exact
control of what a Fetch names (duplicate partitions, byte limits) and what comes back."""

from __future__ import annotations

from dataclasses import dataclass

import kafka_wire as kw

FETCH = 1


@dataclass
class FetchedPartition:
    topic: str
    partition: int
    error_code: int
    high_watermark: int
    records: bytes


def fetch_v4_body(parts: list[tuple[str, int, int, int]], *, max_bytes: int,
                  max_wait_ms: int = 0, min_bytes: int = 0) -> bytes:
    """`parts` lists (topic, partition, fetch_offset, partition_max_bytes), in order, as
    given: a topic named twice is sent twice."""
    topics = [kw.string(topic) + kw.array([kw.i32(p) + kw.i64(offset) + kw.i32(pmb)])
              for topic, p, offset, pmb in parts]
    return (kw.i32(-1) + kw.i32(max_wait_ms) + kw.i32(min_bytes) + kw.i32(max_bytes)
            + kw.i8(0) + kw.array(topics))


def parse_fetch_v4(r: kw.Reader) -> list[FetchedPartition]:
    r.i32()  # throttle_time_ms
    out = []

    def partition(rr: kw.Reader, topic: str) -> FetchedPartition:
        index, error, hwm = rr.i32(), rr.i16(), rr.i64()
        rr.i64()  # last_stable_offset
        rr.array(lambda a: (a.i64(), a.i64()))  # aborted transactions
        size = rr.i32()
        records = rr._take(size) if size > 0 else b""
        return FetchedPartition(topic, index, error, hwm, records)

    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            out.append(partition(r, topic))
    return out


def fetch_v4(conn: kw.KafkaConnection, parts: list[tuple[str, int, int, int]], *,
             max_bytes: int, max_wait_ms: int = 0) -> list[FetchedPartition]:
    r = conn.request(FETCH, 4, fetch_v4_body(parts, max_bytes=max_bytes, max_wait_ms=max_wait_ms))
    return parse_fetch_v4(r)


def batch_count(records: bytes) -> int:
    """Number of whole record batches in a Fetch response's records."""
    count, at = 0, 0
    while at + 12 <= len(records):
        length = int.from_bytes(records[at + 8:at + 12], "big", signed=True)
        if at + 12 + length > len(records):
            break
        count += 1
        at += 12 + length
    return count
