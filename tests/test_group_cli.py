"""The operator CLI for consumer groups (`strata group list|describe|reset-offsets`)
against a node whose group has committed offsets."""

from __future__ import annotations

import time
from collections import defaultdict

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from group_support import PLAN_LINE_RE, cli_ok, describe_group, group_cli, list_groups
from support import BASE_TIMESTAMP_MS, CLIENT_TIMEOUT_S, create_topic, make_records, produce_confluent, wait_until

TOPIC = GROUP = "cli-group"
PARTITIONS = 3
COUNT = 3000


def member(bootstrap: str, **overrides) -> Consumer:
    conf = {"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    conf.update(overrides)
    return Consumer(conf)


def committed(bootstrap: str) -> dict[int, int]:
    """The group's committed offsets, fetched by a consumer that does not join the group."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        got = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=CLIENT_TIMEOUT_S)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def described_offsets(desc) -> dict[int, tuple[int, int, str]]:
    return {p: v for (t, p), v in desc.offsets.items() if t == TOPIC}


def plan(out: str) -> dict[int, int]:
    lines = [PLAN_LINE_RE.match(line) for line in out.splitlines()]
    return {int(m.group(2)): int(m.group(3)) for m in lines if m and m.group(1) == TOPIC}


def assert_fails_readably(proc, *words: str) -> None:
    assert proc.returncode != 0, f"{proc.args} succeeded but should have failed\nstdout:\n{proc.stdout}"
    message = proc.stderr.strip()
    assert message, f"{proc.args} failed ({proc.returncode}) without a message on stderr"
    assert "panicked" not in message and "stack backtrace" not in message, f"{proc.args} panicked:\n{message}"
    for w in words:
        assert w in message.lower(), f"{w!r} not in the error message:\n{message}"


def read_all_from_group(bootstrap: str, ends: dict[int, int]) -> dict[int, list[int]]:
    """Joins the group with auto.offset.reset=latest (so anything before the end is read only
    because of a committed offset) and reads until every partition is at its end."""
    c = member(bootstrap, **{"auto.offset.reset": "latest", "enable.partition.eof": True})
    offsets: dict[int, list[int]] = defaultdict(list)
    try:
        c.subscribe([TOPIC])
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, f"group consumer stalled; at end: {at_end}, read {len(offsets)}"
            for m in c.consume(num_messages=1000, timeout=0.2):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if m.offset() == ends[m.partition()]:
                            at_end.add(m.partition())
                        continue
                    raise KafkaException(err)
                offsets[m.partition()].append(m.offset())
    finally:
        c.close()
    return offsets


def test_group_cli_describe_and_reset(strata):
    create_topic(strata.bootstrap, TOPIC, PARTITIONS)
    records = make_records(COUNT)
    deliveries = produce_confluent(strata.bootstrap, TOPIC, records)
    ends: dict[int, int] = defaultdict(int)
    for p, o in deliveries:
        ends[p] = max(ends[p], o + 1)
    assert sorted(ends) == list(range(PARTITIONS))

    # A live member commits half of each partition.
    half = {p: ends[p] // 2 for p in range(PARTITIONS)}
    consumer = member(strata.bootstrap)
    closed = False
    try:
        consumer.subscribe([TOPIC])
        wait_until(lambda: consumer.poll(0.2) is not None and len(consumer.assignment()) == PARTITIONS,
                   timeout=30, what="the member to be assigned every partition")
        consumer.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in half.items()], asynchronous=False)

        assert list_groups(strata).get(GROUP) == ("Stable", "consumer")
        env_list = cli_ok(group_cli(strata, "list", use_env=True))
        assert f"{GROUP}\tStable\tconsumer" in env_list.splitlines(), env_list

        desc = describe_group(strata, GROUP)
        assert desc.state == "Stable", desc.text
        assert len(desc.members) == 1, desc.text
        assert sorted(desc.members[0][2]) == [(TOPIC, p) for p in range(PARTITIONS)], desc.text
        assert described_offsets(desc) == {p: (half[p], ends[p], str(ends[p] - half[p])) for p in half}, desc.text

        # Refused while the group has a live member, and nothing moves.
        refused = group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest", "--execute")
        assert_fails_readably(refused, "member")
        assert committed(strata.bootstrap) == half
    finally:
        if not closed:
            consumer.close()

    desc = wait_until(lambda: (d := describe_group(strata, GROUP)).state == "Empty" and d, timeout=30,
                      what="the group to be Empty after its member left")
    assert desc.members == [], desc.text
    assert list_groups(strata).get(GROUP, ("?",))[0] == "Empty"

    # Dry run: prints the plan, changes nothing.
    out = cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest"))
    assert plan(out) == {p: 0 for p in range(PARTITIONS)}, out
    assert committed(strata.bootstrap) == half, "a dry run moved the offsets"

    # Execute: back to the start; a new member of the group re-reads everything.
    out = cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest", "--execute"))
    assert plan(out) == {p: 0 for p in range(PARTITIONS)}, out
    assert committed(strata.bootstrap) == {p: 0 for p in range(PARTITIONS)}
    desc = describe_group(strata, GROUP)
    assert described_offsets(desc) == {p: (0, ends[p], str(ends[p])) for p in range(PARTITIONS)}, desc.text
    reread = read_all_from_group(strata.bootstrap, ends)
    assert {p: offs[0] for p, offs in reread.items()} == {p: 0 for p in range(PARTITIONS)}
    assert {p: offs for p, offs in reread.items()} == {p: list(range(ends[p])) for p in range(PARTITIONS)}
    assert committed(strata.bootstrap) == {p: 0 for p in range(PARTITIONS)}, "the re-reader committed nothing"

    # --to-timestamp: the first offset whose timestamp is at or after it. Record i has
    # timestamp BASE + i, so on the partition holding record 1000 the match is exact; on the
    # others it is the next record after it.
    target_ts = BASE_TIMESTAMP_MS + 1000
    expected: dict[int, int] = {}
    for i, (p, o) in enumerate(deliveries):
        if records[i].timestamp >= target_ts and p not in expected:
            expected[p] = o
    dry = cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-timestamp", str(target_ts)))
    assert plan(dry) == expected, dry
    assert committed(strata.bootstrap) == {p: 0 for p in range(PARTITIONS)}, "a dry run moved the offsets"
    out = cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-timestamp", str(target_ts),
                           "--execute"))
    assert plan(out) == expected, out
    assert committed(strata.bootstrap) == expected
    reread = read_all_from_group(strata.bootstrap, ends)
    assert {p: offs[0] for p, offs in reread.items()} == expected
    for p, offs in reread.items():
        first = records[deliveries.index((p, offs[0]))]
        assert first.timestamp >= target_ts

    # A timestamp after every record: the end of each partition.
    out = cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC,
                           "--to-timestamp", str(BASE_TIMESTAMP_MS + COUNT + 1), "--execute"))
    assert plan(out) == dict(ends), out
    assert committed(strata.bootstrap) == dict(ends)

    # --to-offset is clamped to each partition's bounds; --to-latest is the end.
    out = cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-offset", "7", "--execute"))
    assert committed(strata.bootstrap) == {p: 7 for p in range(PARTITIONS)}, out
    out = cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-offset", str(10**9),
                           "--execute"))
    assert committed(strata.bootstrap) == dict(ends), out
    cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest", "--execute"))
    cli_ok(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-latest", "--execute"))
    desc = describe_group(strata, GROUP)
    assert described_offsets(desc) == {p: (ends[p], ends[p], "0") for p in range(PARTITIONS)}, desc.text


def test_group_cli_errors(strata):
    create_topic(strata.bootstrap, TOPIC, 1)
    # a topic that does not exist
    assert_fails_readably(group_cli(strata, "reset-offsets", GROUP, "--topic", "no-such-topic", "--to-earliest",
                                    "--execute"))
    # no target, or two of them
    assert_fails_readably(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC))
    assert_fails_readably(group_cli(strata, "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest",
                                    "--to-latest"))
    # nothing listening
    from conftest import free_ports
    port = free_ports(1)[0]
    proc = group_cli(strata, "list", "--bootstrap", f"127.0.0.1:{port}")
    assert_fails_readably(proc)
    # the node still answers
    cli_ok(group_cli(strata, "list"))
