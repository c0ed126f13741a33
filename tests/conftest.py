"""Fixtures that run a real `strata dev` node for each test.

`strata`         -- a node with default settings, on free loopback ports and a
                    fresh data dir; stopped (SIGTERM) at the end of the test.
`strata_factory` -- start nodes with extra CLI arguments, e.g.
                    strata_factory("--auto-create-topics", "false").

The binary comes from $STRATA_BIN (scripts/test.sh sets it); without it every
test fails rather than being skipped. A failing test gets the node's stdout
and stderr appended to its report.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

READY_RE = re.compile(r"^strata dev ready: bootstrap=(\S+) metadata=(\S+)\s*$")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_BYTES = 20_000


def strata_bin() -> str:
    path = os.environ.get("STRATA_BIN")
    if not path:
        pytest.fail("STRATA_BIN is not set; run scripts/test.sh or export STRATA_BIN=/path/to/strata",
                    pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"STRATA_BIN={path} is not an executable file", pytrace=False)
    return path


def free_ports(n: int) -> list[int]:
    """n distinct currently-free loopback ports (bind to port 0, then release)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child if pytest dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def clean_env() -> dict[str, str]:
    """The environment for strata processes: no inherited STRATA_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.setdefault("RUST_BACKTRACE", "1")
    env.setdefault("NO_COLOR", "1")  # plain log lines in failure reports
    return env


def tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    prefix = b""
    if len(data) > limit:
        prefix = b"...[truncated]...\n"
        data = data[-limit:]
    return (prefix + data).decode(errors="replace")


class StrataServer:
    """One `strata dev` node; restartable on the same data dir and ports."""

    def __init__(self, binary: str, workdir: Path, extra_args: tuple[str, ...] = ()):
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.extra_args = tuple(extra_args)
        self.kafka_port, self.metadata_port, self.http_port = free_ports(3)
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.metadata_url = f"http://127.0.0.1:{self.metadata_port}"
        self.proc: subprocess.Popen | None = None
        self.log_files: list[tuple[str, Path]] = []
        self._starts = 0

    # -- lifecycle ----------------------------------------------------------

    def command(self) -> list[str]:
        return [
            self.binary, "dev",
            "--data-dir", str(self.data_dir),
            "--kafka-listen", self.bootstrap,
            "--metadata-listen", f"127.0.0.1:{self.metadata_port}",
            "--http-listen", f"127.0.0.1:{self.http_port}",
            *self.extra_args,
        ]

    def start(self) -> None:
        assert self.proc is None, "already running"
        self._starts += 1
        out_path = self.workdir / f"strata.{self._starts}.stdout.log"
        err_path = self.workdir / f"strata.{self._starts}.stderr.log"
        self.log_files += [(f"stdout (start #{self._starts})", out_path),
                           (f"stderr (start #{self._starts})", err_path)]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=clean_env(), preexec_fn=_die_with_parent,
            )
        self._wait_ready(out_path, err_path)

    def _wait_ready(self, out_path: Path, err_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for line in out_path.read_text(errors="replace").splitlines():
                m = READY_RE.match(line)
                if m:
                    self._check_ready_line(m, line)
                    return
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                pytest.fail(f"strata dev exited with code {code} before printing the ready line\n"
                            f"command: {' '.join(self.command())}\n--- stderr ---\n{tail(err_path)}"
                            f"\n--- stdout ---\n{tail(out_path)}", pytrace=False)
            if time.monotonic() > deadline:
                self._kill()
                pytest.fail(f"strata dev printed no ready line within {START_TIMEOUT_S:.0f}s\n"
                            f"command: {' '.join(self.command())}\n--- stderr ---\n{tail(err_path)}"
                            f"\n--- stdout ---\n{tail(out_path)}", pytrace=False)
            time.sleep(0.05)

    def _check_ready_line(self, m: re.Match, line: str) -> None:
        if (m.group(1), m.group(2)) != (self.bootstrap, self.metadata_url):
            self.stop(check=False)
            pytest.fail(f"ready line {line!r} does not match the requested listeners "
                        f"bootstrap={self.bootstrap} metadata={self.metadata_url}", pytrace=False)

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            self.proc = None

    def stop(self, check: bool = True) -> None:
        """SIGTERM and wait; SIGKILL after STOP_TIMEOUT_S. With check, a slow or non-zero exit fails."""
        if self.proc is None:
            return
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            self._kill()
            if check:
                pytest.fail(f"strata dev did not exit within {STOP_TIMEOUT_S:.0f}s of SIGTERM; killed",
                            pytrace=False)
            return
        self.proc = None
        if check and code != 0:
            pytest.fail(f"strata dev exited with code {code} after SIGTERM (expected 0)", pytrace=False)

    def restart(self) -> None:
        """Graceful stop (SIGTERM), then start again on the same data dir and ports."""
        self.stop()
        self.start()

    # -- helpers ------------------------------------------------------------

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args: str, use_env: bool = False, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Runs `strata topic ...`-style operator commands against this node.

        The metadata address goes in --metadata (appended last) or, with
        use_env, in $STRATA_METADATA.
        """
        env = clean_env()
        cmd = [self.binary, *args]
        if use_env:
            env["STRATA_METADATA"] = self.metadata_url
        else:
            cmd += ["--metadata", self.metadata_url]
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=env, timeout=timeout)


@pytest.fixture
def strata_factory(request, tmp_path):
    binary = strata_bin()
    servers: list[StrataServer] = []
    request.node._strata_servers = servers

    def start(*extra_args: str) -> StrataServer:
        server = StrataServer(binary, tmp_path / f"node{len(servers)}", extra_args)
        servers.append(server)
        server.start()
        return server

    yield start

    failures = []
    for server in servers:
        try:
            server.stop()
        except BaseException as e:  # pytest.fail raises an OutcomeException
            failures.append(str(e))
    if failures:
        pytest.fail("shutdown problems:\n" + "\n".join(failures), pytrace=False)


@pytest.fixture
def strata(strata_factory) -> StrataServer:
    return strata_factory()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for server in getattr(item, "_strata_servers", []):
            for label, path in server.log_files:
                report.sections.append((f"strata {server.workdir.name} {label}", tail(path)))
    return report
