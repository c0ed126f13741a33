"""The agent's read tier end to end: many consumers replaying the same history cost about
one bucket GET per block of the objects they read, and each of them gets every record, in
order, intact: on 64 MiB histories with small blocks (below), and at scale, 20 consumers
of 1 GiB with the default 4 MiB blocks.

The node runs with 1 MiB blocks (so a 64 MiB history is many blocks), a block cache larger
than the history (so nothing is evicted and the bound is exact), and no decoded-chunk
cache (so every chunk read goes through the block cache). Segments are either large
(the default 8 MiB `flush_bytes`: several blocks each) or small (768 KiB: one block
each, so a partition's next rows are always in other objects). No assertion depends on
timing.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct

import pytest
import threading
import urllib.request
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from support import confluent_consumer, confluent_producer, create_topic

BLOCK_BYTES = 1024 * 1024
CACHE_BYTES = 512 * 1024 * 1024
PARTITIONS = 2
RECORDS = 8192  # per topic, split over the partitions
VALUE_BYTES = 8 * 1024  # 64 MiB of values in all
CONSUMERS = 20
CONSUME_TIMEOUT_S = 240.0

READ_TIER_ARGS = (
    "--read-block-bytes", str(BLOCK_BYTES),
    "--read-cache-bytes", str(CACHE_BYTES),
    "--read-decoded-cache-bytes", "0",
)
SEGMENTS = {"large segments": (), "small segments": ("--flush-bytes", str(768 * 1024))}


def value_of(partition: int, seq: int) -> bytes:
    """Deterministic incompressible value: zstd gets no free ride, chunks stay large."""
    seed = f"{partition}/{seq}".encode()
    out = bytearray()
    counter = 0
    while len(out) < VALUE_BYTES:
        out += hashlib.blake2b(seed + counter.to_bytes(4, "little"), digest_size=64).digest()
        counter += 1
    return bytes(out[:VALUE_BYTES])


def metrics(strata) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{strata.http_port}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text: str, name: str) -> float:
    """The value of the sample `name` (with its labels), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def bucket_gets(text: str) -> float:
    return sample(text, 'strata_object_store_requests_total{op="get"}')


def read_tier_summary(text: str) -> str:
    names = ["read_block_hits_total", "read_block_misses_total", "read_prefetch_issued_total",
             "read_prefetch_used_total", "read_prefetch_skipped_total", "read_cache_requests_total",
             "read_cache_misses_total"]
    return ", ".join(f"{n}={sample(text, 'strata_agent_' + n):.0f}" for n in names)


def produce_history(strata, topic: str, records: int = RECORDS, partitions: int = PARTITIONS) -> dict[int, int]:
    """Produces `records` records round-robin over the partitions; returns records per partition."""
    create_topic(strata.bootstrap, topic, partitions)
    producer = confluent_producer(strata.bootstrap, **{"linger.ms": 20})
    errors = []
    counts = {p: 0 for p in range(partitions)}

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(records):
        p = i % partitions
        seq = counts[p]
        counts[p] += 1
        while True:
            try:
                producer.produce(topic, key=f"{p}/{seq}".encode(), value=value_of(p, seq),
                                 partition=p, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0, "records still undelivered after 120 s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    return counts


def segment_blocks(strata, block_bytes: int = BLOCK_BYTES) -> tuple[int, int]:
    """(objects, blocks) in the node's bucket directory, blocks counted per object."""
    sizes = [f.stat().st_size for f in Path(strata.data_dir, "bucket").rglob("*") if f.is_file()]
    return len(sizes), sum(math.ceil(size / block_bytes) for size in sizes)


class Replay(threading.Thread):
    """One consumer reading every partition from offset 0 to the end, checking as it goes."""

    def __init__(self, bootstrap: str, topic: str, counts: dict[int, int], start: threading.Barrier):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.counts, self.start_together = bootstrap, topic, counts, start
        self.problems: list[str] = []
        self.read = {p: 0 for p in counts}
        self.bytes = 0

    def run(self) -> None:
        try:
            self._replay()
        except BaseException as e:  # reported by the test, not lost in the thread
            self.problems.append(f"{type(e).__name__}: {e}")

    def _replay(self) -> None:
        consumer = confluent_consumer(self.bootstrap, **{"fetch.wait.max.ms": 100})
        try:
            consumer.assign([TopicPartition(self.topic, p, 0) for p in self.counts])
            self.start_together.wait(timeout=60)
            deadline = threading.Event()
            timer = threading.Timer(CONSUME_TIMEOUT_S, deadline.set)
            timer.start()
            try:
                while any(self.read[p] < n for p, n in self.counts.items()):
                    if deadline.is_set():
                        raise AssertionError(f"timed out with {self.read} of {self.counts}")
                    for msg in consumer.consume(num_messages=1000, timeout=0.5):
                        self._check(msg)
                        if len(self.problems) > 5:
                            return
            finally:
                timer.cancel()
        finally:
            consumer.close()

    def _check(self, msg) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            raise KafkaException(err)
        p, offset = msg.partition(), msg.offset()
        expected = self.read[p]
        if offset != expected:
            self.problems.append(f"partition {p}: offset {offset} where {expected} was next")
        elif msg.key() != f"{p}/{offset}".encode() or msg.value() != value_of(p, offset):
            self.problems.append(f"partition {p} offset {offset}: wrong key or value")
        self.read[p] = offset + 1
        self.bytes += len(msg.value())


def discard_data(strata) -> None:
    """Stops the node and deletes its data: each test writes a 64 MiB history."""
    strata.stop()
    shutil.rmtree(strata.data_dir, ignore_errors=True)


def run_all(replays: list[threading.Thread], during=None) -> None:
    """Starts every consumer, runs `during` (if any) while they read, waits for them all."""
    for r in replays:
        r.start()
    if during:
        during()
    for r in replays:
        r.join(CONSUME_TIMEOUT_S + 60)
        assert not r.is_alive(), "a consumer thread did not finish"


def assert_all_read(replays, counts: dict[int, int]) -> None:
    for i, r in enumerate(replays):
        assert not r.problems, f"consumer {i}: {r.problems[:5]}"
        assert r.read == counts, f"consumer {i} read {r.read} of {counts}"


def replay_all(strata, topic: str, counts: dict[int, int], consumers: int) -> list[Replay]:
    barrier = threading.Barrier(consumers)
    replays = [Replay(strata.bootstrap, topic, counts, barrier) for _ in range(consumers)]
    run_all(replays)
    return replays


@pytest.mark.parametrize("segments", SEGMENTS)
def test_twenty_consumers_of_one_history_cost_one_get_per_block(strata_factory, segments):
    strata = strata_factory(*READ_TIER_ARGS, *SEGMENTS[segments])
    counts = produce_history(strata, "replayed")
    objects, blocks = segment_blocks(strata)
    before = metrics(strata)

    assert_all_read(replay_all(strata, "replayed", counts, CONSUMERS), counts)
    after = metrics(strata)
    gets = bucket_gets(after) - bucket_gets(before)
    print(f"{segments}, {CONSUMERS} consumers: {gets:.0f} GETs, {objects} objects, {blocks} blocks; "
          + read_tier_summary(after))
    # every object holds data somebody read, and no block is read twice while cached
    assert objects <= gets <= blocks, \
        f"{gets:.0f} bucket GETs for {objects} objects in {blocks} blocks of {BLOCK_BYTES} bytes"
    tier_gets = sum(sample(after, f'strata_agent_read_bucket_gets_total{{reason="{r}"}}')
                    for r in ("demand", "prefetch"))
    assert tier_gets == gets, "every bucket GET of the fetch path is one of the read tier's"
    served = sample(after, "strata_agent_fetch_bytes_total") - sample(before, "strata_agent_fetch_bytes_total")
    assert served >= CONSUMERS * RECORDS * VALUE_BYTES
    hits = sample(after, "strata_agent_read_block_hits_total")
    misses = sample(after, "strata_agent_read_block_misses_total")
    assert misses <= gets and hits > misses
    discard_data(strata)


def test_a_sequential_replay_reads_ahead_and_uses_what_it_read(strata_factory):
    strata = strata_factory(*READ_TIER_ARGS, *SEGMENTS["small segments"])
    counts = produce_history(strata, "sequential")
    objects, blocks = segment_blocks(strata)
    before = metrics(strata)

    [replay] = replay_all(strata, "sequential", counts, 1)

    assert not replay.problems, replay.problems[:5]
    assert replay.read == counts
    after = metrics(strata)
    issued = sample(after, "strata_agent_read_prefetch_issued_total")
    used = sample(after, "strata_agent_read_prefetch_used_total")
    prefetch_gets = sample(after, 'strata_agent_read_bucket_gets_total{reason="prefetch"}')
    gets = bucket_gets(after) - bucket_gets(before)
    print(f"1 consumer: {gets:.0f} GETs, {objects} objects, {blocks} blocks; " + read_tier_summary(after))
    assert issued > 0, "a replay of many segments never read ahead"
    assert used <= issued == prefetch_gets
    assert gets <= blocks, f"{gets:.0f} GETs for {blocks} blocks ({objects} objects)"
    discard_data(strata)


GIB = 1024 ** 3
BIG_VALUE_BYTES = 64 * 1024
BIG_PARTITIONS = 4
DEFAULT_BLOCK_BYTES = 4 * 1024 * 1024


class CheckedReplay(threading.Thread):
    """A consumer reading every partition from 0 to `counts`, checking offsets, sizes and the
    (partition, sequence) each value starts with; librdkafka verifies every batch's CRC."""

    def __init__(self, bootstrap: str, topic: str, counts: dict[int, int]):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.counts = bootstrap, topic, counts
        self.read = {p: 0 for p in counts}
        self.problems: list[str] = []

    def run(self) -> None:
        try:
            consumer = confluent_consumer(self.bootstrap, **{"check.crcs": True, "fetch.wait.max.ms": 100})
            try:
                consumer.assign([TopicPartition(self.topic, p, 0) for p in self.counts])
                deadline = threading.Event()
                timer = threading.Timer(CONSUME_TIMEOUT_S, deadline.set)
                timer.start()
                try:
                    while any(self.read[p] < n for p, n in self.counts.items()) and not deadline.is_set():
                        for msg in consumer.consume(num_messages=500, timeout=0.5):
                            self._check(msg)
                finally:
                    timer.cancel()
            finally:
                consumer.close()
        except BaseException as e:
            self.problems.append(f"{type(e).__name__}: {e}")

    def _check(self, msg) -> None:
        if msg.error() is not None:
            if msg.error().code() != KafkaError._PARTITION_EOF:
                self.problems.append(str(msg.error()))
            return
        p, offset, value = msg.partition(), msg.offset(), msg.value()
        if offset != self.read[p] or len(value) != BIG_VALUE_BYTES \
                or value[:12] != struct.pack(">iq", p, offset):
            self.problems.append(f"partition {p}: offset {offset}, {len(value)} bytes, where {self.read[p]} was next")
        self.read[p] = offset + 1


def test_twenty_consumers_of_one_gib_cost_one_get_per_block(strata_factory):
    """The read tier at scale: 1 GiB of history (default 4 MiB blocks, a block cache that
    holds it all), 20 confluent-kafka consumers at once, about one bucket GET per block."""
    strata = strata_factory("--read-cache-bytes", str(GIB + GIB // 2), "--compaction-interval", "0s")
    topic = "one-gib"
    create_topic(strata.bootstrap, topic, BIG_PARTITIONS)
    producer = confluent_producer(strata.bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000})
    errors = []
    counts = {p: 0 for p in range(BIG_PARTITIONS)}
    for i in range(GIB // BIG_VALUE_BYTES):
        p = i % BIG_PARTITIONS
        value = struct.pack(">iq", p, counts[p]) + os.urandom(BIG_VALUE_BYTES - 12)
        counts[p] += 1
        while True:
            try:
                producer.produce(topic, value=value, partition=p,
                                 on_delivery=lambda err, _m: err is not None and errors.append(err))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0 and not errors, errors[:3]
    objects, blocks = segment_blocks(strata, DEFAULT_BLOCK_BYTES)
    before = metrics(strata)

    replays = [CheckedReplay(strata.bootstrap, topic, counts) for _ in range(CONSUMERS)]
    run_all(replays)
    assert_all_read(replays, counts)
    after = metrics(strata)
    gets = bucket_gets(after) - bucket_gets(before)
    print(f"1 GiB, {CONSUMERS} consumers: {gets:.0f} GETs, {objects} objects, {blocks} blocks; "
          + read_tier_summary(after))
    assert objects <= gets <= blocks, f"{gets:.0f} bucket GETs for {blocks} blocks in {objects} objects"
    discard_data(strata)
