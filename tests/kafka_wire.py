"""Minimal hand-rolled Kafka wire protocol helpers for the raw-socket tests.

Only what the tests need is implemented: framing, request headers v1/v2,
ApiVersions v0..v3, Metadata v1, Produce v3 and RecordBatch v2 encoding
(with a pure-Python CRC-32C so a batch can be deliberately corrupted).
All integers are big-endian as the protocol requires.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# API keys
PRODUCE = 0
METADATA = 3
API_VERSIONS = 18

# Error codes
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35


# --------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, as used by RecordBatch v2.

def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "crc32c self-check failed"


# --------------------------------------------------------------------------
# Primitive encoders

def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def uvarint(v: int) -> bytes:
    assert v >= 0
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag encoded signed varint (works for both varint and varlong)."""
    return uvarint((v << 1) ^ (v >> 63))


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def nbytes(b: bytes | None) -> bytes:
    """Nullable BYTES with an int32 length."""
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes] | None) -> bytes:
    if items is None:
        return i32(-1)
    return i32(len(items)) + b"".join(items)


EMPTY_TAGGED_FIELDS = uvarint(0)


# --------------------------------------------------------------------------
# Decoder

class DecodeError(Exception):
    pass


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt: str):
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def i8(self) -> int:
        return self._unpack(">b")

    def i16(self) -> int:
        return self._unpack(">h")

    def i32(self) -> int:
        return self._unpack(">i")

    def i64(self) -> int:
        return self._unpack(">q")

    def bool(self) -> bool:
        return self.i8() != 0

    def uvarint(self) -> int:
        shift = 0
        result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise DecodeError("varint too long")

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        return self._take(n).decode()

    def compact_string(self) -> str | None:
        n = self.uvarint()
        if n == 0:
            return None
        return self._take(n - 1).decode()

    def array(self, item) -> list | None:
        n = self.i32()
        if n < 0:
            return None
        return [item(self) for _ in range(n)]

    def compact_array(self, item) -> list | None:
        n = self.uvarint()
        if n == 0:
            return None
        return [item(self) for _ in range(n - 1)]

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --------------------------------------------------------------------------
# Framing and connections

def request_header(api_key: int, api_version: int, correlation_id: int,
                   client_id: str | None = "strata-e2e", flexible: bool = False) -> bytes:
    """Request header v1, or v2 (v1 + empty tagged fields) when flexible."""
    hdr = i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)
    if flexible:
        hdr += EMPTY_TAGGED_FIELDS
    return hdr


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


class ConnectionClosed(Exception):
    pass


def parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


class KafkaConnection:
    """A blocking socket speaking Kafka framing; every operation is bounded by `timeout`."""

    def __init__(self, addr: str, timeout: float = 10.0):
        self.timeout = timeout
        self.sock = socket.create_connection(parse_addr(addr), timeout=timeout)
        self._next_correlation_id = 1

    def __enter__(self) -> "KafkaConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def next_correlation_id(self) -> int:
        cid = self._next_correlation_id
        self._next_correlation_id += 1
        return cid

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_request(self, api_key: int, api_version: int, body: bytes, *,
                     flexible_header: bool = False, correlation_id: int | None = None) -> int:
        cid = self.next_correlation_id() if correlation_id is None else correlation_id
        self.send_raw(frame(request_header(api_key, api_version, cid, flexible=flexible_header) + body))
        return cid

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionClosed(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self._recv_exact(4))
        if size < 0:
            raise DecodeError(f"negative response size {size}")
        return self._recv_exact(size)

    def recv_response(self, flexible_header: bool = False) -> tuple[int, Reader]:
        """Reads one response; returns (correlation_id, reader positioned at the body)."""
        r = Reader(self.recv_frame())
        cid = r.i32()
        if flexible_header:
            r.skip_tagged_fields()
        return cid, r

    def request(self, api_key: int, api_version: int, body: bytes, *,
                flexible_header: bool = False, flexible_response_header: bool | None = None) -> Reader:
        """Sends a request and returns the body reader of its response (correlation id checked)."""
        cid = self.send_request(api_key, api_version, body, flexible_header=flexible_header)
        if flexible_response_header is None:
            flexible_response_header = flexible_header
        got, r = self.recv_response(flexible_response_header)
        if got != cid:
            raise DecodeError(f"response correlation id {got}, expected {cid}")
        return r

    def wait_closed(self, timeout: float | None = None) -> tuple[bool, bytes]:
        """Waits until the peer closes the connection.

        Returns (closed, bytes received meanwhile); closed is False if the
        connection was still open when the timeout expired.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        received = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, bytes(received)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return True, bytes(received)
            except socket.timeout:
                return False, bytes(received)
            finally:
                self.sock.settimeout(self.timeout)
            if not chunk:
                return True, bytes(received)
            received += chunk


# --------------------------------------------------------------------------
# ApiVersions

@dataclass
class ApiVersionsResponse:
    error_code: int
    apis: dict[int, tuple[int, int]]
    throttle_time_ms: int | None = None


def api_versions_body(version: int) -> bytes:
    if version >= 3:
        return compact_string("strata-e2e") + compact_string("1.0") + EMPTY_TAGGED_FIELDS
    return b""


def parse_api_versions(r: Reader, version: int) -> ApiVersionsResponse:
    error_code = r.i16()
    if version >= 3:
        def entry(rr: Reader):
            k, lo, hi = rr.i16(), rr.i16(), rr.i16()
            rr.skip_tagged_fields()
            return k, (lo, hi)
        entries = r.compact_array(entry) or []
    else:
        entries = r.array(lambda rr: (rr.i16(), (rr.i16(), rr.i16()))) or []
    throttle = r.i32() if version >= 1 else None
    if version >= 3:
        r.skip_tagged_fields()
    apis = dict(entries)
    if len(apis) != len(entries):
        raise DecodeError(f"duplicate api keys in ApiVersions response: {entries}")
    return ApiVersionsResponse(error_code, apis, throttle)


def api_versions(conn: KafkaConnection, version: int) -> ApiVersionsResponse:
    """ApiVersions request; the response header is always v0 (no tagged fields)."""
    r = conn.request(API_VERSIONS, version, api_versions_body(version),
                     flexible_header=version >= 3, flexible_response_header=False)
    resp = parse_api_versions(r, version)
    if r.remaining():
        raise DecodeError(f"{r.remaining()} trailing bytes in ApiVersions v{version} response")
    return resp


# --------------------------------------------------------------------------
# Metadata v1

@dataclass
class MetadataPartition:
    error_code: int
    index: int
    leader: int
    replicas: list[int]
    isr: list[int]


@dataclass
class MetadataTopic:
    error_code: int
    name: str
    is_internal: bool
    partitions: list[MetadataPartition]


@dataclass
class MetadataResponse:
    brokers: list[tuple[int, str, int, str | None]]
    controller_id: int
    topics: list[MetadataTopic]


def metadata_v1_body(topics: list[str] | None) -> bytes:
    return array(None if topics is None else [string(t) for t in topics])


def parse_metadata_v1(r: Reader) -> MetadataResponse:
    brokers = r.array(lambda rr: (rr.i32(), rr.string(), rr.i32(), rr.string())) or []
    controller = r.i32()

    def partition(rr: Reader) -> MetadataPartition:
        return MetadataPartition(rr.i16(), rr.i32(), rr.i32(),
                                 rr.array(Reader.i32) or [], rr.array(Reader.i32) or [])

    def topic(rr: Reader) -> MetadataTopic:
        return MetadataTopic(rr.i16(), rr.string(), rr.bool(), rr.array(partition) or [])

    topics = r.array(topic) or []
    return MetadataResponse(brokers, controller, topics)


def metadata_v1(conn: KafkaConnection, topics: list[str] | None) -> MetadataResponse:
    r = conn.request(METADATA, 1, metadata_v1_body(topics))
    resp = parse_metadata_v1(r)
    if r.remaining():
        raise DecodeError(f"{r.remaining()} trailing bytes in Metadata v1 response")
    return resp


# --------------------------------------------------------------------------
# RecordBatch v2 and Produce v3

@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int = 0


def _encode_record(rec: Record, offset_delta: int, timestamp_delta: int) -> bytes:
    def nullable(b: bytes | None) -> bytes:
        return varint(-1) if b is None else varint(len(b)) + b

    body = i8(0) + varint(timestamp_delta) + varint(offset_delta)
    body += nullable(rec.key) + nullable(rec.value)
    body += varint(len(rec.headers))
    for hk, hv in rec.headers:
        hkb = hk.encode()
        body += varint(len(hkb)) + hkb + nullable(hv)
    return varint(len(body)) + body


def record_batch(records: list[Record], *, base_offset: int = 0, crc_override: int | None = None) -> bytes:
    """Encodes an uncompressed, non-transactional RecordBatch v2.

    `crc_override` replaces the computed CRC-32C (to build a corrupt batch).
    """
    assert records
    base_ts = min(r.timestamp for r in records)
    max_ts = max(r.timestamp for r in records)
    encoded = b"".join(_encode_record(r, i, r.timestamp - base_ts) for i, r in enumerate(records))
    after_crc = (
        i16(0)                      # attributes: no compression, CreateTime, not transactional
        + i32(len(records) - 1)     # lastOffsetDelta
        + i64(base_ts)
        + i64(max_ts)
        + i64(-1)                   # producerId
        + i16(-1)                   # producerEpoch
        + i32(-1)                   # baseSequence
        + i32(len(records))
        + encoded
    )
    crc = crc32c(after_crc) if crc_override is None else crc_override
    after_length = i32(-1) + i8(2) + u32(crc) + after_crc  # partitionLeaderEpoch, magic, crc
    return i64(base_offset) + i32(len(after_length)) + after_length


BATCH_CRC_OFFSET = 8 + 4 + 4 + 1  # baseOffset, batchLength, partitionLeaderEpoch, magic


@dataclass
class ProducePartitionResponse:
    index: int
    error_code: int
    base_offset: int
    log_append_time_ms: int


def produce_v3_body(topic: str, partition: int, records: bytes, *, acks: int = -1,
                    timeout_ms: int = 10_000) -> bytes:
    return (
        string(None)  # transactional_id
        + i16(acks)
        + i32(timeout_ms)
        + array([string(topic) + array([i32(partition) + nbytes(records)])])
    )


def parse_produce_v3(r: Reader) -> dict[tuple[str, int], ProducePartitionResponse]:
    def part(rr: Reader) -> ProducePartitionResponse:
        return ProducePartitionResponse(rr.i32(), rr.i16(), rr.i64(), rr.i64())

    out = {}
    for name, parts in r.array(lambda rr: (rr.string(), rr.array(part) or [])) or []:
        for p in parts:
            out[(name, p.index)] = p
    r.i32()  # throttle_time_ms
    return out


def produce_v3(conn: KafkaConnection, topic: str, partition: int, records: bytes, *,
               acks: int = -1, timeout_ms: int = 10_000) -> ProducePartitionResponse:
    r = conn.request(PRODUCE, 3, produce_v3_body(topic, partition, records, acks=acks, timeout_ms=timeout_ms))
    resp = parse_produce_v3(r)
    if r.remaining():
        raise DecodeError(f"{r.remaining()} trailing bytes in Produce v3 response")
    if (topic, partition) not in resp:
        raise DecodeError(f"Produce response lacks {topic}/{partition}: {resp}")
    return resp[(topic, partition)]
