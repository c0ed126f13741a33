"""Strata on a real S3 server (SeaweedFS): a produce/consume round trip across a restart,
and no loss of acknowledged records through a stalled and then stopped S3.

The S3 server comes from the environment that `scripts/seaweedfs.sh start DIR` prints
(STRATA_TEST_S3_SEAWEEDFS_ENDPOINT, _BUCKET, _ACCESS_KEY_ID, _SECRET_ACCESS_KEY, _REGION).
Without it these tests are skipped, loudly, unless STRATA_REQUIRE_S3=1, which makes them
fail. The outage test starts a second SeaweedFS of its own with the same script, so that
stopping it disturbs nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

from support import (check_consumed, check_deliveries, consume_confluent, create_topic,
                     make_records, produce_confluent)

REPO = Path(__file__).resolve().parent.parent
SEAWEEDFS_SH = REPO / "scripts" / "seaweedfs.sh"
SCRIPT_TIMEOUT_S = 180


def s3_settings(name: str = "SEAWEEDFS") -> dict[str, str]:
    """The STRATA_TEST_S3_<name>_* settings; skips (or fails, with STRATA_REQUIRE_S3=1) without them."""
    prefix = f"STRATA_TEST_S3_{name}_"
    env = {k[len(prefix):].lower(): v for k, v in os.environ.items() if k.startswith(prefix) and v}
    if "endpoint" not in env:
        why = (f"{prefix}ENDPOINT is not set: no S3 server for this test "
               f"(run `eval \"$(scripts/{name.lower()}.sh start DIR)\"` first)")
        if os.environ.get("STRATA_REQUIRE_S3") == "1":
            pytest.fail(f"STRATA_REQUIRE_S3=1 but {why}", pytrace=False)
        warnings.warn(f"SKIPPED S3 end-to-end test: {why}")
        pytest.skip(f"*** S3 NOT TESTED *** {why}")
    env.setdefault("bucket", "strata-test")
    env.setdefault("region", "us-east-1")
    return env


def strata_s3_args(s3: dict[str, str], prefix: str, *extra: str) -> tuple[str, ...]:
    """The `strata dev` flags for a bucket prefix on that server (the ones localstack/README.md shows)."""
    args = ["--bucket", f"s3://{s3['bucket']}/{prefix}",
            "--s3-endpoint", s3["endpoint"], "--s3-region", s3["region"], "--s3-path-style"]
    if "access_key_id" in s3:
        args += ["--s3-access-key-id", s3["access_key_id"],
                 "--s3-secret-access-key", s3["secret_access_key"]]
    return (*args, *extra)


def test_s3_roundtrip_survives_restart(strata_factory):
    s3 = s3_settings()
    node = strata_factory(*strata_s3_args(s3, f"e2e-{uuid.uuid4().hex}", "--create-bucket"))
    # the segments went to S3, not to the data dir's default bucket
    assert not (node.data_dir / "bucket").exists()

    topic, partitions = "s3-roundtrip", 3
    create_topic(node.bootstrap, topic, partitions)
    records = make_records(20_000)
    deliveries = produce_confluent(node.bootstrap, topic, records)
    check_deliveries(records, deliveries, partitions)
    check_consumed(records, deliveries, consume_confluent(node.bootstrap, topic, partitions))

    # a restart starts with an empty read cache: every fetch below reads S3
    node.restart()
    check_consumed(records, deliveries, consume_confluent(node.bootstrap, topic, partitions))

    more = make_records(25_000)[20_000:]
    more_deliveries = produce_confluent(node.bootstrap, topic, more)
    everything = records + more
    check_deliveries(everything, deliveries + more_deliveries, partitions)
    check_consumed(everything, deliveries + more_deliveries,
                   consume_confluent(node.bootstrap, topic, partitions))
    assert not (node.data_dir / "bucket").exists()


# --------------------------------------------------------------------------------------
# outage

class OwnSeaweedFS:
    """A SeaweedFS of this test's own, run by scripts/seaweedfs.sh in `directory`."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.env: dict[str, str] = {}

    def _script(self, action: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWEEDFS_")}
        done = subprocess.run(["bash", str(SEAWEEDFS_SH), action, str(self.dir)], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT_S)
        assert done.returncode == 0, (f"seaweedfs.sh {action} failed ({done.returncode}):\n"
                                      f"{done.stderr}\n{done.stdout}")
        return done.stdout

    def start(self) -> None:
        self.env = {}
        for line in self._script("start").splitlines():
            if line.startswith("export STRATA_TEST_S3_SEAWEEDFS_"):
                key, _, value = line[len("export STRATA_TEST_S3_SEAWEEDFS_"):].partition("=")
                self.env[key.lower()] = value
        assert "endpoint" in self.env and "pid" in self.env, f"no env lines from seaweedfs.sh: {self.env}"

    def stop(self) -> None:
        self._script("stop")

    def signal(self, sig: int) -> None:
        os.kill(int(self.env["pid"]), sig)


@pytest.fixture
def own_seaweedfs(tmp_path):
    s3_settings()  # the SeaweedFS setup (the script's venv) is there, or skip
    server = OwnSeaweedFS(tmp_path / "seaweedfs")
    server.start()
    yield server
    try:
        server.signal(signal.SIGCONT)
    except (OSError, KeyError, ValueError):
        pass
    server.stop()


class LedgerProducer:
    """Produces distinct records in a thread until stopped and keeps the ledger of the
    acknowledged ones: value -> (partition, offset), with the time of each acknowledgement."""

    def __init__(self, bootstrap: str, topic: str, rate_per_s: int = 400):
        self.topic = topic
        self.interval = 1.0 / rate_per_s
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "message.timeout.ms": 120_000, "request.timeout.ms": 10_000,
            "retry.backoff.ms": 200,
        })
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.ack_times: list[float] = []
        self.failed: list[tuple[bytes, KafkaError]] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-producer", daemon=True)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failed.append((msg.value(), err))
        else:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
            self.ack_times.append(time.monotonic())

    def _run(self) -> None:
        while not self._stop.is_set():
            value = f"ledger-{self.sent:08d}".encode()
            try:
                self.producer.produce(self.topic, key=value[-3:], value=value,
                                      on_delivery=self._on_delivery)
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        remaining = self.producer.flush(150)
        assert remaining == 0, f"{remaining} records neither acknowledged nor failed after 150 s"

    def acked_since(self, t: float) -> int:
        return sum(1 for a in self.ack_times if a >= t)

    def longest_ack_gap(self, start: float, end: float) -> float:
        """The longest time between acknowledgements in [start, end]: how long producers waited."""
        times = [start, *(a for a in self.ack_times if start <= a <= end), end]
        return max(b - a for a, b in zip(times, times[1:]))


def check_ledger(bootstrap: str, topic: str, partitions: int, ledger: LedgerProducer) -> None:
    """Every acknowledged record is in the log at its acknowledged position, and no
    position holds anything else."""
    consumed = consume_confluent(bootstrap, topic, partitions)
    at = {(c.partition, c.offset): c.rec.value for c in consumed}
    lost = [(v, pos) for v, pos in ledger.acked.items() if at.get(pos) != v]
    assert not lost, (f"{len(lost)} of {len(ledger.acked)} acknowledged records are missing or "
                      f"differ; first (value, (partition, offset), found): "
                      f"{[(v, pos, at.get(pos)) for v, pos in lost[:5]]}")
    values = [c.rec.value for c in consumed]
    assert len(values) == len(set(values)), "a record appears twice in the log"


def test_s3_stall_and_outage_lose_no_acknowledged_record(own_seaweedfs, strata_factory):
    s3 = own_seaweedfs.env
    # short S3 timeouts, so that the stall also makes uploads fail (not only wait)
    node = strata_factory(*strata_s3_args(
        s3, f"outage-{uuid.uuid4().hex}", "--s3-request-timeout", "2s",
        "--s3-retry-timeout", "20s", "--s3-retry-max-backoff", "1s"))
    topic, partitions = "s3-outage", 2
    create_topic(node.bootstrap, topic, partitions)
    ledger = LedgerProducer(node.bootstrap, topic)
    ledger.start()
    try:
        time.sleep(2)
        assert ledger.acked, "nothing acknowledged before the faults"

        # 1. stall: the S3 process is frozen for 4 s (requests hang, then time out)
        stalled = time.monotonic()
        own_seaweedfs.signal(signal.SIGSTOP)
        time.sleep(4)
        own_seaweedfs.signal(signal.SIGCONT)
        time.sleep(3)
        stall_gap = ledger.longest_ack_gap(stalled, time.monotonic())

        # 2. outage: S3 is down for 4 s (connections refused), then back on the same data
        down = time.monotonic()
        own_seaweedfs.stop()
        time.sleep(4)
        own_seaweedfs.start()
        back = time.monotonic()
        deadline = back + 60
        while ledger.acked_since(back) < 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ledger.acked_since(back) >= 200, (
            f"only {ledger.acked_since(back)} records acknowledged in the 60 s after S3 came back")
        outage_gap = ledger.longest_ack_gap(down, time.monotonic())
    finally:
        ledger.stop()
    # the faults reached the produce path: acknowledgements paused while S3 was away
    assert stall_gap >= 2.0 and outage_gap >= 3.0, (stall_gap, outage_gap)

    assert len(ledger.acked) + len(ledger.failed) == ledger.sent, \
        f"sent {ledger.sent}, acknowledged {len(ledger.acked)}, failed {len(ledger.failed)}"
    check_ledger(node.bootstrap, topic, partitions, ledger)
    # and from S3 alone, with a cold read cache
    node.restart()
    check_ledger(node.bootstrap, topic, partitions, ledger)
    print(f"sent {ledger.sent}, acknowledged {len(ledger.acked)}, failed {len(ledger.failed)}, "
          f"longest wait for an acknowledgement: stall {stall_gap:.1f} s, outage {outage_gap:.1f} s")
