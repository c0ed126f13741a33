"""Round trip of 100k keyed records with headers and timestamps through
kafka-python (a pure-Python client), before and after a restart of the node."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from support import Consumed, Rec, check_consumed, check_deliveries, make_records

TOPIC = "roundtrip-kafka-python"
PARTITIONS = 3
COUNT = 100_000


def create_topic_kafka_python(bootstrap: str, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1)],
                            timeout_ms=30_000)
        assert name in admin.list_topics()
        described = {t["name"]: t for t in admin.describe_topics([name])}
        assert described[name]["error_code"] == 0, described[name]
        assert len(described[name]["partitions"]) == partitions, described[name]
    finally:
        admin.close()


def produce_kafka_python(bootstrap: str, topic: str, records: list[Rec]) -> list[tuple[int, int]]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                             linger_ms=5, batch_size=64 * 1024, request_timeout_ms=30_000)
    try:
        futures = [producer.send(topic, key=r.key, value=r.value, headers=list(r.headers),
                                 timestamp_ms=r.timestamp)
                   for r in records]
        producer.flush(timeout=120)
        deliveries = []
        for i, f in enumerate(futures):
            md = f.get(timeout=1)
            assert md.topic == topic, (i, md)
            deliveries.append((md.partition, md.offset))
        return deliveries
    finally:
        producer.close(timeout=10)


def consume_kafka_python(bootstrap: str, topic: str, partitions: int, timeout: float = 180.0) -> list[Consumed]:
    """Reads every partition from offset 0 up to its end offset, without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="none", request_timeout_ms=30_000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        end = consumer.end_offsets(tps, timeout_ms=30_000)
        out: list[Consumed] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, (
                f"consume timed out with {len(out)} records; positions "
                f"{ {tp.partition: consumer.position(tp) for tp in tps} }, end offsets "
                f"{ {tp.partition: o for tp, o in end.items()} }")
            for tp, msgs in consumer.poll(timeout_ms=500, max_records=10_000).items():
                for m in msgs:
                    assert m.timestamp_type == 0, f"timestamp type {m.timestamp_type} at {tp}/{m.offset}"
                    out.append(Consumed(m.partition, m.offset,
                                        Rec(m.key, m.value, tuple(m.headers or ()), m.timestamp)))
        return out
    finally:
        consumer.close()


def test_roundtrip_kafka_python(strata):
    create_topic_kafka_python(strata.bootstrap, TOPIC, PARTITIONS)

    records = make_records(COUNT)
    deliveries = produce_kafka_python(strata.bootstrap, TOPIC, records)
    check_deliveries(records, deliveries, PARTITIONS)

    consumed = consume_kafka_python(strata.bootstrap, TOPIC, PARTITIONS)
    check_consumed(records, deliveries, consumed)

    strata.restart()

    consumed_after_restart = consume_kafka_python(strata.bootstrap, TOPIC, PARTITIONS)
    check_consumed(records, deliveries, consumed_after_restart)
