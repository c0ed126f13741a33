"""Shared helpers for the end-to-end tests: record generation, client wrappers
(confluent-kafka and kafka-python) and round-trip verification.

Every wait here is bounded; a helper that runs out of time raises AssertionError
with what it had seen so far.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BASE_TIMESTAMP_MS = 1_700_000_000_000
CLIENT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Rec:
    """One record as produced and as expected back."""
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    rec: Rec


def make_records(n: int, distinct_keys: int = 997, value_size: int = 40) -> list[Rec]:
    """n deterministic records: keys repeat (so partitioning can be checked),
    values and timestamps are distinct, two headers each."""
    out = []
    for i in range(n):
        value = f"value-{i:08d}-".encode()
        value += b"x" * max(0, value_size - len(value))
        out.append(Rec(
            key=f"key-{i % distinct_keys}".encode(),
            value=value,
            headers=(("seq", str(i).encode()), ("kind", b"even" if i % 2 == 0 else b"odd")),
            timestamp=BASE_TIMESTAMP_MS + i,
        ))
    return out


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


# --------------------------------------------------------------------------
# confluent-kafka

def confluent_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def topic_partition_counts(admin: AdminClient) -> dict[str, int]:
    md = admin.list_topics(timeout=CLIENT_TIMEOUT_S)
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    """Creates a topic with confluent's AdminClient and waits until metadata shows it."""
    admin = confluent_admin(bootstrap)
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config=config or {})],
                                  operation_timeout=CLIENT_TIMEOUT_S, request_timeout=CLIENT_TIMEOUT_S)
    futures[name].result(timeout=CLIENT_TIMEOUT_S)
    wait_until(lambda: topic_partition_counts(admin).get(name) == partitions, timeout=CLIENT_TIMEOUT_S,
               what=f"topic {name} with {partitions} partitions in metadata")


def confluent_producer(bootstrap: str, **overrides) -> Producer:
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 5,
        "message.timeout.ms": 60_000,
    }
    conf.update(overrides)
    return Producer(conf)


def produce_confluent(bootstrap: str, topic: str, records: list[Rec], partition: int | None = None,
                      **producer_conf) -> list[tuple[int, int]]:
    """Produces records (acks=all) and returns the (partition, offset) of each delivery."""
    producer = confluent_producer(bootstrap, **producer_conf)
    deliveries: list[tuple[int, int] | None] = [None] * len(records)
    errors = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                deliveries[i] = (msg.partition(), msg.offset())
        return cb

    for i, r in enumerate(records):
        kwargs = dict(key=r.key, value=r.value, headers=list(r.headers), timestamp=r.timestamp,
                      on_delivery=on_delivery(i))
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    assert remaining == 0, f"{remaining} messages still undelivered after 120 s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    missing = [i for i, d in enumerate(deliveries) if d is None]
    assert not missing, f"no delivery report for {len(missing)} records, first: {missing[:5]}"
    return deliveries  # type: ignore[return-value]


def confluent_consumer(bootstrap: str, **overrides) -> Consumer:
    """An assign()-only consumer: group.id is required by librdkafka but no group
    coordination or offset commits ever happen."""
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "strata-e2e-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    }
    conf.update(overrides)
    return Consumer(conf)


def consume_confluent(bootstrap: str, topic: str, partitions: int, timeout: float = 120.0,
                      start_offset: int = 0, **consumer_conf) -> list[Consumed]:
    """Reads every partition from start_offset to the end of the log (partition EOF)."""
    consumer = confluent_consumer(bootstrap, **consumer_conf)
    try:
        consumer.assign([TopicPartition(topic, p, start_offset) for p in range(partitions)])
        out: list[Consumed] = []
        at_eof = {p: False for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while not all(at_eof.values()):
            if time.monotonic() > deadline:
                raise AssertionError(f"consume of {topic} timed out after {timeout}s with {len(out)} records; "
                                     f"partitions at end: {at_eof}")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof[msg.partition()] = True
                        continue
                    raise KafkaException(err)
                at_eof[msg.partition()] = False
                ts_type, ts = msg.timestamp()
                assert ts_type == 1, f"timestamp type {ts_type} at {msg.partition()}/{msg.offset()} (want CreateTime)"
                out.append(Consumed(msg.partition(), msg.offset(),
                                    Rec(msg.key(), msg.value(), tuple(msg.headers() or ()), ts)))
        return out
    finally:
        consumer.close()


# --------------------------------------------------------------------------
# Verification

def _first(items, n=5):
    return items[:n]


def check_deliveries(records: list[Rec], deliveries: list[tuple[int, int]], partitions: int) -> None:
    """Offsets dense from 0 per partition, in produce order, keys on one partition each."""
    per_partition: dict[int, list[int]] = defaultdict(list)
    key_partition: dict[bytes | None, int] = {}
    bad_keys = []
    for rec, (p, off) in zip(records, deliveries):
        assert 0 <= p < partitions, f"delivery to partition {p} of a {partitions}-partition topic"
        per_partition[p].append(off)
        if key_partition.setdefault(rec.key, p) != p:
            bad_keys.append((rec.key, key_partition[rec.key], p))
    assert not bad_keys, f"keys delivered to more than one partition: {_first(bad_keys)}"
    assert len(per_partition) == partitions, \
        f"only partitions {sorted(per_partition)} received records (keys should spread over all {partitions})"
    for p, offsets in per_partition.items():
        assert offsets == list(range(len(offsets))), (
            f"partition {p}: delivery offsets in produce order are not 0..{len(offsets) - 1}; "
            f"first deviations: {_first([(i, o) for i, o in enumerate(offsets) if i != o])}")


def check_consumed(records: list[Rec], deliveries: list[tuple[int, int]], consumed: list[Consumed],
                   compare_timestamps: bool = True) -> None:
    """Consumed exactly the delivered records, at their delivered positions, intact."""
    by_pos: dict[tuple[int, int], Rec] = {}
    dups = []
    for c in consumed:
        if (c.partition, c.offset) in by_pos:
            dups.append((c.partition, c.offset))
        by_pos[(c.partition, c.offset)] = c.rec
    assert not dups, f"{len(dups)} positions consumed twice, first: {_first(dups)}"

    expected_pos = set(deliveries)
    extra = sorted(set(by_pos) - expected_pos)
    missing = sorted(expected_pos - set(by_pos))
    assert not missing, f"{len(missing)} delivered records not consumed, first (partition, offset): {_first(missing)}"
    assert not extra, f"{len(extra)} unexpected records consumed, first (partition, offset): {_first(extra)}"

    mismatches = []
    for rec, pos in zip(records, deliveries):
        got = by_pos[pos]
        want = rec if compare_timestamps else Rec(rec.key, rec.value, rec.headers, got.timestamp)
        if got != want:
            mismatches.append((pos, want, got))
    assert not mismatches, (f"{len(mismatches)} records differ; first (position, expected, got): "
                            f"{_first(mismatches, 3)}")

    last: dict[int, int] = {}
    for c in consumed:
        assert c.offset > last.get(c.partition, -1), \
            f"partition {c.partition}: offset {c.offset} consumed after {last[c.partition]}"
        last[c.partition] = c.offset
