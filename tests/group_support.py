"""Helpers for the consumer-group tests: consumer worker processes, a committed-offset
monitor and the `strata group` CLI.

A worker is this file run as a script (`python group_support.py '<json config>'`): one
group consumer (confluent-kafka or kafka-python) in its own OS process, so a test can
SIGKILL it mid-stream. It consumes in small batches, "processes" each batch by appending
it to its event file (flushed), and only then commits the batch's offsets synchronously:
everything committed was processed first (at-least-once), and a killed worker's
partitions resume, in the worker that takes them over, from what it committed.

The event file has one JSON object per line:
    {"ev": "start", "pid": ...}
    {"ev": "assign", "added": [p...], "owned": [p...], "committed": {p: offset}}
    {"ev": "revoke", "removed": [p...], "owned": [p...], "lost": bool}
    {"ev": "recs", "recs": [[partition, offset, seq], ...]}     # seq: the record's "seq" header
    {"ev": "commit", "offsets": {p: offset}}
    {"ev": "commit_failed", "error": "..."}
    {"ev": "error", "error": "...", "fatal": bool}               # confluent error_cb
    {"ev": "closed"}
A worker stops on SIGTERM (closing its consumer, which leaves the group unless it is a
static member) and never outlives MAX_LIFETIME_S.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_LIFETIME_S = 150.0
OFFSET_METADATA = "strata-e2e"


# --------------------------------------------------------------------------
# The worker process

class _EventLog:
    def __init__(self, path: str):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, **event) -> None:
        event.setdefault("t", time.time())
        os.write(self._fd, (json.dumps(event, separators=(",", ":")) + "\n").encode())


def _seq_header(headers) -> int:
    for k, v in headers or ():
        if k == "seq":
            return int(v)
    return -1


def _run_confluent(cfg: dict, log: _EventLog, stop: threading.Event) -> None:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    topic = cfg["topic"]
    owned: set[int] = set()
    conf = {
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "client.id": cfg.get("name", "worker"),
        "session.timeout.ms": cfg.get("session_timeout_ms", 6000),
        "heartbeat.interval.ms": cfg.get("heartbeat_interval_ms", 500),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "error_cb": lambda err: log.write(ev="error", error=str(err), fatal=bool(err.fatal())),
    }
    if cfg.get("strategy"):
        conf["partition.assignment.strategy"] = cfg["strategy"]
    if cfg.get("instance_id"):
        conf["group.instance.id"] = cfg["instance_id"]
    consumer = Consumer(conf)

    def committed_of(parts):
        try:
            got = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
            return {tp.partition: tp.offset for tp in got}
        except KafkaException as e:
            return {"error": str(e)}

    def on_assign(c, partitions):
        added = sorted(tp.partition for tp in partitions)
        owned.update(added)
        log.write(ev="assign", added=added, owned=sorted(owned), committed=committed_of(added))

    def on_revoke(c, partitions, lost=False):
        removed = sorted(tp.partition for tp in partitions)
        owned.difference_update(removed)
        log.write(ev="revoke", removed=removed, owned=sorted(owned), lost=lost)

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke,
                       on_lost=lambda c, ps: on_revoke(c, ps, lost=True))
    batch = cfg.get("batch", 100)
    work_s = cfg.get("work_ms", 0) / 1000.0
    try:
        while not stop.is_set():
            msgs = consumer.consume(num_messages=batch, timeout=0.2)
            recs, last = [], {}
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.write(ev="error", error=str(err), fatal=False)
                    continue
                recs.append([m.partition(), m.offset(), _seq_header(m.headers())])
                last[m.partition()] = m.offset()
            if not recs:
                continue
            if work_s:
                time.sleep(work_s)
            log.write(ev="recs", recs=recs)
            offsets = [TopicPartition(topic, p, o + 1, OFFSET_METADATA) for p, o in sorted(last.items())]
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                log.write(ev="commit", offsets={p: o + 1 for p, o in last.items()})
            except KafkaException as e:
                log.write(ev="commit_failed", error=str(e))
    finally:
        consumer.close()
        log.write(ev="closed")


def _run_kafka_python(cfg: dict, log: _EventLog, stop: threading.Event) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.errors import KafkaError as KpError

    topic = cfg["topic"]
    owned: set[int] = set()
    kwargs = dict(
        bootstrap_servers=cfg["bootstrap"],
        group_id=cfg["group"],
        client_id=cfg.get("name", "worker"),
        session_timeout_ms=cfg.get("session_timeout_ms", 6000),
        heartbeat_interval_ms=cfg.get("heartbeat_interval_ms", 500),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=30_000,
    )
    if cfg.get("instance_id"):
        kwargs["group_instance_id"] = cfg["instance_id"]
    consumer = KafkaConsumer(**kwargs)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            removed = sorted(tp.partition for tp in revoked)
            owned.difference_update(removed)
            log.write(ev="revoke", removed=removed, owned=sorted(owned), lost=False)

        def on_partitions_assigned(self, assigned):
            # kafka-python runs listeners on its IO thread, where blocking calls such as
            # committed() are not allowed: the main loop logs the assignment right after poll(),
            # before processing anything it returned.
            added = sorted(tp.partition for tp in assigned)
            owned.update(added)
            pending_assign.append(added)

    pending_assign: list[list[int]] = []

    def log_assignments():
        while pending_assign:
            added = pending_assign.pop(0)
            committed = {}
            for p in added:
                try:
                    c = consumer.committed(TopicPartition(topic, p))
                except KpError as e:
                    committed = {"error": repr(e)}
                    break
                committed[p] = -1001 if c is None else c
            log.write(ev="assign", added=added, owned=sorted(owned), committed=committed)

    consumer.subscribe([topic], listener=Listener())
    batch = cfg.get("batch", 100)
    work_s = cfg.get("work_ms", 0) / 1000.0
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=200, max_records=batch)
            log_assignments()
            recs, last = [], {}
            for tp, msgs in polled.items():
                for m in msgs:
                    recs.append([m.partition, m.offset, _seq_header(m.headers)])
                    last[m.partition] = max(last.get(m.partition, -1), m.offset)
            if not recs:
                continue
            if work_s:
                time.sleep(work_s)
            log.write(ev="recs", recs=recs)
            offsets = {TopicPartition(topic, p): OffsetAndMetadata(o + 1, OFFSET_METADATA, -1)
                       for p, o in last.items()}
            try:
                consumer.commit(offsets)
                log.write(ev="commit", offsets={p: o + 1 for p, o in last.items()})
            except KpError as e:
                log.write(ev="commit_failed", error=repr(e))
    finally:
        consumer.close()
        log.write(ev="closed")


def worker_main(cfg: dict) -> None:
    log = _EventLog(cfg["events"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    timer = threading.Timer(MAX_LIFETIME_S, stop.set)
    timer.daemon = True
    timer.start()
    log.write(ev="start", pid=os.getpid())
    if cfg.get("client", "confluent") == "confluent":
        _run_confluent(cfg, log, stop)
    else:
        _run_kafka_python(cfg, log, stop)


# --------------------------------------------------------------------------
# The test side of a worker

@dataclass
class Worker:
    """One worker process, seen from the test."""
    name: str
    events_path: Path
    proc: subprocess.Popen
    stderr_path: Path
    _cache: list = field(default_factory=list)
    _read: int = 0

    def events(self) -> list[dict]:
        """Every complete event line written so far (a killed worker's torn last line is ignored)."""
        try:
            with open(self.events_path, "rb") as f:
                f.seek(self._read)
                data = f.read()
        except FileNotFoundError:
            return self._cache
        end = data.rfind(b"\n")
        if end >= 0:
            for line in data[:end].splitlines():
                self._cache.append(json.loads(line))
            self._read += end + 1
        return self._cache

    def owned(self) -> set[int]:
        for e in reversed(self.events()):
            if e["ev"] in ("assign", "revoke"):
                return set(e["owned"])
        return set()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events() if e["ev"] == kind]

    def processed(self) -> list[tuple[int, int, int]]:
        return [tuple(r) for e in self.of("recs") for r in e["recs"]]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for a clean exit (the consumer closes); SIGKILL after timeout."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"worker {self.name} did not stop within {timeout}s of SIGTERM")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""


class WorkerPool:
    """Starts workers and makes sure none outlives the test."""

    def __init__(self, workdir: Path, **defaults):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.defaults = defaults
        self.workers: list[Worker] = []

    def start(self, name: str, **cfg) -> Worker:
        full = dict(self.defaults)
        full.update(cfg)
        n = sum(1 for w in self.workers if w.name == name)
        stem = f"{name}.{n}" if n else name
        full["name"] = name
        full["events"] = str(self.workdir / f"{stem}.events")
        stderr_path = self.workdir / f"{stem}.stderr"
        from conftest import _die_with_parent  # the worker dies with the test process
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, __file__, json.dumps(full)], stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err, preexec_fn=_die_with_parent,
                                    cwd=str(Path(__file__).parent))
        w = Worker(name, Path(full["events"]), proc, stderr_path)
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            if w.alive():
                w.proc.kill()
        for w in self.workers:
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def report(self) -> str:
        """The tail of each worker's non-record events and stderr, for failure messages."""
        out = []
        for w in self.workers:
            evs = [e for e in w.events() if e["ev"] != "recs"]
            out.append(f"--- {w.events_path.name} (exit {w.proc.poll()}) ---")
            out += [json.dumps(e) for e in evs[-15:]]
            err = w.stderr().strip()
            if err:
                out.append(f"stderr: {err[-1500:]}")
        return "\n".join(out)


# --------------------------------------------------------------------------
# Committed offsets, observed from outside the group

class CommitMonitor:
    """Polls the group's committed offsets (OffsetFetch through a consumer that never joins)
    in a thread and records every change; `violations()` lists any that went backwards."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int, interval: float = 0.1):
        from confluent_kafka import Consumer
        self.topic = topic
        self.partitions = partitions
        self.interval = interval
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                   "enable.auto.commit": False})
        self.history: dict[int, list[int]] = {p: [] for p in range(partitions)}
        self.errors: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="commit-monitor", daemon=True)

    def start(self) -> "CommitMonitor":
        self._thread.start()
        return self

    def fetch(self) -> dict[int, int]:
        from confluent_kafka import TopicPartition
        got = self._consumer.committed([TopicPartition(self.topic, p) for p in range(self.partitions)],
                                       timeout=10)
        return {tp.partition: tp.offset for tp in got}

    def _run(self) -> None:
        from confluent_kafka import KafkaException
        while not self._stop.is_set():
            try:
                current = self.fetch()
            except KafkaException as e:
                with self._lock:
                    self.errors.append(str(e))
            else:
                with self._lock:
                    self.polls += 1
                    for p, off in current.items():
                        if off >= 0 and (not self.history[p] or self.history[p][-1] != off):
                            self.history[p].append(off)
            self._stop.wait(self.interval)

    def latest(self) -> dict[int, int]:
        with self._lock:
            return {p: h[-1] for p, h in self.history.items() if h}

    def violations(self) -> list[tuple[int, int, int]]:
        """(partition, offset, then smaller offset) for every backwards move seen."""
        with self._lock:
            return [(p, a, b) for p, h in self.history.items() for a, b in zip(h, h[1:]) if b < a]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._consumer.close()


# --------------------------------------------------------------------------
# The `strata group` CLI

OFFSET_LINE_RE = re.compile(r"^\s*(\S+) partition (\d+): committed=(-?\d+) end=(-?\d+) lag=(\S+)\s*$")
MEMBER_LINE_RE = re.compile(r"^\s+(\S+) client=(\S*) host=(\S*) assigned=(\S*)\s*$")
PLAN_LINE_RE = re.compile(r"^(\S+) partition (\d+): new offset (-?\d+)\s*$")


def group_cli(server, *args: str, use_env: bool = False, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Runs `strata group ARGS` against server's Kafka listener (--bootstrap, or $STRATA_BOOTSTRAP)."""
    from conftest import clean_env
    env = clean_env()
    cmd = [server.binary, "group", *args]
    if use_env:
        env["STRATA_BOOTSTRAP"] = server.bootstrap
    else:
        cmd += ["--bootstrap", server.bootstrap]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                          timeout=timeout)


def cli_ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, \
        f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


@dataclass
class GroupDescription:
    text: str
    state: str
    members: list[tuple[str, str, list[tuple[str, int]]]]  # (member id, client id, assigned)
    offsets: dict[tuple[str, int], tuple[int, int, str]]   # (topic, p) -> (committed, end, lag)


def _parse_assigned(text: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, text.split(",")):
        topic, _, p = item.rpartition("-")
        out.append((topic, int(p)))
    return out


def describe_group(server, group: str) -> GroupDescription:
    out = cli_ok(group_cli(server, "describe", group))
    state = re.search(r"^state: (\S+)", out, re.M)
    assert state, f"no 'state:' line in describe output:\n{out}"
    members, offsets = [], {}
    for line in out.splitlines():
        m = MEMBER_LINE_RE.match(line)
        if m:
            members.append((m.group(1), m.group(2), _parse_assigned(m.group(4))))
            continue
        m = OFFSET_LINE_RE.match(line)
        if m:
            offsets[(m.group(1), int(m.group(2)))] = (int(m.group(3)), int(m.group(4)), m.group(5))
    return GroupDescription(out, state.group(1), members, offsets)


def list_groups(server) -> dict[str, tuple[str, str]]:
    out = cli_ok(group_cli(server, "list"))
    groups = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        assert len(fields) == 3, f"group list line {line!r} is not group<TAB>state<TAB>protocol_type"
        groups[fields[0]] = (fields[1], fields[2])
    return groups


# --------------------------------------------------------------------------
# Raw requests (non-flexible versions) for protocol-level checks, on kafka_wire's primitives

JOIN_GROUP, SYNC_GROUP, OFFSET_COMMIT, OFFSET_FETCH, OFFSET_FOR_LEADER_EPOCH, INIT_PRODUCER_ID = 11, 14, 8, 9, 23, 22
NONE = 0
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
MEMBER_ID_REQUIRED = 79
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


@dataclass
class JoinResult:
    error: int
    generation: int
    protocol: str | None
    leader: str | None
    member_id: str | None
    members: list


def join_group_v4(conn, group: str, member_id: str = "", session_ms: int = 10_000) -> JoinResult:
    from kafka_wire import array, i32, nbytes, string
    body = (string(group) + i32(session_ms) + i32(session_ms) + string(member_id) + string("consumer")
            + array([string("range") + nbytes(b"")]))
    r = conn.request(JOIN_GROUP, 4, body)
    r.i32()  # throttle
    error, generation = r.i16(), r.i32()
    protocol, leader, member = r.string(), r.string(), r.string()
    members = r.array(lambda rr: (rr.string(), _skip_bytes(rr))[0]) or []
    return JoinResult(error, generation, protocol, leader, member, members)


def _skip_bytes(r) -> None:
    n = r.i32()
    if n > 0:
        r._take(n)


def sync_group_v2(conn, group: str, generation: int, member_id: str, assignments: dict[str, bytes]) -> int:
    from kafka_wire import array, i32, nbytes, string
    body = (string(group) + i32(generation) + string(member_id)
            + array([string(m) + nbytes(a) for m, a in assignments.items()]))
    r = conn.request(SYNC_GROUP, 2, body)
    r.i32()  # throttle
    error = r.i16()
    _skip_bytes(r)  # the member's assignment
    return error


def offset_commit_v2(conn, group: str, generation: int, member_id: str, topic: str,
                     offsets: dict[int, int]) -> dict[int, int]:
    """OffsetCommit v2; returns partition -> error code."""
    from kafka_wire import array, i32, i64, string
    body = (string(group) + i32(generation) + string(member_id) + i64(-1)
            + array([string(topic) + array([i32(p) + i64(o) + string("raw") for p, o in offsets.items()])]))
    r = conn.request(OFFSET_COMMIT, 2, body)
    out = {}
    for _name, parts in r.array(lambda rr: (rr.string(), rr.array(lambda q: (q.i32(), q.i16())))) or []:
        for p, err in parts or []:
            out[p] = err
    return out


def offset_fetch_v1(conn, group: str, topic: str, partitions: list[int]) -> dict[int, tuple[int, str | None, int]]:
    """OffsetFetch v1; returns partition -> (offset, metadata, error)."""
    from kafka_wire import array, i32, string
    body = string(group) + array([string(topic) + array([i32(p) for p in partitions])])
    r = conn.request(OFFSET_FETCH, 1, body)
    out = {}
    for _name, parts in r.array(lambda rr: (rr.string(), rr.array(
            lambda q: (q.i32(), q.i64(), q.string(), q.i16())))) or []:
        for p, off, meta, err in parts or []:
            out[p] = (off, meta, err)
    return out


def offset_for_leader_epoch_v2(conn, topic: str, partitions: dict[int, int]) -> dict[int, tuple[int, int, int]]:
    """OffsetForLeaderEpoch v2 (partition -> requested leader epoch); returns
    partition -> (error, leader epoch, end offset)."""
    from kafka_wire import array, i32, string
    body = array([string(topic) + array([i32(p) + i32(-1) + i32(e) for p, e in partitions.items()])])
    r = conn.request(OFFSET_FOR_LEADER_EPOCH, 2, body)
    r.i32()  # throttle
    out = {}
    for _name, parts in r.array(lambda rr: (rr.string(), rr.array(
            lambda q: (q.i16(), q.i32(), q.i32(), q.i64())))) or []:
        for err, p, epoch, end in parts or []:
            out[p] = (err, epoch, end)
    return out


def init_producer_id_v0(conn, transactional_id: str | None = None) -> tuple[int, int, int]:
    """InitProducerId v0; returns (error, producer id, epoch)."""
    from kafka_wire import i32, string
    r = conn.request(INIT_PRODUCER_ID, 0, string(transactional_id) + i32(60_000))
    r.i32()  # throttle
    return r.i16(), r.i64(), r.i16()


def idempotent_batch(records, producer_id: int, epoch: int, base_sequence: int) -> bytes:
    """An uncompressed RecordBatch v2 of kafka_wire.Record values, stamped with an idempotent
    producer's id, epoch and first sequence number."""
    from kafka_wire import _encode_record, crc32c, i8, i16, i32, i64, u32
    base_ts = min(r.timestamp for r in records)
    after_crc = (i16(0) + i32(len(records) - 1) + i64(base_ts) + i64(max(r.timestamp for r in records))
                 + i64(producer_id) + i16(epoch) + i32(base_sequence) + i32(len(records))
                 + b"".join(_encode_record(r, i, r.timestamp - base_ts) for i, r in enumerate(records)))
    after_length = i32(-1) + i8(2) + u32(crc32c(after_crc)) + after_crc
    return i64(0) + i32(len(after_length)) + after_length


if __name__ == "__main__":
    worker_main(json.loads(sys.argv[1]))
