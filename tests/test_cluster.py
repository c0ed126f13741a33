"""A cluster of separate processes: one `strata metadata` and three `strata agent`s sharing a
bucket. Any agent takes any partition, clients on different agents see the same data,
Metadata lists live agents only, and a killed agent drops out within its lease."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import clean_env, free_ports, strata_bin, tail
from support import consume_confluent, make_records, produce_confluent

LEASE_S = 2.0
START_TIMEOUT_S = 30.0


class Process:
    def __init__(self, name: str, args: list[str], workdir: Path, ready_prefix: str):
        self.name = name
        self.log = workdir / f"{name}.log"
        self.out = workdir / f"{name}.out"
        with open(self.out, "wb") as out, open(self.log, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=clean_env())
        deadline = time.monotonic() + START_TIMEOUT_S
        while ready_prefix not in self.out.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start:\n{tail(self.log)}")
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
    processes = [Process("metadata", [
        binary, "metadata", "--metadata-listen", f"127.0.0.1:{metadata_port}",
        "--metadata-http-listen", f"127.0.0.1:{metadata_http}",
        "--store", f"sqlite://{tmp_path}/metadata.db"], tmp_path, "strata metadata ready")]
    for node, port in enumerate(agent_ports, start=1):
        processes.append(Process(f"agent{node}", [
            binary, "agent", "--metadata", metadata_url, "--node-id", str(node),
            "--kafka-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0",
            "--bucket", f"file://{tmp_path}/bucket", "--heartbeat-interval", "200ms",
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
    first = cluster["agents"][0]
    cluster["processes"][2].stop(signal.SIGKILL)  # agent 2
    killed_at = time.monotonic()
    while 2 in brokers_seen_by(first):
        # lease plus one heartbeat of the observing agent, with slack for a loaded machine
        assert time.monotonic() - killed_at < LEASE_S + 5, "agent 2 still listed"
        time.sleep(0.1)
    assert brokers_seen_by(first) == {1, 3}


def test_a_second_agent_with_the_same_node_id_is_refused(cluster, tmp_path):
    metadata_url = next(arg for arg in cluster["processes"][1].proc.args if arg.startswith("http://"))
    (port,) = free_ports(1)
    result = subprocess.run([
        strata_bin(), "agent", "--metadata", metadata_url, "--node-id", "1",
        "--kafka-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0",
        "--bucket", f"file://{tmp_path}/bucket"], capture_output=True, text=True, timeout=30, env=clean_env())
    assert result.returncode != 0
    assert "node id 1 is held by another agent" in result.stderr
