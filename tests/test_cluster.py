"""A cluster of separate processes: one `strata metadata` and three `strata agent`s sharing a
bucket (SeaweedFS when the test script started one, else a local directory). Any agent
takes any partition, clients on different agents see the same data, Metadata lists live
agents only, a killed agent drops out within its lease, and neither a killed agent nor a
restarted metadata service loses or duplicates an acknowledged record."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import clean_env, free_ports, strata_bin, tail
from support import consume_confluent, make_records, produce_confluent

LEASE_S = 2.0
START_TIMEOUT_S = 30.0


def bucket_args(tmp_path: Path) -> list[str]:
    """The shared bucket: a fresh prefix on the test script's SeaweedFS, else a directory."""
    endpoint = os.environ.get("STRATA_TEST_S3_SEAWEEDFS_ENDPOINT")
    if not endpoint:
        return ["--bucket", f"file://{tmp_path}/bucket"]
    env = os.environ
    return [
        "--bucket", f"s3://{env['STRATA_TEST_S3_SEAWEEDFS_BUCKET']}/cluster-{uuid.uuid4().hex[:8]}",
        "--s3-endpoint", endpoint, "--s3-path-style",
        "--s3-region", env.get("STRATA_TEST_S3_SEAWEEDFS_REGION", "us-east-1"),
        "--s3-access-key-id", env["STRATA_TEST_S3_SEAWEEDFS_ACCESS_KEY_ID"],
        "--s3-secret-access-key", env["STRATA_TEST_S3_SEAWEEDFS_SECRET_ACCESS_KEY"],
    ]


class Process:
    def __init__(self, name: str, args: list[str], workdir: Path, ready_prefix: str):
        self.name = name
        self.args = args
        self.workdir = workdir
        self.ready_prefix = ready_prefix
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.starts += 1
        self.log = self.workdir / f"{self.name}.{self.starts}.log"
        self.out = self.workdir / f"{self.name}.{self.starts}.out"
        with open(self.out, "wb") as out, open(self.log, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=clean_env())
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.ready_prefix not in self.out.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start:\n{tail(self.log)}")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def cluster(tmp_path):
    binary = strata_bin()
    metadata_port, metadata_http, *agent_ports = free_ports(2 + 3)
    metadata_url = f"http://127.0.0.1:{metadata_port}"
    bucket = bucket_args(tmp_path)
    processes = [Process("metadata", [
        binary, "metadata", "--metadata-listen", f"127.0.0.1:{metadata_port}",
        "--metadata-http-listen", f"127.0.0.1:{metadata_http}",
        "--store", f"sqlite://{tmp_path}/metadata.db"], tmp_path, "strata metadata ready")]
    for node, port in enumerate(agent_ports, start=1):
        processes.append(Process(f"agent{node}", [
            binary, "agent", "--metadata", metadata_url, "--node-id", str(node),
            "--kafka-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0",
            *bucket, "--heartbeat-interval", "200ms",
            "--agent-lease", f"{LEASE_S}s", "--flush-interval", "20ms"], tmp_path, "strata agent ready"))
    agents = [f"127.0.0.1:{p}" for p in agent_ports]
    deadline = time.monotonic() + 10
    while not all(brokers_seen_by(a) == {1, 2, 3} for a in agents):
        assert time.monotonic() < deadline, "agents did not all see each other"
        time.sleep(0.2)
    yield {"agents": agents, "processes": processes}
    for process in reversed(processes):
        process.stop()


def brokers_seen_by(bootstrap: str) -> set[int]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers)


def test_every_agent_lists_every_live_agent(cluster):
    for agent in cluster["agents"]:
        assert brokers_seen_by(agent) == {1, 2, 3}


def test_clients_on_different_agents_see_the_same_data(cluster):
    first, _, third = cluster["agents"]
    admin = AdminClient({"bootstrap.servers": first})
    admin.create_topics([NewTopic("shared", 6, 1)])["shared"].result(timeout=10)
    leaders = {p.leader for p in admin.list_topics("shared", timeout=10).topics["shared"].partitions.values()}
    assert len(leaders) >= 2, f"partition leaders are spread over agents, got {leaders}"
    records = make_records(3000)
    deliveries = produce_confluent(first, "shared", records)
    consumed = consume_confluent(third, "shared", 6, timeout=60)
    assert sorted((c.partition, c.offset) for c in consumed) == sorted(deliveries)
    assert sorted(c.rec.value for c in consumed) == sorted(r.value for r in records)


def test_a_killed_agent_drops_out_within_its_lease(cluster):
    survivors = [cluster["agents"][0], cluster["agents"][2]]
    cluster["processes"][2].stop(signal.SIGKILL)  # agent 2
    killed_at = time.monotonic()
    # a client may ask any agent it knows, and each agent refreshes its view with its own
    # heartbeat: wait until every answer, twice in a row, leaves agent 2 out
    clean_rounds = 0
    while clean_rounds < 2:
        # lease plus one heartbeat of the observing agents, with slack for a loaded machine
        assert time.monotonic() - killed_at < LEASE_S + 5, "agent 2 still listed"
        views = [brokers_seen_by(agent) for agent in survivors]
        clean_rounds = clean_rounds + 1 if all(v == {1, 3} for v in views) else 0
        time.sleep(0.3)


def test_a_second_agent_with_the_same_node_id_is_refused(cluster, tmp_path):
    metadata_url = next(arg for arg in cluster["processes"][1].proc.args if arg.startswith("http://"))
    (port,) = free_ports(1)
    result = subprocess.run([
        strata_bin(), "agent", "--metadata", metadata_url, "--node-id", "1",
        "--kafka-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0",
        "--bucket", f"file://{tmp_path}/bucket"], capture_output=True, text=True, timeout=30, env=clean_env())
    assert result.returncode != 0
    assert "node id 1 is held by another agent" in result.stderr


class LedgerProducer(threading.Thread):
    """An idempotent producer keeping a ledger of every acknowledged (partition, offset, value)."""

    def __init__(self, bootstrap: str, topic: str, count: int, pause_s: float = 0.01):
        super().__init__(daemon=True)
        self.pause_s = pause_s
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.timeout.ms": 120_000})
        self.topic, self.count = topic, count
        self.acked: list[tuple[int, int, bytes]] = []
        self.failed: list[str] = []

    def on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acked.append((msg.partition(), msg.offset(), msg.value()))

    def run(self) -> None:
        for i in range(self.count):
            while True:
                try:
                    self.producer.produce(self.topic, key=str(i % 97).encode(), value=f"r{i:06d}".encode(),
                                          on_delivery=self.on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            if i % 200 == 0:
                self.producer.poll(0)
                time.sleep(self.pause_s)  # a steady stream rather than one burst
        self.producer.flush(120)


def check_ledger(bootstrap: str, topic: str, partitions: int, ledger: LedgerProducer) -> None:
    assert not ledger.failed, ledger.failed[:3]
    assert len(ledger.acked) == ledger.count
    consumed = consume_confluent(bootstrap, topic, partitions, timeout=120)
    by_position = {(c.partition, c.offset): c.rec.value for c in consumed}
    assert len(by_position) == len(consumed)
    for partition, offset, value in ledger.acked:
        assert by_position.get((partition, offset)) == value, f"acknowledged {value!r} missing at {partition}/{offset}"
    values = [c.rec.value for c in consumed]
    assert len(values) == len(set(values)) == ledger.count, "no record is stored twice"
    for p in range(partitions):
        offsets = sorted(c.offset for c in consumed if c.partition == p)
        assert offsets == list(range(len(offsets))), f"offsets of partition {p} are dense from 0"


def start_ledger(cluster, topic: str, partitions: int, count: int) -> LedgerProducer:
    admin = AdminClient({"bootstrap.servers": cluster["agents"][0]})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=10)
    ledger = LedgerProducer(",".join(cluster["agents"]), topic, count)
    ledger.start()
    deadline = time.monotonic() + 60
    while len(ledger.acked) < count // 4:
        assert time.monotonic() < deadline and not ledger.failed, "producer made no progress"
        time.sleep(0.05)
    return ledger


def test_killing_an_agent_under_produce_load_loses_and_duplicates_nothing(cluster):
    ledger = start_ledger(cluster, "kill-agent", 6, 20_000)
    cluster["processes"][2].stop(signal.SIGKILL)  # agent 2, with requests in flight
    ledger.join(timeout=180)
    assert not ledger.is_alive()
    check_ledger(cluster["agents"][0], "kill-agent", 6, ledger)


def test_restarting_the_metadata_service_under_produce_load_loses_and_duplicates_nothing(cluster):
    ledger = start_ledger(cluster, "restart-metadata", 3, 20_000)
    metadata = cluster["processes"][0]
    metadata.stop()
    time.sleep(1.0)  # commits wait and retry meanwhile
    metadata.start()
    ledger.join(timeout=180)
    assert not ledger.is_alive()
    check_ledger(cluster["agents"][2], "restart-metadata", 3, ledger)
