"""Round trip of 100k keyed records with headers and timestamps through
confluent-kafka (librdkafka), before and after a restart of the node."""

from support import (check_consumed, check_deliveries, confluent_admin, consume_confluent,
                     create_topic, make_records, produce_confluent, topic_partition_counts)

TOPIC = "roundtrip-confluent"
PARTITIONS = 3
COUNT = 100_000


def test_roundtrip_confluent(strata):
    create_topic(strata.bootstrap, TOPIC, PARTITIONS)
    assert topic_partition_counts(confluent_admin(strata.bootstrap)).get(TOPIC) == PARTITIONS

    records = make_records(COUNT)
    deliveries = produce_confluent(strata.bootstrap, TOPIC, records)
    check_deliveries(records, deliveries, PARTITIONS)

    consumed = consume_confluent(strata.bootstrap, TOPIC, PARTITIONS)
    check_consumed(records, deliveries, consumed)

    strata.restart()

    assert topic_partition_counts(confluent_admin(strata.bootstrap)).get(TOPIC) == PARTITIONS
    consumed_after_restart = consume_confluent(strata.bootstrap, TOPIC, PARTITIONS)
    check_consumed(records, deliveries, consumed_after_restart)
