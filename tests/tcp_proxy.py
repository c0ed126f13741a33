"""A small threaded TCP proxy on 127.0.0.1 that can cut all its connections on demand.

    proxy = TcpProxy()                 # binds 127.0.0.1:0 at once, so .port is known early
    proxy.set_target("127.0.0.1", 9092)
    proxy.start()
    ...
    proxy.cut_all()                    # every live connection: both sockets reset
    proxy.close()

It understands just enough of the Kafka framing (a 4-byte big-endian length before each
request and response) to know, per connection, which requests were forwarded to the
server and are still unanswered; `wait_pending(api_key=0)` waits until a Produce request
is in flight, so a cut lands between "the server has the request" and "the client has the
response" -- the window in which a retry can duplicate data.

Everything is bounded: sockets use select() with short timeouts, threads are daemons and
are joined with timeouts, and a proxy that is closed stops accepting at once.
"""

from __future__ import annotations

import collections
import select
import socket
import struct
import threading
import time

_POLL_S = 0.1
_CHUNK = 256 * 1024
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


class _FrameReader:
    """Counts complete length-prefixed frames in a byte stream and the first two bytes
    of each body (the api key, for requests)."""

    def __init__(self):
        self._done: list = []
        self._head = bytearray()  # up to 6 bytes: length + api key of the current frame
        self._remaining = -1       # body bytes still expected; -1 while reading the length

    def feed(self, data: bytes) -> list:
        """Consumes data; returns the api keys (first two body bytes) of the frames it completed."""
        self._done = []
        i, n = 0, len(data)
        while i < n:
            if self._remaining < 0:
                take = min(4 - len(self._head), n - i)
                self._head += data[i:i + take]
                i += take
                if len(self._head) == 4:
                    self._remaining = struct.unpack(">i", bytes(self._head))[0]
                    if self._remaining <= 0:  # empty (or nonsense) frame: count it and move on
                        self._finish()
                continue
            if len(self._head) < 6:
                take = min(6 - len(self._head), self._remaining, n - i)
                self._head += data[i:i + take]
                i += take
                self._remaining -= take
            else:
                take = min(self._remaining, n - i)
                i += take
                self._remaining -= take
            if self._remaining == 0:
                self._finish()
        return self._done

    def _finish(self) -> None:
        key = struct.unpack(">h", bytes(self._head[4:6]))[0] if len(self._head) >= 6 else None
        self._head = bytearray()
        self._remaining = -1
        self._done.append(key)


class _Connection:
    """One proxied connection: client socket, upstream socket, two pump threads."""

    def __init__(self, proxy: "TcpProxy", client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._inflight: collections.deque = collections.deque()  # api keys of unanswered requests
        self._early_responses = 0
        self._alive = 2
        self.requests = 0
        self.responses = 0
        self._threads = [
            threading.Thread(target=self._pump, args=(client, upstream, self._on_request),
                             name="proxy-c2s", daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client, self._on_response),
                             name="proxy-s2c", daemon=True),
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _on_request(self, api_key) -> None:
        with self._lock:
            self.requests += 1
            if self._early_responses:  # its response overtook our bookkeeping
                self._early_responses -= 1
            else:
                self._inflight.append(api_key)

    def _on_response(self, _key) -> None:
        with self._lock:
            self.responses += 1
            if self._inflight:
                self._inflight.popleft()
            else:
                self._early_responses += 1

    def pending(self, api_key: int | None = None) -> int:
        """Requests forwarded to the server whose responses have not come back."""
        with self._lock:
            if api_key is None:
                return len(self._inflight)
            return sum(1 for k in self._inflight if k == api_key)

    def _pump(self, src: socket.socket, dst: socket.socket, on_frame) -> None:
        reader = _FrameReader()
        # Sockets have a short timeout and the cut flag is checked before every recv and
        # send, so a cut stops the forwarding at once and no pump blocks for long.
        try:
            while not self.cut.is_set() and not self.proxy.closed.is_set():
                readable, _, _ = select.select([src], [], [], _POLL_S)
                if self.cut.is_set():
                    break
                if not readable:
                    continue
                try:
                    data = src.recv(_CHUNK)
                except socket.timeout:
                    continue
                if not data:
                    break
                done = reader.feed(data)
                view = memoryview(data)
                while view:
                    if self.cut.is_set():
                        return
                    try:
                        view = view[dst.send(view):]
                    except socket.timeout:
                        continue
                # Counted once forwarded completely: a pending request is one the server has.
                for key in done:
                    on_frame(key)
        except (OSError, ValueError):
            pass
        finally:
            self._finish_pump()

    def _finish_pump(self) -> None:
        # The first pump to stop ends the connection for both directions (an orderly FIN
        # when a peer closed; after a cut, SO_LINGER 0 makes the close below an RST); the
        # last one closes the sockets, only then, so no thread uses a closed descriptor.
        if not self.cut.is_set():
            self.cut.set()
            for s in (self.client, self.upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with self._lock:
            self._alive -= 1
            last = self._alive == 0
        if last:
            for s in (self.client, self.upstream):
                try:
                    s.close()
                except OSError:
                    pass
            self.proxy._forget(self)

    def reset(self) -> None:
        """Abortive close of both sides: forwarding stops now, and both sockets are closed
        with SO_LINGER 0, so each peer gets an RST (no FIN) with whatever it had in flight lost."""
        for s in (self.client, self.upstream):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        self.cut.set()
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RD)  # sends nothing; wakes a pump waiting to read
            except OSError:
                pass

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


class TcpProxy:
    """Listens on 127.0.0.1:<ephemeral port>; forwards every connection to the target."""

    def __init__(self, host: str = "127.0.0.1"):
        self.closed = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self.host, self.port = self._listener.getsockname()
        self._target: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._conns: set[_Connection] = set()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self.accepted = 0
        self.cuts = 0
        self.connections_cut = 0
        self.requests_seen = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def set_target(self, host: str, port: int) -> None:
        assert host == "127.0.0.1", "the proxy only forwards to loopback"
        self._target = (host, port)

    def start(self) -> "TcpProxy":
        self._accept_thread.start()
        return self

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self.closed.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], _POLL_S)
                if not readable:
                    continue
                client, _ = self._listener.accept()
            except (OSError, ValueError):
                if self.closed.is_set():
                    return
                continue
            target = self._target
            if target is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(target, timeout=5)
            except OSError:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(_POLL_S)
            conn = _Connection(self, client, upstream)
            with self._lock:
                if self.closed.is_set():
                    conn.reset()
                self._conns.add(conn)
                self.accepted += 1
            conn.start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)
            self.requests_seen += conn.requests

    def live_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def pending(self, api_key: int | None = None) -> int:
        with self._lock:
            conns = list(self._conns)
        return sum(c.pending(api_key) for c in conns)

    def wait_pending(self, api_key: int | None = None, timeout: float = 5.0) -> bool:
        """Waits (bounded) until some connection has an unanswered request (of api_key)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending(api_key) > 0:
                return True
            time.sleep(0.002)
        return False

    def cut_all(self, join_timeout: float = 5.0) -> int:
        """Resets every live connection (both sockets) and returns how many were cut."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.reset()
        for c in conns:
            c.join(join_timeout)
        with self._lock:
            self.cuts += 1
            self.connections_cut += len(conns)
        return len(conns)

    def close(self) -> None:
        self.closed.set()
        self.cut_all()
        self._accept_thread.join(5)
        try:
            self._listener.close()
        except OSError:
            pass
