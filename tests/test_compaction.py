"""Compaction: small multi-partition segments rewritten into large per-partition objects
while consumers replay, and a node killed mid-compaction.

Nodes run with a short flush interval (many small segments), a compaction pass every
500 ms over segments older than 1 s, and fast collection (COMPACTION_ARGS). Every wait is
a bounded poll, so a slow machine only makes the tests slower. Data is CI-sized (tens of
MB); scripts/bench_replay_compaction.py runs the same check at >= 2 GiB.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

from support import (Consumed, Rec, check_consumed, consume_confluent, create_topic,
                     produce_confluent, wait_until)

TIMEOUT_S = 180.0
PARTITIONS = 4
COMPACTION_ARGS = ("--flush-interval", "5ms", "--flush-bytes", str(128 << 10),
                   "--compaction-interval", "500ms",
                   "--compaction-min-age", "1s", "--compaction-target-bytes", str(2 << 20),
                   "--gc-interval", "500ms", "--unreferenced-grace", "1s")


def records(n: int, value_size: int = 400) -> list[Rec]:
    return [Rec(f"k{i}".encode(), f"v{i}-".encode().ljust(value_size, b"."), (), 1_700_000_000_000 + i)
            for i in range(n)]


def metric(strata, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{strata.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def segment_files(strata) -> int:
    directory = Path(strata.data_dir) / "bucket" / "segments"
    return sum(1 for p in directory.iterdir() if p.name.endswith(".seg")) if directory.is_dir() else 0


def check_in_order(consumed: list[Consumed]) -> None:
    """Each partition's offsets are 0, 1, 2, ... in the order they were consumed."""
    by_partition: dict[int, list[int]] = {}
    for c in consumed:
        by_partition.setdefault(c.partition, []).append(c.offset)
    for partition, offsets in by_partition.items():
        assert offsets == list(range(len(offsets))), f"partition {partition} out of order or gapped"


def produce_small_segments(strata, topic: str, n: int) -> tuple[list[Rec], list[tuple[int, int]]]:
    create_topic(strata.bootstrap, topic, PARTITIONS)
    recs = records(n)
    # small produce requests: many small segments to compact
    deliveries = produce_confluent(strata.bootstrap, topic, recs, **{"linger.ms": 1, "batch.size": 16384})
    return recs, deliveries


def test_replay_while_compaction_runs_returns_every_record_once_in_order(strata_factory):
    strata = strata_factory(*COMPACTION_ARGS)
    recs, deliveries = produce_small_segments(strata, "c", 60_000)  # ~26 MB of values
    before = segment_files(strata)
    assert before > 30, f"only {before} segments; the test needs many small ones"
    failures: list[BaseException] = []
    replays = [0]
    stop = threading.Event()

    def replay():
        try:
            while not stop.is_set():
                consumed = consume_confluent(strata.bootstrap, "c", PARTITIONS, timeout=TIMEOUT_S)
                check_consumed(recs, deliveries, consumed)
                check_in_order(consumed)
                replays[0] += 1
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    readers = [threading.Thread(target=replay) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        wait_until(lambda: failures or metric(strata, "strata_agent_compaction_objects_total") > 0,
                   TIMEOUT_S, what="a compacted object")
        wait_until(lambda: failures or segment_files(strata) <= before // 2, TIMEOUT_S,
                   what="compaction and collection to shrink the bucket")
        wait_until(lambda: failures or replays[0] >= 2, TIMEOUT_S, what="two replays")
    finally:
        stop.set()
        for r in readers:
            r.join(TIMEOUT_S)
    assert not failures, f"a replay during compaction failed: {failures[0]!r}"
    consumed = consume_confluent(strata.bootstrap, "c", PARTITIONS, timeout=TIMEOUT_S)
    check_consumed(recs, deliveries, consumed)
    check_in_order(consumed)
    assert metric(strata, "strata_agent_compaction_rows_replaced_total") > before / 2


def test_a_node_killed_while_compacting_leaves_no_corruption_and_compaction_resumes(strata_factory):
    strata = strata_factory(*COMPACTION_ARGS)
    recs, deliveries = produce_small_segments(strata, "k", 30_000)
    before = segment_files(strata)
    wait_until(lambda: metric(strata, "strata_agent_compaction_objects_total") > 0, TIMEOUT_S,
               interval=0.02, what="compaction to start")
    strata.proc.kill()  # SIGKILL: mid-pass, perhaps between an upload and its swap
    strata.proc.wait(timeout=20)
    strata.proc = None
    strata.start()
    consumed = consume_confluent(strata.bootstrap, "k", PARTITIONS, timeout=TIMEOUT_S)
    check_consumed(recs, deliveries, consumed)
    check_in_order(consumed)
    # the restarted node finishes the work: every partition ends in few large rows
    wait_until(lambda: segment_files(strata) <= before // 2, TIMEOUT_S,
               what="compaction to resume after the restart")
    time.sleep(1)
    consumed = consume_confluent(strata.bootstrap, "k", PARTITIONS, timeout=TIMEOUT_S)
    check_consumed(recs, deliveries, consumed)
    check_in_order(consumed)
