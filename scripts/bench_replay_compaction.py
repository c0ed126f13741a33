#!/usr/bin/env python3
"""Replay benchmark and exactly-once check across compaction, on one `strata dev` node.

1. Starts a node with compaction off and small segments (--flush-bytes 256 KiB,
   --flush-interval 5ms) and produces --gib GiB of 1 KiB records, each value naming its
   partition and offset ("p3-12345-...").
2. Replays everything (uncompacted) and reports MB/s.
3. Restarts the node with compaction on (a pass every 2 s over objects older than 1 s)
   and replays everything again WHILE compaction runs, checking that every partition
   returns offsets 0, 1, 2, ... exactly once, in order, each value naming its own offset.
4. Waits until compaction has nothing left to do, replays once more (compacted), and
   reports MB/s.

Replays use one confluent-kafka consumer assigned every partition, so the figures are
end to end (broker + client). The bucket is a local directory: object GETs cost far less
than on S3, which understates what compaction saves there.

Example:
  cargo build --release -p strata
  scripts/bench_replay_compaction.py --strata target/release/strata --gib 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "replay"
VALUE_SIZE = 1024


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Node:
    def __init__(self, binary: str, workdir: Path):
        self.binary, self.workdir = binary, workdir
        self.kafka, self.meta, self.http = free_ports(3)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka}"

    def start(self, *args: str) -> None:
        self.starts += 1
        log = open(self.workdir / f"strata.{self.starts}.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(
            [self.binary, "dev", "--data-dir", str(self.workdir / "data"),
             "--kafka-listen", self.bootstrap, "--metadata-listen", f"127.0.0.1:{self.meta}",
             "--http-listen", f"127.0.0.1:{self.http}", *args],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("node did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
            self.proc = None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=10) as r:
            return r.read().decode()

    def metric(self, name: str) -> float:
        m = re.search(rf"^{re.escape(name)} (\S+)$", self.metrics(), re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    def segment_objects(self) -> int:
        d = self.workdir / "data" / "bucket" / "segments"
        return sum(1 for p in d.iterdir() if p.name.endswith(".seg")) if d.is_dir() else 0


def value(partition: int, offset: int, noise: bytes) -> bytes:
    head = f"p{partition}-{offset}-".encode()
    return (head + noise).ljust(VALUE_SIZE, b".")[:VALUE_SIZE]


def produce(bootstrap: str, partitions: int, total_bytes: int) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=partitions, replication_factor=1)])[TOPIC].result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": False, "max.in.flight.requests.per.connection": 1,
                         "queue.buffering.max.kbytes": 262144})
    per_partition = total_bytes // VALUE_SIZE // partitions
    errors: list = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for offset in range(per_partition):
        noise = os.urandom(192).hex().encode()  # compresses about 2:1, like real payloads
        for p in range(partitions):
            while True:
                try:
                    producer.produce(TOPIC, value(p, offset, noise), partition=p, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(600) == 0 and not errors, errors[:3]
    return per_partition


def replay(bootstrap: str, partitions: int, per_partition: int, check: bool) -> tuple[float, float]:
    """Reads every partition from 0 to the end; returns (bytes of values, seconds)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "replay-bench",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20,
                         "queued.max.messages.kbytes": 262144})
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
    expected = [0] * partitions
    done: set[int] = set()
    total = 0
    started = time.monotonic()
    while len(done) < partitions:
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if expected[msg.partition()] == per_partition:
                        done.add(msg.partition())
                    continue
                raise KafkaException(err)
            p, offset, v = msg.partition(), msg.offset(), msg.value()
            if check:
                if offset != expected[p]:
                    raise AssertionError(f"partition {p}: got offset {offset}, expected {expected[p]}")
                head = f"p{p}-{offset}-".encode()
                if not v.startswith(head):
                    raise AssertionError(f"partition {p} offset {offset}: value {v[:32]!r}")
            expected[p] = offset + 1
            total += len(v)
        if time.monotonic() - started > 3600:
            raise AssertionError(f"replay timed out at {expected}")
    elapsed = time.monotonic() - started
    consumer.close()
    if check:
        assert expected == [per_partition] * partitions, expected
    return total, elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strata", default=os.environ.get("STRATA_BIN", "target/release/strata"))
    p.add_argument("--gib", type=float, default=2.0, help="GiB of record values to produce (default 2)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--workdir", help="keep data here (default: a temporary directory)")
    args = p.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="strata-replay-"))
    workdir.mkdir(parents=True, exist_ok=True)
    node = Node(args.strata, workdir)
    small = ("--flush-interval", "5ms", "--flush-bytes", str(256 << 10))
    results: dict = {"gib": args.gib, "partitions": args.partitions, "record_bytes": VALUE_SIZE}
    try:
        node.start(*small, "--compaction-interval", "0")
        t = time.monotonic()
        per_partition = produce(node.bootstrap, args.partitions, int(args.gib * (1 << 30)))
        results["produce_s"] = round(time.monotonic() - t, 1)
        results["segments_before"] = node.segment_objects()
        total, secs = replay(node.bootstrap, args.partitions, per_partition, check=True)
        results["uncompacted_replay_mb_s"] = round(total / secs / 1e6, 1)
        print(f"uncompacted replay: {total / 1e6:.0f} MB in {secs:.1f} s", file=sys.stderr)
        node.stop()
        node.start(*small, "--compaction-interval", "2s", "--compaction-min-age", "1s",
                   "--compaction-target-bytes", str(16 << 20), "--gc-interval", "5s",
                   "--unreferenced-grace", "30s")
        time.sleep(3)  # let the first pass start
        rows_at_start = node.metric("strata_agent_compaction_rows_replaced_total")
        total, secs = replay(node.bootstrap, args.partitions, per_partition, check=True)
        rows_at_end = node.metric("strata_agent_compaction_rows_replaced_total")
        results["during_compaction_replay_mb_s"] = round(total / secs / 1e6, 1)
        results["during_compaction_rows_replaced"] = [rows_at_start, rows_at_end]
        results["during_compaction_exactly_once_in_order"] = True
        print(f"replay during compaction: {total / 1e6:.0f} MB in {secs:.1f} s, every record once "
              f"and in order; rows replaced {rows_at_start:.0f} -> {rows_at_end:.0f}", file=sys.stderr)
        last, stable_since = -1.0, time.monotonic()
        while time.monotonic() - stable_since < 15:
            now = node.metric("strata_agent_compaction_rows_replaced_total")
            if now != last:
                last, stable_since = now, time.monotonic()
            time.sleep(1)
        results["rows_replaced"] = last
        results["compacted_objects"] = node.metric("strata_agent_compaction_objects_total")
        results["compacted_bytes"] = node.metric("strata_agent_compaction_bytes_total")
        results["compaction_failures"] = node.metric("strata_agent_compaction_failures_total")
        total, secs = replay(node.bootstrap, args.partitions, per_partition, check=True)
        results["compacted_replay_mb_s"] = round(total / secs / 1e6, 1)
        results["segment_objects_at_end"] = node.segment_objects()  # old ones wait out the grace
        print(f"compacted replay: {total / 1e6:.0f} MB in {secs:.1f} s", file=sys.stderr)
    finally:
        node.stop()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
