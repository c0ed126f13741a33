"""A metadata tier that survives losing its leader: two `strata metadata` processes on one
PostgreSQL database (one leads under a lease, the other stands by), an agent given both
addresses, and an idempotent producer writing throughout. The leader is killed with
SIGKILL, or paused with SIGSTOP past its lease and resumed; in each case the standby takes
over, produce resumes within the documented bound, the resumed old leader stays deposed,
and the acknowledged-write ledger shows no record lost or duplicated and dense offsets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from glob import glob

import pytest

from conftest import free_ports, strata_bin
from test_cluster import LedgerProducer, Process, check_ledger
from confluent_kafka.admin import AdminClient, NewTopic

LEASE_TTL_S = 2.0
# docs/operations.md: a standby takes over within TTL + TTL/5 of the leader's last renewal,
# plus up to 5 s when the leader stopped inside a transaction (PostgreSQL then ends its
# session); agents resume within about a second of that. Generous on a loaded machine.
RESUME_BOUND_S = LEASE_TTL_S * 1.2 + 5.0 + 1.0 + 5.0


def psql() -> str:
    found = shutil.which("psql") or next(iter(sorted(glob("/usr/lib/postgresql/*/bin/psql"), reverse=True)), None)
    if not found:
        pytest.fail("psql is not installed (scripts/postgres.sh installs PostgreSQL)")
    return found


@pytest.fixture
def database():
    server = os.environ.get("STRATA_TEST_POSTGRES_URL")
    if not server:
        if os.environ.get("STRATA_REQUIRE_POSTGRES") == "1":
            pytest.fail("STRATA_REQUIRE_POSTGRES=1 but STRATA_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server (STRATA_TEST_POSTGRES_URL)")
    name = f"strata_failover_{uuid.uuid4().hex[:12]}"
    subprocess.run([psql(), server, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
    base, _, query = server.partition("?")
    yield base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return -1


def leader_metric(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        lines = response.read().decode().splitlines()
    return next(line.split()[-1] for line in lines if line.startswith("strata_metadata_leader "))


@pytest.fixture
def ha_cluster(tmp_path, database):
    binary = strata_bin()
    grpc_a, http_a, grpc_b, http_b, kafka = free_ports(5)

    def metadata(name: str, grpc: int, http: int) -> Process:
        return Process(name, [
            binary, "metadata", "--metadata-listen", f"127.0.0.1:{grpc}",
            "--metadata-http-listen", f"127.0.0.1:{http}", "--store", database,
            "--lease-ttl", f"{LEASE_TTL_S}s"], tmp_path, "strata metadata ready")

    a = metadata("metadata-a", grpc_a, http_a)
    deadline = time.monotonic() + 20
    while http_status(http_a, "/readyz") != 200:
        assert time.monotonic() < deadline, "the first metadata process did not take the lease"
        time.sleep(0.1)
    b = metadata("metadata-b", grpc_b, http_b)
    agent = Process("agent", [
        binary, "agent", "--metadata", f"http://127.0.0.1:{grpc_a},http://127.0.0.1:{grpc_b}",
        "--node-id", "1", "--kafka-listen", f"127.0.0.1:{kafka}", "--http-listen", "127.0.0.1:0",
        "--bucket", f"file://{tmp_path}/bucket", "--heartbeat-interval", "200ms",
        "--flush-interval", "20ms"], tmp_path, "strata agent ready")
    cluster = {"bootstrap": f"127.0.0.1:{kafka}", "a": a, "b": b, "http_a": http_a, "http_b": http_b}
    yield cluster
    for process in (agent, b, a):
        if process.proc.poll() is None:
            os.kill(process.proc.pid, signal.SIGCONT)
        process.stop()


def start_ledger(bootstrap: str, topic: str, count: int) -> LedgerProducer:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=20)
    # 200 records every 50 ms: the stream outlasts the failover by several seconds
    ledger = LedgerProducer(bootstrap, topic, count, pause_s=0.05)
    ledger.ack_times = []
    original = ledger.on_delivery

    def on_delivery(err, msg):
        original(err, msg)
        ledger.ack_times.append(time.monotonic())

    ledger.on_delivery = on_delivery
    ledger.start()
    deadline = time.monotonic() + 60
    while len(ledger.acked) < count // 5:
        assert time.monotonic() < deadline and not ledger.failed, "producer made no progress"
        time.sleep(0.05)
    return ledger


def longest_stall(ack_times: list[float], after: float) -> float:
    """The longest gap between acknowledgements from `after` on."""
    times = sorted(t for t in ack_times)
    gaps = [b - a for a, b in zip(times, times[1:]) if b >= after]
    return max(gaps, default=0.0)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_killing_the_metadata_leader_under_produce_load_loses_and_duplicates_nothing(ha_cluster):
    ledger = start_ledger(ha_cluster["bootstrap"], "kill-leader", 30_000)
    killed_at = time.monotonic()
    ha_cluster["a"].stop(signal.SIGKILL)
    wait_for(lambda: http_status(ha_cluster["http_b"], "/readyz") == 200, 30, "the standby did not take over")
    assert leader_metric(ha_cluster["http_b"]) == "1"
    ledger.join(timeout=240)
    assert not ledger.is_alive()
    stall = longest_stall(ledger.ack_times, killed_at)
    print(f"longest produce stall after the leader was killed: {stall:.2f} s")
    assert stall < RESUME_BOUND_S, f"produce stalled {stall:.1f} s after the leader died"
    check_ledger(ha_cluster["bootstrap"], "kill-leader", 3, ledger)


def test_a_leader_paused_past_its_lease_is_deposed_and_loses_and_duplicates_nothing(ha_cluster):
    ledger = start_ledger(ha_cluster["bootstrap"], "pause-leader", 30_000)
    a = ha_cluster["a"]
    paused_at = time.monotonic()
    os.kill(a.proc.pid, signal.SIGSTOP)
    wait_for(lambda: http_status(ha_cluster["http_b"], "/readyz") == 200, 30, "the standby did not take over")
    time.sleep(LEASE_TTL_S)
    os.kill(a.proc.pid, signal.SIGCONT)
    # the old leader wakes up deposed: it refuses to serve and stays a standby
    wait_for(lambda: http_status(ha_cluster["http_a"], "/readyz") == 503, 10, "the old leader still serves")
    wait_for(lambda: leader_metric(ha_cluster["http_a"]) == "0", 10, "the old leader did not step down")
    ledger.join(timeout=240)
    assert not ledger.is_alive()
    stall = longest_stall(ledger.ack_times, paused_at)
    print(f"longest produce stall after the leader was paused: {stall:.2f} s")
    assert stall < RESUME_BOUND_S, f"produce stalled {stall:.1f} s after the leader was paused"
    assert http_status(ha_cluster["http_a"], "/readyz") == 503
    assert http_status(ha_cluster["http_b"], "/readyz") == 200
    check_ledger(ha_cluster["bootstrap"], "pause-leader", 3, ledger)


def test_the_cli_finds_the_leader_from_any_metadata_address(ha_cluster):
    grpc_a = ha_cluster["a"].args[ha_cluster["a"].args.index("--metadata-listen") + 1]
    grpc_b = ha_cluster["b"].args[ha_cluster["b"].args.index("--metadata-listen") + 1]
    # the standby first: the CLI is told where the leader is and goes there
    both = f"http://{grpc_b},http://{grpc_a}"
    created = subprocess.run([strata_bin(), "topic", "--metadata", both, "create", "cli-ha", "--partitions", "2"],
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    # given the standby alone, the CLI follows the leader it names (one DNS name for all)
    alone = subprocess.run([strata_bin(), "topic", "--metadata", f"http://{grpc_b}", "list"],
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0 and "cli-ha" in alone.stdout, alone.stderr
    listed = subprocess.run([strata_bin(), "topic", "--metadata", both, "list"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "cli-ha" in listed.stdout, listed.stderr
