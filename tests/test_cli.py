"""The operator CLI (`strata topic ...`) against a running node."""

import re
import subprocess

import pytest

from conftest import clean_env, free_ports
from support import (CLIENT_TIMEOUT_S, confluent_admin, create_topic, make_records, produce_confluent,
                     topic_partition_counts, wait_until)

PARTITION_LINE_RE = re.compile(r"partition (\d+): log_start=(\d+) high_watermark=(\d+)")
TOPIC_ID_RE = re.compile(
    r"(?<![\w-])([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32}|[A-Za-z0-9_-]{22})(?![\w-])")


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, \
        f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def assert_fails_readably(proc: subprocess.CompletedProcess) -> None:
    """Non-zero exit with a short human message on stderr (no panic, no backtrace)."""
    assert proc.returncode != 0, f"{proc.args} succeeded but should have failed\nstdout:\n{proc.stdout}"
    message = proc.stderr.strip()
    assert message, f"{proc.args} failed ({proc.returncode}) without a message on stderr"
    assert "panicked" not in message and "stack backtrace" not in message, f"{proc.args} panicked:\n{message}"


def listed_topics(strata, **kw) -> list[str]:
    return [line.split()[0] for line in ok(strata.cli("topic", "list", **kw)).splitlines() if line.strip()]


def describe(strata, name: str) -> tuple[str, dict[int, tuple[int, int]]]:
    out = ok(strata.cli("topic", "describe", name))
    parts = {int(p): (int(ls), int(hw)) for p, ls, hw in PARTITION_LINE_RE.findall(out)}
    return out, parts


def test_topic_lifecycle(strata):
    name = "cli-orders"
    ok(strata.cli("topic", "create", name, "--partitions", "3",
                  "--config", "retention.ms=86400000", "--config", "retention.bytes=1048576"))

    assert name in listed_topics(strata)
    assert topic_partition_counts(confluent_admin(strata.bootstrap)).get(name) == 3

    out, parts = describe(strata, name)
    assert name in out
    assert parts == {0: (0, 0), 1: (0, 0), 2: (0, 0)}, out
    for key, value in (("retention.ms", "86400000"), ("retention.bytes", "1048576")):
        assert re.search(rf"{re.escape(key)}\s*[=:]\s*{value}\b", out), f"{key}={value} not in:\n{out}"
    ids = [t for t in TOPIC_ID_RE.findall(out) if t != name]
    assert ids, f"no topic id in describe output:\n{out}"

    produce_confluent(strata.bootstrap, name, make_records(10), partition=1)
    wait_until(lambda: describe(strata, name)[1] == {0: (0, 0), 1: (0, 10), 2: (0, 0)}, timeout=10,
               what="describe to show high_watermark=10 on partition 1 after 10 acknowledged records")

    ok(strata.cli("topic", "delete", name))
    assert name not in listed_topics(strata)
    wait_until(lambda: name not in topic_partition_counts(confluent_admin(strata.bootstrap)),
               timeout=CLIENT_TIMEOUT_S, what=f"{name} gone from Kafka metadata")
    assert_fails_readably(strata.cli("topic", "describe", name))

    # The name can be reused, and the new topic starts empty with a new id.
    ok(strata.cli("topic", "create", name, "--partitions", "1"))
    out2, parts = describe(strata, name)
    assert parts == {0: (0, 0)}, out2
    assert set(TOPIC_ID_RE.findall(out2)) - {name} != set(ids), "recreated topic kept the old topic id"


def test_cli_sees_topics_created_through_kafka(strata):
    create_topic(strata.bootstrap, "made-by-admin-client", 2)
    assert "made-by-admin-client" in listed_topics(strata)
    _, parts = describe(strata, "made-by-admin-client")
    assert sorted(parts) == [0, 1]


def test_cli_metadata_address_from_env(strata):
    ok(strata.cli("topic", "create", "via-env", "--partitions", "1", use_env=True))
    assert "via-env" in listed_topics(strata, use_env=True)


def _create_twice(strata):
    ok(strata.cli("topic", "create", "dup", "--partitions", "1"))
    return strata.cli("topic", "create", "dup", "--partitions", "1")


BAD_USAGE = {
    "create-existing": _create_twice,
    "describe-missing": lambda s: s.cli("topic", "describe", "missing-topic"),
    "delete-missing": lambda s: s.cli("topic", "delete", "missing-topic"),
    "create-invalid-name": lambda s: s.cli("topic", "create", "bad name!", "--partitions", "1"),
    "create-zero-partitions": lambda s: s.cli("topic", "create", "zero", "--partitions", "0"),
    "create-malformed-config": lambda s: s.cli("topic", "create", "cfg", "--partitions", "1",
                                               "--config", "no-equals-sign"),
}


@pytest.mark.parametrize("case", sorted(BAD_USAGE))
def test_bad_usage_fails_readably(strata, case):
    assert_fails_readably(BAD_USAGE[case](strata))
    topics = listed_topics(strata)
    assert "bad name!" not in topics and "zero" not in topics and "cfg" not in topics, topics


def test_unreachable_metadata_service_fails_readably(strata):
    (port,) = free_ports(1)
    proc = subprocess.run([strata.binary, "topic", "list", "--metadata", f"http://127.0.0.1:{port}"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert_fails_readably(proc)
