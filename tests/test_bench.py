"""`strata bench`: the load generator against a real node and its null broker.

Counts are checked, never timings: what `bench produce` says was acknowledged is what
`bench consume --until-end` and a confluent-kafka consumer read back, and librdkafka can
produce to `bench null-broker`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from conftest import _die_with_parent, clean_env, free_ports, strata_bin, tail

RUN_TIMEOUT_S = 120.0
READY_RE = re.compile(r"^strata bench null-broker ready: bootstrap=(\S+)\s*$")


def bench(*args: str) -> dict:
    """Runs `strata bench ARGS --json --quiet` and returns its JSON summary."""
    cmd = [strata_bin(), "bench", *args, "--json", "--quiet"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=clean_env(), timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, \
        f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got:\n{proc.stdout}"
    return json.loads(lines[0])


def check_clean(summary: dict, sample_per_record: bool = True) -> None:
    """No Kafka errors, nothing given up on and (for producers) one latency sample per record."""
    assert summary["errors"] == [], summary
    assert summary["failed_records"] == 0, summary
    if sample_per_record:
        assert summary["latency_ms"]["samples"] == summary["records"], summary


def count_with_confluent(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0) -> int:
    """Records in every partition from offset 0 to the end of the log, read by librdkafka."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench-count-assign-only",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    })
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        count = 0
        at_eof = {p: False for p in range(partitions)}
        deadline = time.monotonic() + timeout
        while not all(at_eof.values()):
            assert time.monotonic() < deadline, f"counted {count} records, partitions at end: {at_eof}"
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof[msg.partition()] = True
                        continue
                    raise KafkaException(err)
                at_eof[msg.partition()] = False
                count += 1
        return count
    finally:
        consumer.close()


def test_bench_consume_reads_back_what_bench_produce_wrote(strata):
    topic = "bench-roundtrip"
    produced = bench("produce", "--bootstrap", strata.bootstrap, "--topic", topic,
                     "--partitions", "3", "--duration", "2s", "--rate", "4", "--record-size", "1024",
                     "--acks", "all")
    check_clean(produced)
    assert produced["mode"] == "produce"
    assert produced["records"] > 0, produced
    assert produced["bytes"] == produced["records"] * 1024, produced

    consumed = bench("consume", "--bootstrap", strata.bootstrap, "--topic", topic, "--until-end")
    check_clean(consumed, sample_per_record=False)
    assert consumed["records"] == produced["records"], (produced, consumed)
    assert consumed["bytes"] == produced["bytes"], (produced, consumed)

    assert count_with_confluent(strata.bootstrap, topic, 3) == produced["records"]

    # replaying one partition from an offset reads that partition's tail only
    part = bench("consume", "--bootstrap", strata.bootstrap, "--topic", topic, "--partitions", "1",
                 "--from", "1", "--until-end")
    assert 0 < part["records"] < produced["records"], part


def test_bench_e2e_measures_every_record_it_produced(strata):
    summary = bench("e2e", "--bootstrap", strata.bootstrap, "--topic", "bench-e2e", "--partitions", "2",
                    "--duration", "1s", "--rate", "2", "--record-size", "512", "--compression", "zstd")
    produced, consumed = summary["produce"], summary["consume"]
    check_clean(produced)
    assert produced["records"] > 0, summary
    assert consumed["records"] == produced["records"], summary
    assert consumed["latency_ms"]["samples"] == consumed["records"], summary
    assert consumed["errors"] == [], summary


@pytest.fixture
def null_broker(tmp_path: Path):
    """`strata bench null-broker` on a free loopback port; stopped with SIGTERM afterwards."""
    (port,) = free_ports(1)
    out_path, err_path = tmp_path / "null-broker.out", tmp_path / "null-broker.err"
    cmd = [strata_bin(), "bench", "null-broker", "--listen", f"127.0.0.1:{port}", "--partitions", "3"]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=clean_env(), preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 30
        bootstrap = None
        while bootstrap is None:
            for line in out_path.read_text(errors="replace").splitlines():
                m = READY_RE.match(line)
                if m:
                    bootstrap = m.group(1)
            if bootstrap is None:
                assert proc.poll() is None, f"null broker exited {proc.returncode}:\n{tail(err_path)}"
                assert time.monotonic() < deadline, f"null broker not ready:\n{tail(err_path)}"
                time.sleep(0.05)
        assert bootstrap == f"127.0.0.1:{port}"
        yield bootstrap
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
            code = None
    assert code == 0, f"null broker exited {code} after SIGTERM:\n{tail(err_path)}"


def test_librdkafka_produces_to_the_null_broker(null_broker):
    producer = Producer({
        "bootstrap.servers": null_broker,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 5,
        "message.timeout.ms": 30_000,
    })
    count = 3000
    delivered: list[tuple[int, int]] = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset()))

    for i in range(count):
        while True:
            try:
                producer.produce("null-topic", key=f"k{i % 97}".encode(), value=b"v" * 100,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still undelivered after 30 s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    assert len(delivered) == count
    # the null broker hands out dense offsets per partition, as a broker would
    partitions = {p for p, _ in delivered}
    assert partitions <= {0, 1, 2}, partitions
    for p in partitions:
        offsets = sorted(o for q, o in delivered if q == p)
        assert offsets == list(range(len(offsets))), f"partition {p}: {offsets[:10]}..."

    summary = bench("produce", "--bootstrap", null_broker, "--topic", "bench-null", "--records", "20000",
                    "--record-size", "256", "--clients", "2")
    check_clean(summary)
    assert summary["records"] == 20000
    assert summary["bytes"] == 20000 * 256
