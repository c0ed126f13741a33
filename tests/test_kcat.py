"""kcat (Debian's build on librdkafka 2.0.2) as producer, consumer and metadata client."""

import json
import shutil
import subprocess
import time

import pytest

from support import (Consumed, Rec, check_consumed, check_deliveries, create_topic, make_records,
                     produce_confluent)

KCAT_TIMEOUT_S = 60
CONSUME_FORMAT = r"%p\t%o\t%T\t%k\t%s\t%h\n"


def kcat(bootstrap: str, *args: str, stdin: str | None = None) -> str:
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed (scripts/test-env.sh installs it)", pytrace=False)
    proc = subprocess.run([exe, "-b", bootstrap, *args], input=stdin, capture_output=True, text=True,
                          timeout=KCAT_TIMEOUT_S)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr}"
    return proc.stdout


def kcat_produce(bootstrap: str, topic: str, records: list[Rec], headers: tuple[tuple[str, bytes], ...]) -> None:
    """Produces key:value lines; -H headers apply to every record of one invocation."""
    for r in records:
        assert r.headers == headers
    header_args = [a for k, v in headers for a in ("-H", f"{k}={v.decode()}")]
    lines = "".join(f"{r.key.decode()}:{r.value.decode()}\n" for r in records)
    kcat(bootstrap, "-P", "-t", topic, "-K", ":", "-X", "acks=all", *header_args, stdin=lines)


def kcat_consume(bootstrap: str, topic: str) -> list[Consumed]:
    """Everything in the topic from the beginning, until kcat reaches the end of every partition."""
    out = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", CONSUME_FORMAT)
    consumed = []
    for line in out.splitlines():
        partition, offset, ts, key, value, hdrs = line.split("\t")
        headers = tuple((k, v.encode()) for k, _, v in (h.partition("=") for h in hdrs.split(",") if h))
        consumed.append(Consumed(int(partition), int(offset),
                                 Rec(key.encode(), value.encode(), headers, int(ts))))
    return consumed


def positions_by_value(records: list[Rec], consumed: list[Consumed]) -> list[tuple[int, int]]:
    """(partition, offset) of each record, found by its (unique) value."""
    where = {c.rec.value: (c.partition, c.offset) for c in consumed}
    missing = [r.value for r in records if r.value not in where]
    assert not missing, f"{len(missing)} of {len(records)} records not consumed, first: {missing[:5]}"
    return [where[r.value] for r in records]


def kcat_records(n: int, headers: tuple[tuple[str, bytes], ...], tag: str) -> list[Rec]:
    return [Rec(f"key-{i % 37}".encode(), f"{tag}-value-{i}".encode(), headers, 0) for i in range(n)]


def test_kcat_produce_and_consume(strata):
    topic, partitions = "kcat-roundtrip", 3
    create_topic(strata.bootstrap, topic, partitions)

    first_headers = (("source", b"kcat"), ("batch", b"first"))
    second_headers = (("source", b"kcat"), ("batch", b"second"))
    records = kcat_records(1500, first_headers, "a") + kcat_records(500, second_headers, "b")
    t_before = int(time.time() * 1000)
    kcat_produce(strata.bootstrap, topic, records[:1500], first_headers)
    kcat_produce(strata.bootstrap, topic, records[1500:], second_headers)
    t_after = int(time.time() * 1000)

    consumed = kcat_consume(strata.bootstrap, topic)
    assert len(consumed) == len(records)
    positions = positions_by_value(records, consumed)
    check_deliveries(records, positions, partitions)
    check_consumed(records, positions, consumed, compare_timestamps=False)
    for c in consumed:
        assert t_before - 1000 <= c.rec.timestamp <= t_after + 1000, \
            f"{c.partition}/{c.offset}: create timestamp {c.rec.timestamp} outside [{t_before}, {t_after}]"


def test_kcat_metadata_listing(strata):
    create_topic(strata.bootstrap, "kcat-meta-three", 3)
    create_topic(strata.bootstrap, "kcat-meta-one", 1)

    md = json.loads(kcat(strata.bootstrap, "-L", "-J"))
    broker_ids = {b["id"] for b in md["brokers"]}
    assert [b["name"] for b in md["brokers"]] == [strata.bootstrap], md["brokers"]
    topics = {t["topic"]: t for t in md["topics"]}
    for name, count in (("kcat-meta-three", 3), ("kcat-meta-one", 1)):
        assert name in topics, f"{name} missing from kcat -L: {sorted(topics)}"
        t = topics[name]
        assert "error" not in t, t
        assert sorted(p["partition"] for p in t["partitions"]) == list(range(count)), t
        for p in t["partitions"]:
            assert p["leader"] in broker_ids, p
            assert "error" not in p, p

    one = json.loads(kcat(strata.bootstrap, "-L", "-J", "-t", "kcat-meta-three"))
    assert [t["topic"] for t in one["topics"]] == ["kcat-meta-three"]
    assert len(one["topics"][0]["partitions"]) == 3


def test_kcat_reads_confluent_records(strata):
    topic, partitions = "kcat-cross-client", 2
    create_topic(strata.bootstrap, topic, partitions)
    records = make_records(5000)
    deliveries = produce_confluent(strata.bootstrap, topic, records)

    consumed = kcat_consume(strata.bootstrap, topic)
    check_consumed(records, deliveries, consumed)


def test_kcat_produce_auto_creates_topic(strata_factory):
    strata = strata_factory("--default-partitions", "2")
    topic = "kcat-auto-created"
    headers = (("h", b"v"),)
    records = kcat_records(200, headers, "auto")
    kcat_produce(strata.bootstrap, topic, records, headers)

    md = json.loads(kcat(strata.bootstrap, "-L", "-J", "-t", topic))
    assert [t["topic"] for t in md["topics"]] == [topic]
    assert len(md["topics"][0]["partitions"]) == 2, md

    consumed = kcat_consume(strata.bootstrap, topic)
    positions = positions_by_value(records, consumed)
    check_deliveries(records, positions, 2)
    check_consumed(records, positions, consumed, compare_timestamps=False)
