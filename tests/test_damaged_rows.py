"""An index row that cannot be read back: consumers get the records before it, then an
error they can see; the agent logs and counts it; `strata check` lists it."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import KafkaError, TopicPartition  # INVALID_MSG is Kafka's CORRUPT_MESSAGE (2)

from support import Rec, confluent_consumer, create_topic, produce_confluent
from test_client_limits import metric

T0 = 1_700_000_000_000


def bucket_files(strata) -> set[Path]:
    return {p for p in (strata.data_dir / "bucket").rglob("*") if p.is_file()}


def produce_in_segments(strata, topic: str, groups: int, per_group: int) -> list[Path]:
    """Produces `groups` groups of records, each acknowledged before the next is sent, so each
    lands in a segment object of its own; returns the objects in order."""
    create_topic(strata.bootstrap, topic, 1)
    objects = []
    for g in range(groups):
        before = bucket_files(strata)
        records = [Rec(f"{g}-{i}".encode(), f"value-{g}-{i}".encode(), (), T0 + g * 100 + i)
                   for i in range(per_group)]
        produce_confluent(strata.bootstrap, topic, records, partition=0)
        new = bucket_files(strata) - before
        assert len(new) == 1, f"group {g} made objects {new}"
        objects.append(new.pop())
    return objects


def consume_until_error(strata, topic: str, timeout: float = 30.0):
    """Reads the partition from offset 0 until the consumer reports an error; returns the
    offsets read and the error."""
    consumer = confluent_consumer(strata.bootstrap, **{"enable.partition.eof": False})
    offsets, error = [], None
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while error is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                error = msg.error()
            else:
                offsets.append(msg.offset())
    finally:
        consumer.close()
    return offsets, error


def test_a_missing_object_stops_consumers_with_an_error_after_the_records_before_it(strata):
    topic = "missing-object"
    objects = produce_in_segments(strata, topic, groups=3, per_group=5)
    objects[1].unlink()

    offsets, error = consume_until_error(strata, topic)
    assert offsets == list(range(5)), f"records before the damaged row: {offsets}"
    assert error is not None, "the consumer saw no error at the damaged row"
    assert error.code() == KafkaError.INVALID_MSG, error
    assert metric(strata, "strata_agent_damaged_row_reads_total", 'kind="missing"') >= 1
    assert metric(strata, "strata_agent_damaged_rows") == 1

    bucket = f"file://{strata.data_dir / 'bucket'}"
    check = strata.cli("check", "--bucket", bucket)
    assert check.returncode == 1, check
    damaged = [line for line in check.stdout.splitlines() if line.startswith("damaged")]
    assert len(damaged) == 1, check.stdout
    assert f"{topic}\t0\toffsets 5..10" in damaged[0], damaged[0]
    assert objects[1].name in damaged[0], damaged[0]
    assert "missing" in damaged[0], damaged[0]
    assert "3 index rows in 1 partitions" in check.stdout, check.stdout


def test_a_corrupt_chunk_is_reported_by_consumers_and_by_check(strata):
    topic = "corrupt-chunk"
    objects = produce_in_segments(strata, topic, groups=3, per_group=5)
    healthy = "healthy"
    produce_in_segments(strata, healthy, groups=2, per_group=3)
    data = bytearray(objects[2].read_bytes())
    data[60] ^= 0xFF  # inside the first chunk's payload
    objects[2].write_bytes(bytes(data))

    offsets, error = consume_until_error(strata, topic)
    assert offsets == list(range(10)), offsets
    assert error is not None and error.code() == KafkaError.INVALID_MSG, error
    assert metric(strata, "strata_agent_damaged_row_reads_total", 'kind="corrupt"') >= 1

    bucket = f"file://{strata.data_dir / 'bucket'}"
    only_healthy = strata.cli("check", "--bucket", bucket, "--topic", healthy)
    assert only_healthy.returncode == 0, only_healthy
    assert "0 damaged" in only_healthy.stdout
    everything = strata.cli("check", "--bucket", bucket)
    assert everything.returncode == 1
    assert "offsets 10..15" in everything.stdout, everything.stdout
    unknown = strata.cli("check", "--bucket", bucket, "--topic", "no-such-topic")
    assert unknown.returncode != 0 and "no topic named" in unknown.stderr, unknown
