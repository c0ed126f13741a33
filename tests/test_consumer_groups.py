"""Consumer groups end to end: real group members (confluent-kafka / librdkafka and
kafka-python) join, split partitions, commit, fail over, and come back.

The failover tests run each consumer in its own OS process (tests/group_support.py, run
as a script) so that one can be SIGKILLed mid-stream. Workers commit explicitly and
synchronously after each processed batch (enable.auto.commit=false): a commit then never
covers a record that was not processed, so "every record processed at least once" is
exact rather than probabilistic, and the offset a takeover resumes from is exactly the
last batch the dead member finished. Auto-commit would commit on a timer, independently
of processing, and let a SIGKILL lose or repeat an arbitrary window.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition

from group_support import CommitMonitor, WorkerPool, describe_group
from support import CLIENT_TIMEOUT_S, check_deliveries, create_topic, make_records, produce_confluent, wait_until

PARTITIONS = 6
FAILOVER_RECORDS = 30_000
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 500


# --------------------------------------------------------------------------
# helpers

def owned_sets(workers) -> list[set[int]]:
    return [w.owned() for w in workers]


def split_evenly(workers, partitions: int, per_worker: int):
    """The workers' current assignments when they are disjoint, cover every partition and
    hold per_worker partitions each; otherwise None."""
    sets = owned_sets(workers)
    if any(len(s) != per_worker for s in sets):
        return None
    union = set().union(*sets)
    if len(union) != partitions or sum(len(s) for s in sets) != partitions:
        return None
    return sets


def covers(workers, partitions: int):
    sets = owned_sets(workers)
    union = set().union(*sets)
    return sets if len(union) == partitions and sum(len(s) for s in sets) == partitions else None


def processed_positions(workers) -> dict[tuple[int, int], list[int]]:
    """(partition, offset) -> seq values seen for it (one per processing)."""
    seen: dict[tuple[int, int], list[int]] = defaultdict(list)
    for w in workers:
        for p, o, seq in w.processed():
            seen[(p, o)].append(seq)
    return seen


def end_offsets(deliveries) -> dict[int, int]:
    ends: dict[int, int] = defaultdict(int)
    for p, o in deliveries:
        ends[p] = max(ends[p], o + 1)
    return dict(ends)


def check_all_processed(records_n: int, deliveries, workers) -> int:
    """Every delivered record processed at least once, with the right content, nothing else;
    returns how many were processed more than once."""
    seen = processed_positions(workers)
    index = {pos: i for i, pos in enumerate(deliveries)}
    missing = sorted(set(index) - set(seen))
    extra = sorted(set(seen) - set(index))
    assert not missing, f"{len(missing)} records never processed, first (partition, offset): {missing[:10]}"
    assert not extra, f"{len(extra)} processed positions were never produced: {extra[:10]}"
    wrong = [(pos, index[pos], seqs) for pos, seqs in seen.items() if any(s != index[pos] for s in seqs)]
    assert not wrong, f"{len(wrong)} positions held the wrong record (pos, want seq, got): {wrong[:5]}"
    assert len(index) == records_n
    return sum(len(s) - 1 for s in seen.values())


# --------------------------------------------------------------------------
# 1. three members, one SIGKILLed mid-stream

def run_failover(strata, tmp_path, client: str) -> None:
    topic = group = f"failover-{client}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    records = make_records(FAILOVER_RECORDS)
    half = FAILOVER_RECORDS // 2

    pool = WorkerPool(tmp_path / "workers", client=client, bootstrap=strata.bootstrap, group=group, topic=topic,
                      session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                      batch=100, work_ms=5)
    monitor = CommitMonitor(strata.bootstrap, group, topic, PARTITIONS).start()
    try:
        # The victim works slowly, so it is still behind when it dies.
        workers = [pool.start(f"{client}-0", work_ms=60)] + [pool.start(f"{client}-{i}") for i in (1, 2)]
        try:
            before = wait_until(lambda: split_evenly(workers, PARTITIONS, 2), timeout=60, interval=0.1,
                                what="three members with two partitions each")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{pool.report()}") from None
        assert all(len(s) == 2 for s in before), before

        # First half: every member is processing when the victim dies.
        deliveries = produce_confluent(strata.bootstrap, topic, records[:half])
        victim, survivors = workers[0], workers[1:]
        victim_parts = set(before[0])

        def victim_committed_everywhere():
            committed = {int(p) for e in victim.of("commit") for p in e["offsets"]}
            return len(victim.processed()) >= 300 and victim_parts <= committed

        wait_until(victim_committed_everywhere, timeout=60, what="the victim to process and commit on its partitions")
        victim.kill()
        kill_time = time.time()
        assert victim.owned() == victim_parts, "the victim's assignment changed before the kill"
        behind = set(p for p in deliveries if p[0] in victim_parts) - {(p, o) for p, o, _ in victim.processed()}
        assert behind, "the victim had processed all of its records before it was killed (not mid-stream)"

        # Second half: the victim's partitions certainly hold records it never saw.
        deliveries += produce_confluent(strata.bootstrap, topic, records[half:])
        check_deliveries(records, deliveries, PARTITIONS)
        ends = end_offsets(deliveries)

        try:
            after = wait_until(lambda: split_evenly(survivors, PARTITIONS, 3), timeout=60, interval=0.1,
                               what="the two survivors to take over the victim's partitions")
            wait_until(lambda: set(processed_positions(workers)) >= set(deliveries), timeout=90, interval=0.25,
                       what="every record to be processed")
            wait_until(lambda: monitor.latest() == ends, timeout=30, interval=0.2,
                       what=f"committed offsets to reach the end offsets {ends}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nlatest committed: {monitor.latest()}\n{pool.report()}") from None
        for w in survivors:
            assert w.stop() == 0, f"{w.name} exited uncleanly:\n{w.stderr()}"
    finally:
        monitor.stop()
        pool.close()

    report = pool.report()
    duplicates = check_all_processed(FAILOVER_RECORDS, deliveries, workers)

    # The committed position of every partition only ever moved forward.
    assert monitor.polls > 20, f"the monitor only polled {monitor.polls} times"
    assert not monitor.violations(), f"committed offsets moved backwards: {monitor.violations()}"
    assert not monitor.errors, f"OffsetFetch failed: {monitor.errors[:3]}"

    # Each of the victim's partitions went to a survivor, which resumed exactly where the
    # group's committed offset stood -- no earlier (reset to 0) and no later (a gap).
    victim_last_commit = {}
    for e in victim.of("commit"):
        for p, off in e["offsets"].items():
            victim_last_commit[int(p)] = off
    victim_max = defaultdict(lambda: -1)
    for p, o, _ in victim.processed():
        victim_max[p] = max(victim_max[p], o)
    for p in sorted(victim_parts):
        takers = [(w, e) for w in survivors for e in w.of("assign") if p in e["added"] and e["t"] > kill_time]
        assert takers, f"no survivor was assigned the victim's partition {p}\n{report}"
        w, assign = takers[0]
        committed = assign["committed"]
        assert "error" not in committed, f"{w.name} could not fetch committed offsets: {committed}"
        resume = committed[str(p)]
        assert victim_last_commit[p] <= resume <= victim_max[p] + 1, (
            f"partition {p}: committed offset at takeover {resume}, but the victim last committed "
            f"{victim_last_commit[p]} and processed up to {victim_max[p]}")
        events = w.events()
        later = [o for e in events[events.index(assign) + 1:] if e["ev"] == "recs" for q, o, _ in e["recs"] if q == p]
        assert later and later[0] == resume, \
            f"partition {p}: {w.name} took over at committed offset {resume} but first processed {later[:3]}"

    for w in survivors:
        errors = w.of("error")
        assert not errors, f"{w.name} reported client errors: {errors[:5]}"
    assert all(len(s) == 3 for s in after)
    print(f"{client}: {duplicates} records processed twice (at-least-once after the kill); "
          f"victim had {sorted(victim_parts)}")


def test_failover_confluent(strata, tmp_path):
    run_failover(strata, tmp_path, "confluent")


def test_failover_kafka_python(strata, tmp_path):
    run_failover(strata, tmp_path, "kafka-python")


# --------------------------------------------------------------------------
# 2. client-side assignors

@pytest.mark.parametrize("strategy", ["roundrobin", "cooperative-sticky"])
def test_assignment_strategies(strata, tmp_path, strategy):
    topic = group = f"assignor-{strategy}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    records = make_records(6000)
    deliveries = produce_confluent(strata.bootstrap, topic, records[:3000])

    pool = WorkerPool(tmp_path / "workers", client="confluent", bootstrap=strata.bootstrap, group=group,
                      topic=topic, session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                      strategy=strategy, batch=200)
    monitor = CommitMonitor(strata.bootstrap, group, topic, PARTITIONS).start()
    try:
        first = [pool.start(f"{strategy}-{i}") for i in range(2)]
        try:
            two = wait_until(lambda: split_evenly(first, PARTITIONS, 3), timeout=60,
                             what="two members with three partitions each")
            marks = [len(w.events()) for w in first]
            third = pool.start(f"{strategy}-2")
            workers = first + [third]
            three = wait_until(lambda: split_evenly(workers, PARTITIONS, 2), timeout=60,
                               what="three members with two partitions each")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{pool.report()}") from None

        deliveries += produce_confluent(strata.bootstrap, topic, records[3000:])
        check_deliveries(records, deliveries, PARTITIONS)
        ends = end_offsets(deliveries)
        wait_until(lambda: set(processed_positions(workers)) >= set(deliveries), timeout=60,
                   what="every record to be processed")
        wait_until(lambda: monitor.latest() == ends, timeout=30, what=f"committed offsets {ends}")
        # no rebalance happened since the three-way split
        assert split_evenly(workers, PARTITIONS, 2) == three
        settled = [len(w.events()) for w in workers]  # later events come from the shutdown
        for w in workers:
            assert w.stop() == 0, w.stderr()
    finally:
        monitor.stop()
        pool.close()

    check_all_processed(len(records), deliveries, workers)
    assert not monitor.violations(), f"committed offsets moved backwards: {monitor.violations()}"

    if strategy == "roundrobin":
        # roundrobin deals sorted partitions to sorted members in turn: member k of n gets k, k+n, ...
        for sets, n in ((two, 2), (three, 3)):
            expected = {frozenset(range(k, PARTITIONS, n)) for k in range(n)}
            assert {frozenset(s) for s in sets} == expected, f"not a round-robin split: {sets}"
    else:
        # cooperative-sticky: the two first members keep two of their three partitions, give
        # exactly one each to the newcomer, and are never asked to revoke what they keep.
        for i, (w, before, after) in enumerate(zip(first, two, three[:2])):
            assert after <= before, f"{w.name} went from {sorted(before)} to {sorted(after)}: not sticky"
            revoked = {p for e in w.events()[marks[i]:settled[i]] if e["ev"] == "revoke" for p in e["removed"]}
            assert revoked == before - after, \
                f"{w.name} revoked {sorted(revoked)} but only gave away {sorted(before - after)} (eager rebalance?)"
        newcomer_added = {p for e in third.events()[:settled[2]] if e["ev"] == "assign" for p in e["added"]}
        assert newcomer_added == three[2], (newcomer_added, three)


# --------------------------------------------------------------------------
# 3. static membership

@pytest.mark.parametrize("restarted", ["leader", "follower"])
def test_static_member_restart_keeps_assignment_without_rebalance(strata, tmp_path, restarted):
    """A static member (group.instance.id) that crashes and comes back within its session
    timeout gets its old partitions back and nobody else rebalances. The first member to
    join is the group leader (it stays leader when the second joins), so both the leader
    and a follower are restarted, in separate runs: the leader's rejoin is the special case
    (the coordinator must not make it compute a new assignment)."""
    topic = group = f"static-{restarted}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    records = make_records(4000)
    deliveries = produce_confluent(strata.bootstrap, topic, records[:2000])

    # A generous session timeout: the restarted member must be back well within it.
    pool = WorkerPool(tmp_path / "workers", client="confluent", bootstrap=strata.bootstrap, group=group,
                      topic=topic, session_timeout_ms=20_000, heartbeat_interval_ms=HEARTBEAT_MS, batch=200)
    try:
        leader = pool.start("static-leader", instance_id="instance-leader")
        try:
            wait_until(lambda: leader.owned() == set(range(PARTITIONS)), timeout=60,
                       what="the first static member to own every partition")
            follower = pool.start("static-follower", instance_id="instance-follower")
            split = wait_until(lambda: split_evenly([leader, follower], PARTITIONS, 3), timeout=60,
                               what="two static members with three partitions each")
            wait_until(lambda: len(processed_positions([leader, follower])) == 2000, timeout=60,
                       what="the first 2000 records to be processed")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{pool.report()}") from None
        if restarted == "leader":
            (victim, victim_parts), (other, other_parts) = (leader, split[0]), (follower, split[1])
        else:
            (victim, victim_parts), (other, other_parts) = (follower, split[1]), (leader, split[0])
        before = describe_group(strata, group)
        assert before.state == "Stable", before.text
        other_member = [m for m in before.members if m[1] == other.name]
        assert len(before.members) == 2 and len(other_member) == 1, before.text
        other_events = [e for e in other.events() if e["ev"] in ("assign", "revoke")]

        victim.kill()  # a crash: no LeaveGroup
        back = pool.start(victim.name, instance_id=victim.name.replace("static-", "instance-"))
        try:
            # well within the 20 s session timeout, after which the old member would expire
            wait_until(lambda: back.of("assign"), timeout=12, what=f"the restarted static {restarted}'s assignment")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{pool.report()}") from None
        # Had the coordinator rebalanced, the other member would have had to revoke (eager
        # protocol) before the restarted one could be assigned anything.
        assert back.owned() == victim_parts, f"restarted member got {sorted(back.owned())}, had {sorted(victim_parts)}"
        assert [e for e in other.events() if e["ev"] in ("assign", "revoke")] == other_events, \
            f"the other member saw a rebalance:\n{pool.report()}"

        after = describe_group(strata, group)
        assert after.state == "Stable", after.text
        assert len(after.members) == 2, after.text
        assert [m for m in after.members if m[1] == other.name] == other_member, \
            f"the other member's id or assignment changed:\nbefore:\n{before.text}\nafter:\n{after.text}"
        back_member = [m for m in after.members if m[1] == victim.name]
        assert len(back_member) == 1 and {p for _, p in back_member[0][2]} == victim_parts, after.text

        # and the group keeps working with the restarted member
        deliveries += produce_confluent(strata.bootstrap, topic, records[2000:])
        wait_until(lambda: set(processed_positions(pool.workers)) >= set(deliveries), timeout=60,
                   what="the second 2000 records to be processed")
        assert [e for e in other.events() if e["ev"] in ("assign", "revoke")] == other_events
        assert other.owned() == other_parts
        for w in (back, other):
            assert w.stop() == 0, w.stderr()
    finally:
        pool.close()
    check_all_processed(len(records), deliveries, pool.workers)


# --------------------------------------------------------------------------
# 4. committed offsets are durable

def test_committed_offsets_and_metadata_survive_restart(strata):
    topic = group = "durable-offsets"
    create_topic(strata.bootstrap, topic, 3)
    ends = end_offsets(produce_confluent(strata.bootstrap, topic, make_records(600)))
    metadata = {0: "plain", 1: "", 2: 'ünïcode {"json": [1, 2]} ' + "x" * 200}
    wanted = {0: 17, 1: 42, 2: 99}
    assert all(ends[p] > wanted[p] for p in wanted), ends

    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_TIMEOUT_MS,
                         "heartbeat.interval.ms": HEARTBEAT_MS})
    try:
        consumer.subscribe([topic])
        wait_until(lambda: consumer.poll(0.2) is not None and len(consumer.assignment()) == 3, timeout=30,
                   what="a message after joining the group")
        consumer.commit(offsets=[TopicPartition(topic, p, o, metadata[p]) for p, o in wanted.items()],
                        asynchronous=False)
    finally:
        consumer.close()

    def committed() -> dict[int, tuple[int, str | None]]:
        c = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group})
        try:
            got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=CLIENT_TIMEOUT_S)
            return {tp.partition: (tp.offset, tp.metadata) for tp in got}
        finally:
            c.close()

    expected = {p: (wanted[p], metadata[p]) for p in wanted}
    assert committed() == expected
    strata.restart()
    assert committed() == expected, "committed offsets or metadata changed across a restart"

    desc = describe_group(strata, group)
    assert desc.state == "Empty", desc.text
    assert {p: c for (t, p), (c, _, _) in desc.offsets.items() if t == topic} == wanted, desc.text

    # a member of the group resumes from them
    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "latest", "session.timeout.ms": SESSION_TIMEOUT_MS})
    first: dict[int, int] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(first) < 3:
            assert time.monotonic() < deadline, f"only saw partitions {first} after the restart"
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                first.setdefault(m.partition(), m.offset())
    finally:
        consumer.close()
    assert first == wanted, f"resumed at {first}, committed {wanted}"


# --------------------------------------------------------------------------
# 5. a normal group run is error-free as far as librdkafka is concerned

class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_group_run_without_client_errors(strata):
    topic = group = "quiet-group"
    create_topic(strata.bootstrap, topic, 4)
    n = 4000
    errors: list = []
    handler = _Capture()
    logger = logging.getLogger("strata-e2e-librdkafka")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        deliveries = produce_confluent(strata.bootstrap, topic, make_records(n), logger=logger,
                                       error_cb=errors.append)
        ends = end_offsets(deliveries)

        def member(i: int) -> Consumer:
            return Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group, "client.id": f"quiet-{i}",
                             "enable.auto.commit": True, "auto.commit.interval.ms": 200,
                             "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_TIMEOUT_MS,
                             "heartbeat.interval.ms": HEARTBEAT_MS, "logger": logger,
                             "error_cb": errors.append})

        consumers = [member(0), member(1)]
        seen: set[tuple[int, int]] = set()
        for c in consumers:
            c.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(seen) < n or any(len(c.assignment()) != 2 for c in consumers):
            assert time.monotonic() < deadline, \
                f"group run stalled: {len(seen)}/{n} records, assignments {[c.assignment() for c in consumers]}"
            for c in consumers:
                for m in c.consume(num_messages=500, timeout=0.1):
                    if m.error() is not None:
                        errors.append(m.error())
                    else:
                        seen.add((m.partition(), m.offset()))
        for c in consumers:
            c.close()  # auto-commit commits the final positions on close
        check = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group, "logger": logger,
                          "error_cb": errors.append})
        try:
            committed = check.committed([TopicPartition(topic, p) for p in range(4)], timeout=CLIENT_TIMEOUT_S)
        finally:
            check.close()
    finally:
        logger.removeHandler(handler)

    assert seen == set(deliveries)
    assert {tp.partition: tp.offset for tp in committed} == ends
    assert not errors, f"error callbacks fired: {[str(e) for e in errors[:10]]}"
    bad = [f"{r.levelname} {r.getMessage()}" for r in handler.records if r.levelno >= logging.WARNING]
    assert not bad, "librdkafka logged warnings or errors:\n" + "\n".join(bad[:20])


# --------------------------------------------------------------------------
# 6. the group admin APIs: ListGroups, DescribeGroups, OffsetFetch, OffsetCommit from an
#    admin, OffsetDelete, DeleteGroups

def test_group_admin_apis(strata):
    from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from kafka import TopicPartition as KpTopicPartition
    from kafka.admin import KafkaAdminClient

    topic = group = "admin-group"
    create_topic(strata.bootstrap, topic, 3)
    produce_confluent(strata.bootstrap, topic, make_records(300))
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})

    def offsets() -> dict[int, int]:
        got = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])])[group]
        return {tp.partition: tp.offset for tp in got.result(timeout=CLIENT_TIMEOUT_S).topic_partitions}

    consumer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group, "client.id": "admin-member",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": HEARTBEAT_MS})
    try:
        consumer.subscribe([topic])
        wait_until(lambda: consumer.poll(0.2) is not None and len(consumer.assignment()) == 3, timeout=30,
                   what="the member to be assigned every partition")
        consumer.commit(offsets=[TopicPartition(topic, p, 10 + p) for p in range(3)], asynchronous=False)

        listed = admin.list_consumer_groups(request_timeout=CLIENT_TIMEOUT_S).result(timeout=CLIENT_TIMEOUT_S)
        assert not listed.errors, listed.errors
        states = {g.group_id: g.state for g in listed.valid}
        assert states.get(group) == ConsumerGroupState.STABLE, states

        desc = admin.describe_consumer_groups([group], request_timeout=CLIENT_TIMEOUT_S)[group] \
            .result(timeout=CLIENT_TIMEOUT_S)
        assert desc.state == ConsumerGroupState.STABLE
        assert [m.client_id for m in desc.members] == ["admin-member"]
        assert sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions) == [0, 1, 2]
        assert offsets() == {0: 10, 1: 11, 2: 12}

        # a group with a live member cannot be deleted
        with pytest.raises(KafkaException) as raised:
            admin.delete_consumer_groups([group], request_timeout=CLIENT_TIMEOUT_S)[group] \
                .result(timeout=CLIENT_TIMEOUT_S)
        assert raised.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, raised.value
    finally:
        consumer.close()

    wait_until(lambda: admin.describe_consumer_groups([group])[group].result(timeout=CLIENT_TIMEOUT_S).state
               == ConsumerGroupState.EMPTY, timeout=30, what="the group to be Empty")

    # An admin moves one offset (OffsetCommit outside a generation) and deletes another (OffsetDelete).
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 5)])])[group] \
        .result(timeout=CLIENT_TIMEOUT_S)
    kp_admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap, request_timeout_ms=30_000)
    try:
        result = kp_admin.delete_group_offsets(group, [KpTopicPartition(topic, 1)])
    finally:
        kp_admin.close()
    assert offsets() == {0: 5, 1: -1001, 2: 12}, f"after OffsetDelete of partition 1 (result {result!r})"

    # DeleteGroups removes the group and its offsets.
    admin.delete_consumer_groups([group], request_timeout=CLIENT_TIMEOUT_S)[group].result(timeout=CLIENT_TIMEOUT_S)
    listed = admin.list_consumer_groups(request_timeout=CLIENT_TIMEOUT_S).result(timeout=CLIENT_TIMEOUT_S)
    assert group not in {g.group_id for g in listed.valid}
    assert offsets() == {0: -1001, 1: -1001, 2: -1001}


# --------------------------------------------------------------------------
# 7. session timeout bounds

def test_session_timeout_floor(strata):
    """1000 ms is the shortest session timeout a member may ask for; below it JoinGroup
    fails with INVALID_SESSION_TIMEOUT, which librdkafka reports to the application."""
    from confluent_kafka import KafkaError

    topic = "session-floor"
    create_topic(strata.bootstrap, topic, 1)

    def member(group: str, session_ms: int, errors: list) -> Consumer:
        return Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group, "session.timeout.ms": session_ms,
                         "heartbeat.interval.ms": 200, "auto.offset.reset": "earliest",
                         "error_cb": errors.append})

    errors: list = []
    ok = member("session-1000", 1000, errors)
    try:
        ok.subscribe([topic])
        wait_until(lambda: ok.poll(0.1) is None and len(ok.assignment()) == 1, timeout=30,
                   what="a member with a 1000 ms session timeout to be assigned")
    finally:
        ok.close()
    assert not errors, errors

    too_short = member("session-999", 999, errors)
    seen = []
    try:
        too_short.subscribe([topic])

        def rejected():
            m = too_short.poll(0.1)
            if m is not None and m.error() is not None:
                seen.append(m.error())
            return [e for e in seen + errors if e.code() == KafkaError.INVALID_SESSION_TIMEOUT]

        wait_until(rejected, timeout=30, what="INVALID_SESSION_TIMEOUT for a 999 ms session timeout")
        assert too_short.assignment() == []
    finally:
        too_short.close()


# --------------------------------------------------------------------------
# 8. protocol-level: generation fencing of commits, OffsetForLeaderEpoch

def test_commits_are_fenced_by_generation(strata):
    """A commit from an old generation or an unknown member is refused and moves nothing."""
    from group_support import (ILLEGAL_GENERATION, MEMBER_ID_REQUIRED, UNKNOWN_MEMBER_ID, join_group_v4,
                               offset_commit_v2, offset_fetch_v1, sync_group_v2)
    from kafka_wire import KafkaConnection

    topic, group = "fenced", "fenced-group"
    create_topic(strata.bootstrap, topic, 1)
    with KafkaConnection(strata.bootstrap, timeout=15) as conn:
        first = join_group_v4(conn, group)
        assert first.error == MEMBER_ID_REQUIRED and first.member_id, first
        joined = join_group_v4(conn, group, first.member_id)  # waits out the initial rebalance delay
        assert joined.error == 0 and joined.generation >= 1 and joined.leader == first.member_id, joined
        gen1 = joined.generation
        assert sync_group_v2(conn, group, gen1, first.member_id, {first.member_id: b""}) == 0
        assert offset_commit_v2(conn, group, gen1, first.member_id, topic, {0: 5}) == {0: 0}

        # The member rejoins: a new generation.
        rejoined = join_group_v4(conn, group, first.member_id)
        assert rejoined.error == 0 and rejoined.generation > gen1, rejoined
        gen2 = rejoined.generation
        assert sync_group_v2(conn, group, gen2, first.member_id, {first.member_id: b""}) == 0

        assert offset_commit_v2(conn, group, gen1, first.member_id, topic, {0: 3}) == {0: ILLEGAL_GENERATION}
        assert offset_commit_v2(conn, group, gen2, "no-such-member", topic, {0: 3}) == {0: UNKNOWN_MEMBER_ID}
        assert offset_fetch_v1(conn, group, topic, [0]) == {0: (5, "raw", 0)}, "a fenced commit moved the offset"
        assert offset_commit_v2(conn, group, gen2, first.member_id, topic, {0: 7}) == {0: 0}
        assert offset_fetch_v1(conn, group, topic, [0])[0][0] == 7


def test_offset_for_leader_epoch_answers_high_watermark(strata):
    from group_support import offset_for_leader_epoch_v2
    from kafka_wire import KafkaConnection

    topic = "leader-epochs"
    create_topic(strata.bootstrap, topic, 2)
    ends = end_offsets(produce_confluent(strata.bootstrap, topic, make_records(500)))
    with KafkaConnection(strata.bootstrap, timeout=15) as conn:
        got = offset_for_leader_epoch_v2(conn, topic, {0: 0, 1: 0})
    assert got == {p: (0, 0, ends[p]) for p in (0, 1)}, f"{got} (high watermarks {ends})"
