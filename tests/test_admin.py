"""Admin APIs through confluent-kafka's AdminClient: CreateTopics (validate_only, any
replication factor), DescribeConfigs, DeleteTopics; and a clean stop that commits what
producers were still waiting for."""

from __future__ import annotations

import signal
import time

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from support import consume_confluent

TIMEOUT_S = 30


def admin(strata) -> AdminClient:
    return AdminClient({"bootstrap.servers": strata.bootstrap})


def topics_of(client: AdminClient) -> set[str]:
    return set(client.list_topics(timeout=TIMEOUT_S).topics)


def test_validate_only_creates_nothing(strata):
    client = admin(strata)  # keep the handle alive until its futures resolve
    futures = client.create_topics([NewTopic("dry-run", 4, 3)], validate_only=True)
    futures["dry-run"].result(timeout=TIMEOUT_S)
    assert "dry-run" not in topics_of(client)


def test_any_replication_factor_is_accepted(strata):
    client = admin(strata)  # keep the handle alive until its futures resolve
    futures = client.create_topics([NewTopic("replicated", 2, 3), NewTopic("defaulted", -1, -1)])
    for future in futures.values():
        future.result(timeout=TIMEOUT_S)
    metadata = client.list_topics(timeout=TIMEOUT_S)
    assert len(metadata.topics["replicated"].partitions) == 2
    assert len(metadata.topics["defaulted"].partitions) == 1


def test_creating_an_existing_topic_fails_with_topic_already_exists(strata):
    client = admin(strata)  # keep the handle alive until its futures resolve
    client.create_topics([NewTopic("twice", 1, 1)])["twice"].result(timeout=TIMEOUT_S)
    with pytest.raises(KafkaException) as failure:
        client.create_topics([NewTopic("twice", 1, 1)])["twice"].result(timeout=TIMEOUT_S)
    assert failure.value.args[0].name() == "TOPIC_ALREADY_EXISTS"


def test_describe_configs_reports_values_and_sources(strata):
    client = admin(strata)  # keep the handle alive until its futures resolve
    topic = NewTopic("configured", 1, 1, config={"retention.ms": "86400000"})
    client.create_topics([topic])["configured"].result(timeout=TIMEOUT_S)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "configured")
    configs = client.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    retention = configs["retention.ms"]
    assert retention.value == "86400000"
    assert not retention.is_default
    cleanup = configs["cleanup.policy"]
    assert cleanup.value == "delete"
    assert cleanup.is_default
    assert "max.message.bytes" in configs


def test_describe_configs_of_a_missing_topic_fails(strata):
    client = admin(strata)  # keep the handle alive until its futures resolve
    resource = ConfigResource(ConfigResource.Type.TOPIC, "nowhere")
    with pytest.raises(KafkaException) as failure:
        client.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert failure.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"


def test_invalid_config_is_refused(strata):
    client = admin(strata)  # keep the handle alive until its futures resolve
    topic = NewTopic("badly-configured", 1, 1, config={"retention.ms": "soon"})
    with pytest.raises(KafkaException) as failure:
        client.create_topics([topic])["badly-configured"].result(timeout=TIMEOUT_S)
    assert failure.value.args[0].name() == "INVALID_CONFIG"


def test_delete_topics(strata):
    client = admin(strata)  # keep the handle alive until its futures resolve
    client.create_topics([NewTopic("doomed", 2, 1)])["doomed"].result(timeout=TIMEOUT_S)
    client.delete_topics(["doomed"])["doomed"].result(timeout=TIMEOUT_S)
    assert "doomed" not in topics_of(client)
    with pytest.raises(KafkaException) as failure:
        client.delete_topics(["doomed"])["doomed"].result(timeout=TIMEOUT_S)
    assert failure.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"


def test_sigterm_commits_batches_still_waiting_for_their_flush(strata_factory):
    # a long flush interval keeps the produced batches in the open segment until the stop
    strata = strata_factory("--flush-interval", "30s")
    client = admin(strata)
    client.create_topics([NewTopic("at-stop", 1, 1)])["at-stop"].result(timeout=TIMEOUT_S)
    producer = Producer({"bootstrap.servers": strata.bootstrap, "linger.ms": 0, "acks": "all"})
    delivered = []
    for i in range(100):
        producer.produce("at-stop", value=f"v{i}".encode(),
                         on_delivery=lambda err, msg: delivered.append(err is None and msg.offset()))
    producer.poll(0.5)
    assert delivered == [], "nothing is acknowledged before the flush"
    strata.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + TIMEOUT_S
    while len(delivered) < 100 and time.monotonic() < deadline:
        producer.poll(0.1)
    assert sorted(delivered) == list(range(100)), "the stop flushed, committed and answered every batch"
    strata.proc.wait(timeout=TIMEOUT_S)
    strata.proc = None
    strata.start()
    values = [c.rec.value for c in consume_confluent(strata.bootstrap, "at-stop", 1, timeout=TIMEOUT_S)]
    assert values == [f"v{i}".encode() for i in range(100)]
