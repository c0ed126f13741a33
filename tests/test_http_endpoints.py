"""The agent's HTTP endpoint: /healthz, /readyz and Prometheus /metrics that move with traffic."""

from __future__ import annotations

import re
import urllib.request

from support import consume_confluent, create_topic, make_records, produce_confluent


def get(strata, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{strata.http_port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def sample(metrics: str, name: str) -> float:
    """The value of the sample `name` (with its labels), 0 when absent."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_health_and_readiness(strata):
    assert get(strata, "/healthz") == (200, "ok\n")
    status, body = get(strata, "/readyz")
    assert (status, body) == (200, "ready\n")


def test_metrics_count_requests_bytes_and_bucket_calls(strata):
    create_topic(strata.bootstrap, "observed", 1)
    records = make_records(500)
    produce_confluent(strata.bootstrap, "observed", records)
    consume_confluent(strata.bootstrap, "observed", 1, timeout=30)
    status, metrics = get(strata, "/metrics")
    assert status == 200
    assert sample(metrics, 'strata_agent_requests_total{api="Produce"}') >= 1
    assert sample(metrics, 'strata_agent_requests_total{api="Fetch"}') >= 1
    assert sample(metrics, "strata_agent_produce_records_total") == 500
    assert sample(metrics, "strata_agent_produce_bytes_total") > 500 * 40
    assert sample(metrics, "strata_agent_fetch_bytes_total") >= sample(metrics, "strata_agent_produce_bytes_total")
    assert sample(metrics, 'strata_object_store_requests_total{op="put"}') >= 1
    assert sample(metrics, "strata_agent_flushes_total") >= 1
    assert sample(metrics, "strata_agent_read_cache_requests_total") >= 1
    assert re.search(r'^strata_agent_request_seconds_bucket\{le="[^"]+",api="Produce"\}', metrics, re.M)
    assert sample(metrics, "strata_metadata_commits_total") >= 1
    assert sample(metrics, "strata_metadata_agents") == 1
