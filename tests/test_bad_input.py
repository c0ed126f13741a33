"""Malformed, oversized or invalid requests on raw sockets.

After each bad input a fresh connection must still get a valid ApiVersions
answer: the node neither crashes nor wedges.
"""

import random

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

import kafka_wire as kw
from support import CLIENT_TIMEOUT_S, confluent_admin, create_topic, topic_partition_counts, wait_until

CLOSE_TIMEOUT_S = 10.0


def assert_alive(bootstrap: str) -> None:
    """A fresh connection gets well-formed ApiVersions v0 and v3 answers listing the core APIs."""
    with kw.KafkaConnection(bootstrap) as conn:
        for version in (0, 3):
            resp = kw.api_versions(conn, version)
            assert resp.error_code == 0, f"ApiVersions v{version}: error {resp.error_code}"
            for key in (kw.PRODUCE, kw.METADATA, kw.API_VERSIONS):
                assert key in resp.apis, f"ApiVersions v{version} lacks api key {key}: {resp.apis}"
            assert resp.apis[kw.API_VERSIONS][1] >= 3, resp.apis[kw.API_VERSIONS]


def assert_closed_by_server(conn: kw.KafkaConnection) -> None:
    closed, _ = conn.wait_closed(CLOSE_TIMEOUT_S)
    assert closed, f"server did not close the connection within {CLOSE_TIMEOUT_S}s"


def send_and_expect_close(bootstrap: str, data: bytes) -> None:
    with kw.KafkaConnection(bootstrap) as conn:
        try:
            conn.send_raw(data)
        except (BrokenPipeError, ConnectionResetError):
            return  # closed before we finished writing: also a close
        assert_closed_by_server(conn)


def simple_batch(n: int = 3, tag: str = "rec") -> list[kw.Record]:
    return [kw.Record(f"k{i}".encode(), f"{tag}-{i}".encode(), [("h", b"v")], 1_700_000_000_000 + i)
            for i in range(n)]


# --------------------------------------------------------------------------
# Framing and header garbage


def _garbage_frames():
    rng = random.Random(20240611)
    random_body = b"\xde\xad" + bytes(rng.randrange(256) for _ in range(62))  # api key 0xdead is invalid
    truncated_metadata = kw.request_header(kw.METADATA, 1, 1) + kw.i32(5)   # claims 5 topics, has none
    bad_client_id = kw.i16(kw.METADATA) + kw.i16(1) + kw.i32(1) + kw.i16(1000) + b"short"
    return {
        "random-bytes": kw.frame(random_body),
        "truncated-metadata-body": kw.frame(truncated_metadata),
        "client-id-overruns-frame": kw.frame(bad_client_id),
        "negative-frame-size": kw.i32(-5) + b"\x00" * 16,
        "frame-shorter-than-header": kw.frame(b"\x00\x03"),
    }


@pytest.mark.parametrize("name", sorted(_garbage_frames()))
def test_garbage_frame_closes_connection(strata, name):
    send_and_expect_close(strata.bootstrap, _garbage_frames()[name])
    assert_alive(strata.bootstrap)


@pytest.mark.parametrize("declared_size", [1024 * 1024 + 1, 0x7FFFFFFF])
def test_oversized_frame_closes_connection(strata_factory, declared_size):
    strata = strata_factory("--max-request-bytes", str(1024 * 1024))
    # Only the size prefix and a header are sent: the server must reject the
    # frame from its declared size, without waiting for the body.
    send_and_expect_close(strata.bootstrap,
                          kw.i32(declared_size) + kw.request_header(kw.PRODUCE, 3, 1))
    assert_alive(strata.bootstrap)


def test_request_under_max_request_bytes_is_served(strata_factory):
    strata = strata_factory("--max-request-bytes", str(1024 * 1024))
    create_topic(strata.bootstrap, "big-but-allowed", 1)
    batch = kw.record_batch([kw.Record(b"k", b"x" * (512 * 1024))])
    with kw.KafkaConnection(strata.bootstrap) as conn:
        resp = kw.produce_v3(conn, "big-but-allowed", 0, batch)
    assert (resp.error_code, resp.base_offset) == (kw.NONE, 0)


# --------------------------------------------------------------------------
# API keys and versions


def test_unknown_api_key_closes_connection(strata):
    send_and_expect_close(strata.bootstrap, kw.frame(kw.request_header(9999, 0, 1)))
    assert_alive(strata.bootstrap)


def test_unsupported_metadata_version_closes_connection(strata):
    send_and_expect_close(strata.bootstrap,
                          kw.frame(kw.request_header(kw.METADATA, 99, 1, flexible=True) + kw.i32(-1)))
    assert_alive(strata.bootstrap)


def test_api_versions_too_new_answers_unsupported_version_in_v0_layout(strata):
    with kw.KafkaConnection(strata.bootstrap) as conn:
        cid = conn.send_request(kw.API_VERSIONS, 99, kw.api_versions_body(3), flexible_header=True)
        got_cid, r = conn.recv_response(flexible_header=False)
        assert got_cid == cid
        resp = kw.parse_api_versions(r, 0)
        assert r.remaining() == 0, f"{r.remaining()} bytes after the v0 layout"
        assert resp.error_code == kw.UNSUPPORTED_VERSION
        assert kw.API_VERSIONS in resp.apis, resp.apis
        lo, hi = resp.apis[kw.API_VERSIONS]
        assert lo == 0 and hi >= 3, resp.apis[kw.API_VERSIONS]
        for key in (kw.PRODUCE, kw.METADATA):
            assert key in resp.apis, f"supported API {key} not listed: {resp.apis}"
        # The connection stays usable: the client retries with a version it now knows.
        assert kw.api_versions(conn, 3).error_code == 0
    assert_alive(strata.bootstrap)


# --------------------------------------------------------------------------
# Produce


@pytest.mark.parametrize("corruption", ["wrong-crc-field", "flipped-payload-byte"])
def test_produce_with_corrupt_batch_is_rejected(strata, corruption):
    topic = "crc-check"
    create_topic(strata.bootstrap, topic, 1)
    good = kw.record_batch(simple_batch())
    if corruption == "wrong-crc-field":
        bad = kw.record_batch(simple_batch(), crc_override=kw.crc32c(good[kw.BATCH_CRC_OFFSET + 4:]) ^ 0x1)
    else:
        bad = bytearray(good)
        bad[-1] ^= 0x01  # last byte of the last header value: structure intact, CRC no longer matches
        bad = bytes(bad)

    with kw.KafkaConnection(strata.bootstrap) as conn:
        resp = kw.produce_v3(conn, topic, 0, bad)
    assert resp.error_code == kw.CORRUPT_MESSAGE, resp
    assert_alive(strata.bootstrap)

    with kw.KafkaConnection(strata.bootstrap) as conn:
        resp = kw.produce_v3(conn, topic, 0, good)
    assert (resp.error_code, resp.base_offset) == (kw.NONE, 0), \
        f"correct produce after a corrupt one: {resp} (the corrupt batch must not have been appended)"


def test_produce_to_unknown_topic_without_auto_create(strata_factory):
    strata = strata_factory("--auto-create-topics", "false")
    with kw.KafkaConnection(strata.bootstrap) as conn:
        resp = kw.produce_v3(conn, "no-such-topic", 0, kw.record_batch(simple_batch()))
        assert resp.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION, resp
        md = kw.metadata_v1(conn, ["no-such-topic"])
        assert [(t.name, t.error_code) for t in md.topics] == [("no-such-topic", kw.UNKNOWN_TOPIC_OR_PARTITION)]
    assert "no-such-topic" not in topic_partition_counts(confluent_admin(strata.bootstrap))
    assert_alive(strata.bootstrap)


def test_produce_to_nonexistent_partition(strata):
    create_topic(strata.bootstrap, "two-partitions", 2)
    with kw.KafkaConnection(strata.bootstrap) as conn:
        for partition in (2, 7, -1):
            resp = kw.produce_v3(conn, "two-partitions", partition, kw.record_batch(simple_batch()))
            assert resp.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION, (partition, resp)
        ok = kw.produce_v3(conn, "two-partitions", 1, kw.record_batch(simple_batch()))
        assert (ok.error_code, ok.base_offset) == (kw.NONE, 0)
    assert_alive(strata.bootstrap)


def test_produce_acks_0_gets_no_response(strata):
    topic = "acks-zero"
    create_topic(strata.bootstrap, topic, 1)
    with kw.KafkaConnection(strata.bootstrap) as conn:
        produce_cid = conn.send_request(kw.PRODUCE, 3,
                                        kw.produce_v3_body(topic, 0, kw.record_batch(simple_batch(5)), acks=0))
        versions_cid = conn.send_request(kw.API_VERSIONS, 0, b"")
        got_cid, r = conn.recv_response()
        assert got_cid == versions_cid, \
            f"first response has correlation id {got_cid}; produce was {produce_cid}, ApiVersions {versions_cid}"
        assert kw.parse_api_versions(r, 0).error_code == 0

        # The acks=0 records are still appended: a later acks=-1 produce lands after them.
        def next_offset():
            resp = kw.produce_v3(conn, topic, 0, kw.record_batch(simple_batch(1, tag="probe")))
            assert resp.error_code == kw.NONE, resp
            return resp.base_offset
        assert next_offset() == 5


# --------------------------------------------------------------------------
# Invalid topic names

INVALID_TOPIC_NAMES = ["bad name!", "..", ".", "x" * 250, "slash/topic"]


@pytest.mark.parametrize("name", INVALID_TOPIC_NAMES, ids=["space-bang", "dotdot", "dot", "250-chars", "slash"])
def test_invalid_topic_name_rejected(strata, name):
    admin = confluent_admin(strata.bootstrap)
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                                  request_timeout=CLIENT_TIMEOUT_S)
    with pytest.raises(KafkaException) as excinfo:
        futures[name].result(timeout=CLIENT_TIMEOUT_S)
    err = excinfo.value.args[0]
    assert err.code() == KafkaError.TOPIC_EXCEPTION, f"CreateTopics({name!r}): {err}"

    with kw.KafkaConnection(strata.bootstrap) as conn:
        md = kw.metadata_v1(conn, [name])
    assert [(t.name, t.error_code) for t in md.topics] == [(name, kw.INVALID_TOPIC_EXCEPTION)]
    assert name not in topic_partition_counts(admin)
    assert_alive(strata.bootstrap)


def test_valid_edge_topic_names_accepted(strata):
    names = ["a", "x" * 249, "dots.and_underscores-and-dashes.0"]
    for name in names:
        create_topic(strata.bootstrap, name, 1)
    wait_until(lambda: set(names) <= set(topic_partition_counts(confluent_admin(strata.bootstrap))),
               timeout=CLIENT_TIMEOUT_S, what="edge-case topic names listed")
