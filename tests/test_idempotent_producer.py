"""The idempotent producer through connection cuts, and InitProducerId refusing transactions.

The client reaches the broker only through tests/tcp_proxy.py: the broker is started with
--advertised-addr set to the proxy, so Metadata and FindCoordinator send the client back
to the proxy rather than to the broker's own port. The proxy cuts every connection (RST on
both sides) while Produce requests are in flight, so the broker may well have stored a
batch whose response the client never sees; the client then retries it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from conftest import StrataServer, strata_bin
from support import (Rec, check_consumed, check_deliveries, consume_confluent, create_topic, make_records,
                     produce_confluent)
from tcp_proxy import TcpProxy

PARTITIONS = 3
COUNT = 20_000
CUTS = 6
CUT_INTERVAL_S = 0.3


class ProxiedServer(StrataServer):
    """A node that advertises the proxy's address; its ready line names that address."""

    def __init__(self, binary: str, workdir: Path, advertised: str, extra_args: tuple[str, ...] = ()):
        super().__init__(binary, workdir, ("--advertised-addr", advertised, *extra_args))
        self.advertised = advertised

    def _check_ready_line(self, m, line: str) -> None:
        if m.group(1) != self.advertised:
            self.stop(check=False)
            pytest.fail(f"ready line {line!r} does not name the advertised address {self.advertised}",
                        pytrace=False)


@pytest.fixture
def proxied(request, tmp_path):
    """(server, proxy): the proxy is bound first so the broker can advertise its port."""
    binary = strata_bin()
    proxy = TcpProxy()
    server = ProxiedServer(binary, tmp_path / "node0", proxy.address)
    request.node._strata_servers = [server]  # logs in failure reports, as for the strata fixture
    proxy.set_target("127.0.0.1", server.kafka_port)
    proxy.start()
    try:
        server.start()
        yield server, proxy
    finally:
        proxy.close()
        server.stop()


class Cutter(threading.Thread):
    """Cuts every proxied connection `cuts` times, each time as soon as a Produce request is
    in flight (or after a bounded wait), about `interval` apart."""

    def __init__(self, proxy: TcpProxy, cuts: int, interval: float):
        super().__init__(name="cutter", daemon=True)
        self.proxy, self.cuts, self.interval = proxy, cuts, interval
        self.started = threading.Event()
        self.stop = threading.Event()
        self.log: list[tuple[bool, int]] = []  # (a produce request was in flight, connections cut)

    def run(self) -> None:
        self.started.wait(30)
        for _ in range(self.cuts):
            if self.stop.wait(self.interval):
                return
            in_flight = self.proxy.wait_pending(api_key=0, timeout=2.0)
            self.log.append((in_flight, self.proxy.cut_all()))


def produce_through_cuts(bootstrap: str, topic: str, records: list[Rec], proxy: TcpProxy, **conf):
    """Produces at a steady pace (so the cuts land mid-stream) while a Cutter runs; returns
    (deliveries, delivery errors, error_cb errors, cutter log)."""
    errors: list = []
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 16 * 1024,
        "max.in.flight.requests.per.connection": 5,
        "message.timeout.ms": 120_000,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 10,
        "reconnect.backoff.max.ms": 200,
        "error_cb": errors.append,
        **conf,
    })
    deliveries: list[tuple[int, int] | None] = [None] * len(records)
    failed: list = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                failed.append((i, err))
            else:
                deliveries[i] = (msg.partition(), msg.offset())
        return cb

    cutter = Cutter(proxy, CUTS, CUT_INTERVAL_S)
    cutter.start()
    chunk = 500
    pace = (CUTS + 1) * CUT_INTERVAL_S / (len(records) / chunk)  # spread the records over the cuts
    try:
        for start in range(0, len(records), chunk):
            for i in range(start, min(start + chunk, len(records))):
                r = records[i]
                while True:
                    try:
                        producer.produce(topic, key=r.key, value=r.value, headers=list(r.headers),
                                         timestamp=r.timestamp, on_delivery=on_delivery(i))
                        break
                    except BufferError:
                        producer.poll(0.05)
            cutter.started.set()
            producer.poll(pace)
        remaining = producer.flush(150)
    finally:
        cutter.stop.set()
        cutter.join(10)
    assert remaining == 0, f"{remaining} records still undelivered after 150 s (cuts: {cutter.log})"
    return deliveries, failed, errors, cutter.log


def consume_all(server, topic: str) -> list:
    return consume_confluent(server.bootstrap, topic, PARTITIONS, timeout=120)


def test_idempotent_producer_survives_connection_cuts(proxied):
    server, proxy = proxied
    topic = "idempotent-cuts"
    create_topic(server.bootstrap, topic, PARTITIONS)

    # Clients bootstrapped at the proxy are told to stay on the proxy.
    md = Producer({"bootstrap.servers": proxy.address}).list_topics(timeout=30)
    assert {f"{b.host}:{b.port}" for b in md.brokers.values()} == {proxy.address}, md.brokers

    records = make_records(COUNT)
    deliveries, failed, errors, cuts = produce_through_cuts(proxy.address, topic, records, proxy,
                                                            **{"enable.idempotence": True})
    assert len(cuts) == CUTS and all(n > 0 for _, n in cuts), f"the cuts did not all hit connections: {cuts}"
    assert any(in_flight for in_flight, _ in cuts), f"no cut landed while a Produce request was in flight: {cuts}"
    assert not failed, f"{len(failed)} deliveries failed, first: {failed[:5]}"
    fatal = [e for e in errors if e.fatal()]
    assert not fatal, f"the idempotent producer hit fatal errors: {fatal}"
    missing = [i for i, d in enumerate(deliveries) if d is None]
    assert not missing, f"no delivery report for {len(missing)} records"
    assert proxy.accepted > CUTS, "the client did not reconnect through the proxy after the cuts"

    # Exactly once, in produce order per partition: offsets dense from 0 in produce order,
    # and the log holds exactly those records.
    check_deliveries(records, deliveries, PARTITIONS)
    consumed = consume_all(server, topic)
    check_consumed(records, deliveries, consumed)
    assert len(consumed) == COUNT
    print(f"cuts (produce in flight, connections): {cuts}; connections accepted: {proxy.accepted}")


def test_plain_producer_duplicates_on_connection_cuts(proxied):
    """The contrast: without idempotence a retried batch that was already stored is stored
    again. The cuts land while a Produce request is in flight, after the proxy forwarded all
    of it, so the broker stores it and the client retries it."""
    server, proxy = proxied
    topic = "plain-cuts"
    create_topic(server.bootstrap, topic, PARTITIONS)
    records = make_records(COUNT)
    deliveries, failed, errors, cuts = produce_through_cuts(proxy.address, topic, records, proxy,
                                                            **{"enable.idempotence": False, "retries": 100})
    assert not failed, f"{len(failed)} deliveries failed, first: {failed[:5]}"
    consumed = consume_all(server, topic)
    seqs: dict[int, int] = defaultdict(int)
    for c in consumed:
        seqs[int(dict(c.rec.headers)["seq"])] += 1
    assert set(seqs) == set(range(COUNT)), "records were lost"
    duplicated = [s for s, n in seqs.items() if n > 1]
    assert duplicated, (f"no duplicates after {len(cuts)} cuts with produce requests in flight {cuts}; "
                        f"{len(consumed)} records stored")
    print(f"{len(duplicated)} records stored more than once; cuts: {cuts}")


def test_transactional_id_is_refused_cleanly(strata):
    topic = "after-transactions"
    create_topic(strata.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": strata.bootstrap, "transactional.id": "strata-e2e-txn",
                         "transaction.timeout.ms": 10_000})
    with pytest.raises(KafkaException) as raised:
        producer.init_transactions(20)
    err = raised.value.args[0]
    assert err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, \
        f"init_transactions failed with {err.code()} {err.name()}: {err.str()}"
    assert "authoriz" in err.str().lower(), err.str()
    del producer  # a fatal error: the producer is unusable, nothing to flush

    # The broker keeps serving, idempotent producers included.
    records = make_records(200)
    deliveries = produce_confluent(strata.bootstrap, topic, records, **{"enable.idempotence": True})
    check_deliveries(records, deliveries, 1)
    check_consumed(records, deliveries, consume_confluent(strata.bootstrap, topic, 1, timeout=60))


def test_proxy_cut_resets_both_sides():
    """The proxy itself, against a loopback server that holds one request unanswered:
    bytes pass both ways, the request is seen as pending, and a cut resets both peers."""
    import socket
    import struct

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    with TcpProxy() as proxy:
        proxy.set_target("127.0.0.1", server.getsockname()[1])
        proxy.start()
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        upstream, _ = server.accept()
        upstream.settimeout(10)
        frame = lambda api_key, body: struct.pack(">ih", 2 + len(body), api_key) + body  # noqa: E731

        client.sendall(frame(3, b"metadata"))
        assert upstream.recv(100) == frame(3, b"metadata")
        upstream.sendall(struct.pack(">i", 4) + b"resp")
        assert client.recv(100) == struct.pack(">i", 4) + b"resp"
        client.sendall(frame(0, b"produce"))
        assert upstream.recv(100) == frame(0, b"produce")
        assert proxy.wait_pending(api_key=0, timeout=5)
        assert proxy.pending() == 1

        assert proxy.cut_all() == 1
        for s in (client, upstream):
            with pytest.raises(ConnectionResetError):
                got = s.recv(100)
                raise AssertionError(f"read {got!r} after the cut instead of a reset")
            s.close()
        assert proxy.live_connections() == 0
    server.close()


def test_idempotent_sequences_on_the_wire(strata):
    """Produce v3 with hand-built idempotent batches: a retried batch is answered with its
    original offset and stored once, a gap is refused, and transactional ids get no id."""
    from group_support import (OUT_OF_ORDER_SEQUENCE_NUMBER, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                               idempotent_batch, init_producer_id_v0)
    from kafka_wire import KafkaConnection, Record, produce_v3

    topic = "raw-idempotent"
    create_topic(strata.bootstrap, topic, 1)

    def batch(pid, epoch, first_seq, n):
        recs = [Record(key=b"k", value=f"seq-{first_seq + i}".encode(), headers=[("seq", str(first_seq + i).encode())],
                       timestamp=1_700_000_000_000 + first_seq + i) for i in range(n)]
        return idempotent_batch(recs, pid, epoch, first_seq)

    with KafkaConnection(strata.bootstrap, timeout=15) as conn:
        error, pid, epoch = init_producer_id_v0(conn, "some-transaction")
        assert (error, pid) == (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1)
        error, pid, epoch = init_producer_id_v0(conn)
        assert error == 0 and pid >= 0 and epoch >= 0, (error, pid, epoch)
        error, other_pid, other_epoch = init_producer_id_v0(conn)
        assert error == 0 and other_pid != pid, "two producers got the same id"

        first = produce_v3(conn, topic, 0, batch(pid, epoch, 0, 10))
        assert (first.error_code, first.base_offset) == (0, 0), first
        second = produce_v3(conn, topic, 0, batch(pid, epoch, 10, 10))
        assert (second.error_code, second.base_offset) == (0, 10), second
        # retries of the last and of an earlier batch: the original offsets, nothing stored
        for seq, offset in ((10, 10), (0, 0)):
            again = produce_v3(conn, topic, 0, batch(pid, epoch, seq, 10))
            assert (again.error_code, again.base_offset) == (0, offset), (seq, again)
        # a gap
        gap = produce_v3(conn, topic, 0, batch(pid, epoch, 25, 5))
        assert gap.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER, gap
        # another producer is independent and starts at 0
        mine = produce_v3(conn, topic, 0, batch(other_pid, other_epoch, 0, 3))
        assert (mine.error_code, mine.base_offset) == (0, 20), mine
        # the first producer goes on after the refused gap
        third = produce_v3(conn, topic, 0, batch(pid, epoch, 20, 5))
        assert (third.error_code, third.base_offset) == (0, 23), third

    consumed = consume_confluent(strata.bootstrap, topic, 1, timeout=60)
    values = [c.rec.value.decode() for c in consumed]
    assert values == ([f"seq-{i}" for i in range(20)] + [f"seq-{i}" for i in range(3)]
                      + [f"seq-{i}" for i in range(20, 25)]), values
