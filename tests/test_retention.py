"""Retention, DeleteRecords and the deletion of segment objects nobody references.

Nodes here run with short retention checks and collection intervals
(RETENTION_ARGS); every wait is a bounded poll with a generous timeout, so a
slow machine only makes the tests slower, never wrong.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from support import (BASE_TIMESTAMP_MS, Rec, check_consumed, confluent_admin, confluent_consumer,
                     confluent_producer, consume_confluent, create_topic, produce_confluent,
                     wait_until)

TIMEOUT_S = 60.0
RETENTION_ARGS = ("--retention-check-interval", "500ms", "--gc-interval", "500ms",
                  "--unreferenced-grace", "1s")


def records(n: int, first: int = 0, timestamp: int | None = BASE_TIMESTAMP_MS,
            value_size: int = 40) -> list[Rec]:
    """n records; timestamp None stamps them with the current time."""
    now = int(time.time() * 1000)
    return [Rec(f"k{first + i}".encode(), f"v{first + i}-".encode().ljust(value_size, b"."), (),
                (now if timestamp is None else timestamp) + i)
            for i in range(n)]


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    """(log start, high watermark) by ListOffsets earliest and latest."""
    consumer = confluent_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        consumer.close()


def delete_records(bootstrap: str, topic: str, partition: int, offset: int) -> int:
    """AdminClient.delete_records; returns the new low watermark."""
    admin = confluent_admin(bootstrap)  # kept alive until its future resolves
    futures = admin.delete_records([TopicPartition(topic, partition, offset)],
                                   request_timeout=TIMEOUT_S, operation_timeout=TIMEOUT_S)
    (future,) = futures.values()
    return future.result(timeout=TIMEOUT_S).low_watermark


def segment_files(strata) -> set[str]:
    """Names of the segment objects in the node's local bucket."""
    directory = Path(strata.data_dir) / "bucket" / "segments"
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if p.name.endswith(".seg")}


def produce_new_objects(strata, topic: str, recs: list[Rec], partition: int | None = 0,
                        **conf) -> tuple[list[tuple[int, int]], set[str]]:
    """Produces recs and returns their deliveries and the segment objects that appeared."""
    before = segment_files(strata)
    deliveries = produce_confluent(strata.bootstrap, topic, recs, partition=partition, **conf)
    return deliveries, segment_files(strata) - before


def test_delete_records_moves_the_low_watermark_and_consumers_start_there(strata):
    topic = "delete-records"
    create_topic(strata.bootstrap, topic, 1)
    recs = records(20)
    deliveries = produce_confluent(strata.bootstrap, topic, recs, partition=0)
    assert deliveries == [(0, i) for i in range(20)]

    assert delete_records(strata.bootstrap, topic, 0, 12) == 12
    assert watermarks(strata.bootstrap, topic) == (12, 20)
    assert delete_records(strata.bootstrap, topic, 0, 5) == 12, "the log start never moves back"

    # ListOffsets earliest is the log start
    from_beginning = consume_confluent(strata.bootstrap, topic, 1, start_offset=OFFSET_BEGINNING,
                                       timeout=TIMEOUT_S)
    assert [c.offset for c in from_beginning] == list(range(12, 20))
    check_consumed(recs[12:], deliveries[12:], from_beginning)
    # a position below the log start is out of range: earliest resets to the log start...
    reset_early = consume_confluent(strata.bootstrap, topic, 1, start_offset=3, timeout=TIMEOUT_S,
                                    **{"auto.offset.reset": "earliest"})
    check_consumed(recs[12:], deliveries[12:], reset_early)
    # ...and a group without committed offsets starts there too
    group = confluent_consumer(strata.bootstrap, **{"group.id": "retention-readers",
                                                    "auto.offset.reset": "earliest",
                                                    "enable.partition.eof": False})
    try:
        group.subscribe([topic])
        got = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(got) < 8 and time.monotonic() < deadline:
            for msg in group.consume(num_messages=100, timeout=0.5):
                assert msg.error() is None, msg.error()
                got.append(msg.offset())
        assert got == list(range(12, 20))
    finally:
        group.close()

    # latest resets to the end: only what comes next is read
    consumer = confluent_consumer(strata.bootstrap, **{"auto.offset.reset": "latest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 3)])
        assert _end_of_partition(consumer) == 20
        produce_confluent(strata.bootstrap, topic, records(1, first=20), partition=0)
        msg = _next_message(consumer)
        assert (msg.offset(), msg.value()) == (20, records(1, first=20)[0].value)
    finally:
        consumer.close()

    # -1 deletes everything; beyond the high watermark is refused
    assert delete_records(strata.bootstrap, topic, 0, OFFSET_END) == 21
    assert watermarks(strata.bootstrap, topic) == (21, 21)
    with pytest.raises(KafkaException) as failure:
        delete_records(strata.bootstrap, topic, 0, 50)
    assert failure.value.args[0].name() == "OFFSET_OUT_OF_RANGE"


def _end_of_partition(consumer, timeout: float = TIMEOUT_S) -> int:
    """Waits for the consumer's partition-EOF event, which comes once it fetched at the end
    of the log (after any offset reset); returns the offset it reports. No record may come first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=10, timeout=0.5):
            assert msg.error() is not None, f"unexpected record at offset {msg.offset()}"
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return msg.offset()
            raise KafkaException(msg.error())
    raise AssertionError(f"no end of partition within {timeout}s")


def _next_message(consumer, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1, timeout=0.5):
            if msg.error() is None:
                return msg
    raise AssertionError(f"no record within {timeout}s")


def test_time_retention_drops_old_data_and_deletes_its_objects(strata_factory):
    strata = strata_factory(*RETENTION_ARGS)
    topic = "short-retention"
    create_topic(strata.bootstrap, topic, 1, config={"retention.ms": "60000"})
    # records stamped long ago, then fresh ones, in objects of their own
    old = records(15)
    _, old_objects = produce_new_objects(strata, topic, old)
    new = records(5, first=15, timestamp=None)
    new_deliveries, new_objects = produce_new_objects(strata, topic, new)
    assert old_objects and new_objects

    wait_until(lambda: watermarks(strata.bootstrap, topic) == (15, 20), timeout=TIMEOUT_S,
               what="the log start past the expired records")
    consumed = consume_confluent(strata.bootstrap, topic, 1, start_offset=OFFSET_BEGINNING,
                                 timeout=TIMEOUT_S)
    check_consumed(new, new_deliveries, consumed)
    wait_until(lambda: not (segment_files(strata) & old_objects), timeout=TIMEOUT_S,
               what="the expired objects deleted from the bucket")
    assert new_objects <= segment_files(strata), "objects holding live records stay"
    consumed = consume_confluent(strata.bootstrap, topic, 1, start_offset=OFFSET_BEGINNING,
                                 timeout=TIMEOUT_S)
    check_consumed(new, new_deliveries, consumed)


def test_byte_retention_keeps_the_newest_records_within_the_limit(strata_factory):
    strata = strata_factory(*RETENTION_ARGS)
    topic = "byte-retention"
    create_topic(strata.bootstrap, topic, 1,
                 config={"retention.ms": "-1", "retention.bytes": "15000"})
    recs = []
    for round_ in range(3):  # three flushes of about 10 KB each
        batch = records(10, first=10 * round_, value_size=1000)
        produce_new_objects(strata, topic, batch, **{"compression.type": "none"})
        recs += batch
    # at most 15000 bytes may stay: fewer than 15 of these records
    wait_until(lambda: watermarks(strata.bootstrap, topic)[0] >= 16, timeout=TIMEOUT_S,
               what="the log start past the oldest records")
    low, high = watermarks(strata.bootstrap, topic)
    assert high == 30 and low <= 30
    consumed = consume_confluent(strata.bootstrap, topic, 1, start_offset=OFFSET_BEGINNING,
                                 timeout=TIMEOUT_S)
    assert [c.offset for c in consumed] == list(range(low, 30))


def test_deleting_a_topic_deletes_its_objects(strata_factory):
    strata = strata_factory(*RETENTION_ARGS)
    topic = "short-lived"
    create_topic(strata.bootstrap, topic, 2, config={"retention.ms": "-1"})
    _, objects = produce_new_objects(strata, topic, records(50), partition=None)
    assert objects
    admin = confluent_admin(strata.bootstrap)
    admin.delete_topics([topic])[topic].result(timeout=TIMEOUT_S)
    wait_until(lambda: not (segment_files(strata) & objects), timeout=TIMEOUT_S,
               what="the deleted topic's objects gone from the bucket")


def test_an_object_shared_by_partitions_stays_until_no_partition_reads_it(strata_factory):
    # a long flush interval puts both partitions' records into one segment object
    strata = strata_factory(*RETENTION_ARGS, "--flush-interval", "2s")
    topic = "shared-object"
    create_topic(strata.bootstrap, topic, 2, config={"retention.ms": "-1"})
    create_topic(strata.bootstrap, "witness", 1, config={"retention.ms": "-1"})
    before = segment_files(strata)
    producer = confluent_producer(strata.bootstrap, **{"linger.ms": 20})
    for partition in (0, 1):
        for rec in records(5):
            producer.produce(topic, value=rec.value, partition=partition)
    assert producer.flush(TIMEOUT_S) == 0
    (shared,) = segment_files(strata) - before
    _, witness_objects = produce_new_objects(strata, "witness", records(3))
    assert witness_objects

    # partition 0 no longer needs the object; the witness object becomes garbage at once
    assert delete_records(strata.bootstrap, topic, 0, OFFSET_END) == 5
    admin = confluent_admin(strata.bootstrap)  # keep the handle alive until its future resolves
    admin.delete_topics(["witness"])["witness"].result(timeout=TIMEOUT_S)
    wait_until(lambda: not (segment_files(strata) & witness_objects), timeout=TIMEOUT_S,
               what="the witness topic's objects collected")
    assert shared in segment_files(strata), "partition 1 still reads the shared object"
    consumed = consume_confluent(strata.bootstrap, topic, 2, start_offset=OFFSET_BEGINNING,
                                 timeout=TIMEOUT_S)
    assert sorted((c.partition, c.offset) for c in consumed) == [(1, i) for i in range(5)]

    assert delete_records(strata.bootstrap, topic, 1, OFFSET_END) == 5
    wait_until(lambda: shared not in segment_files(strata), timeout=TIMEOUT_S,
               what="the shared object deleted once no partition reads it")


def topic_config(admin, topic: str, name: str) -> ConfigEntry:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)[name]


def alter_config(admin, topic: str, name: str, value: str | None,
                 operation: AlterConfigOpType) -> None:
    entry = ConfigEntry(name, value, incremental_operation=operation)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)


def test_retention_changed_on_a_live_topic_applies_at_the_next_check(strata_factory):
    strata = strata_factory(*RETENTION_ARGS)
    topic = "kept-then-trimmed"
    create_topic(strata.bootstrap, topic, 1, config={"retention.ms": "-1"})
    produce_confluent(strata.bootstrap, topic, records(10), partition=0)
    admin = confluent_admin(strata.bootstrap)
    assert topic_config(admin, topic, "retention.ms").value == "-1"

    alter_config(admin, topic, "retention.ms", "60000", AlterConfigOpType.SET)
    entry = topic_config(admin, topic, "retention.ms")
    assert (entry.value, entry.is_default) == ("60000", False)
    wait_until(lambda: watermarks(strata.bootstrap, topic) == (10, 10), timeout=TIMEOUT_S,
               what="the old records dropped under the new retention.ms")

    alter_config(admin, topic, "retention.ms", None, AlterConfigOpType.DELETE)
    entry = topic_config(admin, topic, "retention.ms")
    assert (entry.value, entry.is_default) == ("604800000", True)
    with pytest.raises(KafkaException) as failure:
        alter_config(admin, topic, "retention.ms", "soon", AlterConfigOpType.SET)
    assert failure.value.args[0].name() == "INVALID_CONFIG"
    with pytest.raises(KafkaException) as failure:
        alter_config(admin, "no-such-topic", "retention.ms", "1", AlterConfigOpType.SET)
    assert failure.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"
