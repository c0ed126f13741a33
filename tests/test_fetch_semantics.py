"""ListOffsets and Fetch semantics through confluent-kafka."""

import time

from confluent_kafka import TopicPartition

from support import (Rec, check_consumed, confluent_consumer, consume_confluent, create_topic,
                     produce_confluent)

T0 = 1_710_000_000_000


def timestamped_records(n: int, step_ms: int = 100, value_size: int = 20) -> list[Rec]:
    return [Rec(f"k{i}".encode(), f"v{i}".encode().ljust(value_size, b"."), (), T0 + step_ms * i)
            for i in range(n)]


def produce_in_batches(bootstrap, topic, records, batch_size):
    """Separate flushes so the log holds several batches of batch_size records."""
    deliveries = []
    for start in range(0, len(records), batch_size):
        deliveries += produce_confluent(bootstrap, topic, records[start:start + batch_size], partition=0,
                                        **{"linger.ms": 50})
    return deliveries


def test_list_offsets_earliest_latest_and_by_timestamp(strata):
    topic = "list-offsets"
    create_topic(strata.bootstrap, topic, 1)
    records = timestamped_records(30)
    deliveries = produce_in_batches(strata.bootstrap, topic, records, batch_size=10)
    assert deliveries == [(0, i) for i in range(30)]

    consumer = confluent_consumer(strata.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        assert consumer.get_watermark_offsets(tp, timeout=10, cached=False) == (0, 30)

        def offset_for(ts: int) -> int:
            (res,) = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert res.error is None, res.error
            return res.offset

        assert offset_for(-2) == 0, "ListOffsets EARLIEST"
        assert offset_for(-1) == 30, "ListOffsets LATEST"
        assert offset_for(T0 - 1_000_000) == 0, "timestamp before every record"
        assert offset_for(T0 + 100 * 30) == -1, "timestamp after every record"
        wrong = {}
        for i, r in enumerate(records):
            for ts in (r.timestamp, r.timestamp - 50, r.timestamp - 99):
                got = offset_for(ts)
                if got != i:
                    wrong[ts] = (got, i)
        assert not wrong, f"offsets_for_times(ts) -> (got, expected) wrong for: {wrong}"
    finally:
        consumer.close()


def test_consumer_at_end_of_log_is_woken_by_new_record(strata):
    topic = "long-poll"
    create_topic(strata.bootstrap, topic, 1)
    produce_confluent(strata.bootstrap, topic, timestamped_records(3), partition=0)

    # A long fetch.wait.max.ms: if the broker only answered when the wait
    # expired, the record below would arrive after ~10 s.
    consumer = confluent_consumer(strata.bootstrap, **{"fetch.wait.max.ms": 10_000,
                                                       "enable.partition.eof": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 3)])
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # settle into a waiting fetch at the end of the log
            msg = consumer.poll(0.2)
            assert msg is None, f"unexpected message at the end of the log: {msg.error() or msg.offset()}"

        produce_confluent(strata.bootstrap, topic, [Rec(b"late", b"arrival", (), T0 + 10_000)], partition=0)
        produced_at = time.monotonic()
        msg = None
        while msg is None and time.monotonic() - produced_at < 15:
            msg = consumer.poll(0.1)
        waited = time.monotonic() - produced_at
        assert msg is not None, "record produced while the consumer waited never arrived (15 s)"
        assert msg.error() is None, msg.error()
        assert (msg.offset(), msg.key(), msg.value()) == (3, b"late", b"arrival")
        assert waited < 5.0, f"waiting fetch was answered {waited:.1f}s after the produce (not woken)"
    finally:
        consumer.close()


def test_fetch_makes_progress_when_batches_exceed_max_partition_fetch_bytes(strata):
    topic = "kip-74"
    create_topic(strata.bootstrap, topic, 1)
    big = [Rec(b"big", b"B" * 64 * 1024, (("h", b"1"),), T0)]
    many = timestamped_records(500, value_size=200)  # one batch of ~100 KB thanks to linger
    deliveries = produce_confluent(strata.bootstrap, topic, big, partition=0)
    deliveries += produce_confluent(strata.bootstrap, topic, many, partition=0,
                                    **{"linger.ms": 500, "batch.num.messages": 10_000})
    assert deliveries == [(0, i) for i in range(501)]

    # librdkafka requires fetch.max.bytes >= message.max.bytes (minimum 1000).
    consumed = consume_confluent(strata.bootstrap, topic, 1, timeout=60,
                                 **{"max.partition.fetch.bytes": 1024, "fetch.max.bytes": 1024,
                                    "message.max.bytes": 1000})
    check_consumed(big + many, deliveries, consumed)


def test_fetch_from_the_middle_of_a_batch(strata):
    topic = "mid-batch"
    create_topic(strata.bootstrap, topic, 1)
    records = timestamped_records(20)
    deliveries = produce_confluent(strata.bootstrap, topic, records, partition=0, **{"linger.ms": 200})
    consumed = consume_confluent(strata.bootstrap, topic, 1, start_offset=7)
    assert [c.offset for c in consumed] == list(range(7, 20))
    check_consumed(records[7:], deliveries[7:], consumed)


def test_fetch_out_of_range_resets_to_earliest(strata):
    topic = "out-of-range"
    create_topic(strata.bootstrap, topic, 1)
    records = timestamped_records(5)
    deliveries = produce_confluent(strata.bootstrap, topic, records, partition=0)
    consumed = consume_confluent(strata.bootstrap, topic, 1, start_offset=1000,
                                 **{"auto.offset.reset": "earliest"})
    check_consumed(records, deliveries, consumed)
