"""The read tier's cache fleet end to end: one `strata metadata`, two `strata agent`s and
`strata cache` nodes sharing a local bucket directory, real confluent-kafka consumers.

- Each block is read from the bucket once for the whole cluster, by the cache node owning
  it on the rendezvous ring; agents read none themselves while their owners are healthy,
  however many consumers on however many agents replay the history.
- A cache node killed while consumers read costs bucket GETs (agents fall back to the
  bucket), never a lost, duplicated or reordered record.
- Without a cache fleet, agents started with the cache role form the ring themselves.
- A frozen cache node (SIGSTOP) delays reads by at most the peer timeout, then agents read
  its blocks from the bucket until it drops off their rings.
- The ring follows membership: a killed node drops off every agent's ring within its lease,
  a new node joins it, and blocks are then owned by the live nodes only.

Consumers fetch each partition from its leader, so two agents share blocks because
segments hold chunks of many partitions: the topics have 12 partitions, so every 1 MiB
block holds chunks of partitions led by both agents, and without the ring each agent would
read nearly every block itself. Agents run with no decoded-chunk cache and no compaction or
collection, so every chunk read goes through the block cache and the bucket holds only
segments.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import free_ports, strata_bin
from test_cluster import Process
from test_read_tier import BLOCK_BYTES, Replay, assert_all_read, produce_history, run_all, sample

LEASE_S = 2.0
RECORDS = 2400  # 8 KiB each: about 19 MiB of history per topic
PARTITIONS = 12
CONSUMERS_PER_AGENT = 2

COMMON_READ_ARGS = ("--read-block-bytes", str(BLOCK_BYTES), "--heartbeat-interval", "200ms")
PEER_TIMEOUT_S = 1.0


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


class Cluster:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.bucket = tmp_path / "bucket"
        self.binary = strata_bin()
        metadata_port, metadata_http = free_ports(2)
        self.metadata_url = f"http://127.0.0.1:{metadata_port}"
        self.processes: list[Process] = [Process("metadata", [
            self.binary, "metadata", "--metadata-listen", f"127.0.0.1:{metadata_port}",
            "--metadata-http-listen", f"127.0.0.1:{metadata_http}",
            "--store", f"sqlite://{tmp_path}/metadata.db"], tmp_path, "strata metadata ready")]
        self.caches: dict[str, tuple[Process, int]] = {}
        self.agents: list[tuple[str, int]] = []

    def start_cache(self, name: str) -> None:
        port, http = free_ports(2)
        process = Process(name, [
            self.binary, "cache", "--metadata", self.metadata_url,
            "--cache-listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http}",
            "--bucket", f"file://{self.bucket}", "--read-cache-bytes", str(256 * 1024 * 1024),
            "--cache-node-lease", f"{LEASE_S}s", *COMMON_READ_ARGS], self.tmp_path, "strata cache ready")
        self.processes.append(process)
        self.caches[name] = (process, http)

    def start_agent(self, node_id: int, cache_role: bool = False) -> None:
        port, http, cache_port = free_ports(3)
        role = ("--cache-listen", f"127.0.0.1:{cache_port}") if cache_role else ()
        self.processes.append(Process(f"agent{node_id}", [
            self.binary, "agent", *role, "--metadata", self.metadata_url, "--node-id", str(node_id),
            "--kafka-listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http}",
            "--bucket", f"file://{self.bucket}", "--agent-lease", f"{LEASE_S}s",
            "--flush-bytes", str(3 * 1024 * 1024), "--read-decoded-cache-bytes", "0",
            "--compaction-interval", "0s", "--gc-interval", "0s", "--cache-peer-timeout", f"{PEER_TIMEOUT_S}s",
            *COMMON_READ_ARGS],
            self.tmp_path, "strata agent ready"))
        self.agents.append((f"127.0.0.1:{port}", http))

    def kill_cache(self, name: str) -> None:
        process, _ = self.caches.pop(name)
        process.stop(signal.SIGKILL)

    def agent_metric(self, name: str) -> list[float]:
        return [sample(http_get(http, "/metrics"), name) for _, http in self.agents]

    def bucket_gets(self) -> tuple[float, dict[str, float]]:
        """GETs of all agents together, and of each live cache node."""
        get = 'strata_object_store_requests_total{op="get"}'
        caches = {name: sample(http_get(http, "/metrics"), get) for name, (_, http) in self.caches.items()}
        return sum(self.agent_metric(get)), caches

    def wait_for_ring(self, members: int) -> None:
        deadline = time.monotonic() + LEASE_S + 10
        while self.agent_metric("strata_agent_read_ring_members") != [members] * len(self.agents):
            assert time.monotonic() < deadline, \
                f"rings: {self.agent_metric('strata_agent_read_ring_members')}, want {members}"
            time.sleep(0.1)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        cluster.start_cache("cache1")
        cluster.start_cache("cache2")
        cluster.start_agent(1)
        cluster.start_agent(2)
        cluster.wait_for_ring(2)
        yield cluster
    finally:
        cluster.stop()


def blocks_in_bucket(bucket: Path, exclude: set[Path] = frozenset()) -> tuple[int, int, set[Path]]:
    """(objects, blocks, object paths) of the bucket directory, skipping `exclude`."""
    files = {f for f in bucket.rglob("*") if f.is_file()} - exclude
    blocks = sum(math.ceil(f.stat().st_size / BLOCK_BYTES) for f in files)
    return len(files), blocks, files


def replay_on_every_agent(cluster: Cluster, topic: str, counts: dict[int, int],
                          during=None) -> list[Replay]:
    """CONSUMERS_PER_AGENT consumers per agent replay `topic`; `during` runs once they started."""
    consumers = CONSUMERS_PER_AGENT * len(cluster.agents)
    barrier = threading.Barrier(consumers + (1 if during else 0))
    replays = [Replay(bootstrap, topic, counts, barrier)
               for bootstrap, _ in cluster.agents for _ in range(CONSUMERS_PER_AGENT)]

    def once_all_started():
        barrier.wait(timeout=60)
        during()

    run_all(replays, once_all_started if during else None)
    assert_all_read(replays, counts)
    return replays


def produce(cluster: Cluster, topic: str) -> dict[int, int]:
    return produce_history(SimpleNamespace(bootstrap=cluster.agents[0][0]), topic, RECORDS, PARTITIONS)


def test_each_block_is_read_from_the_bucket_once_per_cluster(cluster):
    counts = produce(cluster, "history")
    objects, blocks, _ = blocks_in_bucket(cluster.bucket)
    before_agents, before_caches = cluster.bucket_gets()
    replay_on_every_agent(cluster, "history", counts)
    agents, caches = cluster.bucket_gets()
    cache_gets = {name: caches[name] - before_caches[name] for name in caches}
    print(f"{objects} objects, {blocks} blocks; agents {agents - before_agents:.0f} GETs, caches {cache_gets}")
    assert agents - before_agents == 0, "agents read nothing from the bucket while the owners are up"
    assert all(g > 0 for g in cache_gets.values()), f"both nodes own blocks: {cache_gets}"
    assert objects <= sum(cache_gets.values()) <= blocks, \
        f"{sum(cache_gets.values()):.0f} GETs by the cache nodes for {blocks} blocks in {objects} objects"
    peer_ok = sum(cluster.agent_metric('strata_agent_read_peer_gets_total{outcome="ok"}'))
    assert peer_ok > blocks, f"both agents needed most blocks ({peer_ok:.0f} block loads for {blocks} blocks)"


def test_a_cache_node_killed_mid_replay_loses_nothing_and_the_ring_follows(cluster):
    counts = produce(cluster, "first")
    _, _, first_objects = blocks_in_bucket(cluster.bucket)
    # consumers on both agents replay while cache2 dies under them
    replay_on_every_agent(cluster, "first", counts, during=lambda: cluster.kill_cache("cache2"))
    cluster.wait_for_ring(1)

    # with one node left it owns every block: agents still read nothing themselves
    counts = produce(cluster, "second")
    objects, blocks, second_objects = blocks_in_bucket(cluster.bucket, exclude=first_objects)
    before_agents, before_caches = cluster.bucket_gets()
    replay_on_every_agent(cluster, "second", counts)
    agents, caches = cluster.bucket_gets()
    assert agents - before_agents == 0
    assert objects <= caches["cache1"] - before_caches["cache1"] <= blocks

    # a new node joins every agent's ring and takes over its share
    cluster.start_cache("cache3")
    cluster.wait_for_ring(2)
    counts = produce(cluster, "third")
    objects, blocks, _ = blocks_in_bucket(cluster.bucket, exclude=first_objects | second_objects)
    before_agents, before_caches = cluster.bucket_gets()
    replay_on_every_agent(cluster, "third", counts)
    agents, caches = cluster.bucket_gets()
    cache_gets = {name: caches[name] - before_caches[name] for name in caches}
    print(f"after the join: {objects} objects, {blocks} blocks; caches {cache_gets}")
    assert agents - before_agents == 0
    assert all(g > 0 for g in cache_gets.values()), f"both live nodes own blocks: {cache_gets}"
    assert objects <= sum(cache_gets.values()) <= blocks


def test_a_frozen_cache_node_delays_reads_briefly_and_drops_off_the_ring(cluster):
    counts = produce(cluster, "history")
    frozen, _ = cluster.caches["cache2"]
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        replay_on_every_agent(cluster, "history", counts)
        took = time.monotonic() - started
        cluster.wait_for_ring(1)
        failed = sum(cluster.agent_metric('strata_agent_read_peer_gets_total{outcome="failed"}'))
        print(f"replay with a frozen owner took {took:.1f} s; {failed:.0f} failed peer requests")
        assert failed >= 1, "the frozen node's blocks were asked of it first"
    finally:
        frozen.proc.send_signal(signal.SIGCONT)


def test_cache_node_cli_errors_are_clear(tmp_path):
    import subprocess
    from conftest import clean_env
    result = subprocess.run(
        [strata_bin(), "cache", "--metadata", "http://127.0.0.1:1", "--bucket", f"file://{tmp_path}",
         "--cache-advertised-addr", "no-port-here", "--cache-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30, env=clean_env())
    assert result.returncode != 0
    assert "--cache-advertised-addr" in result.stderr and "host:port" in result.stderr, result.stderr
    # every interface, and nothing to tell peers: refused, since the address is the identity
    result = subprocess.run(
        [strata_bin(), "cache", "--metadata", "http://127.0.0.1:1", "--bucket", f"file://{tmp_path}",
         "--cache-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30, env=clean_env())
    assert result.returncode != 0
    assert "--cache-advertised-addr HOST:PORT" in result.stderr, result.stderr


def test_agents_with_the_cache_role_form_the_ring_themselves(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        cluster.start_agent(1, cache_role=True)
        cluster.start_agent(2, cache_role=True)
        cluster.wait_for_ring(2)
        counts = produce(cluster, "history")
        objects, blocks, _ = blocks_in_bucket(cluster.bucket)
        replay_on_every_agent(cluster, "history", counts)
        gets = cluster.agent_metric('strata_object_store_requests_total{op="get"}')
        served = cluster.agent_metric("strata_agent_read_peer_served_blocks_total")
        print(f"{objects} objects, {blocks} blocks; GETs per agent {gets}, blocks served to the other {served}")
        assert objects <= sum(gets) <= blocks, "each block read once by the two agents together, not twice"
        assert all(s > 0 for s in served), "each agent owns and serves a share of the blocks"
        assert sum(gets) + sum(served) > blocks, "both agents needed most blocks"
    finally:
        cluster.stop()
