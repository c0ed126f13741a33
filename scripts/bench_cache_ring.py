#!/usr/bin/env python3
"""Replay across several agents with and without the read tier's ring of cache nodes.

Starts one `strata metadata` (SQLite) and agents sharing one bucket (a local directory, or
the S3 server whose flags are given). It writes one history with `strata bench produce`
through WRITE_AGENTS agents, then replays it through AGENTS agents with CONSUMERS
concurrent `strata bench consume` processes (each reads every partition from its leader).
Producers also write each partition through its leader, so while membership stays as it
was, each agent's segments hold only the partitions it serves; once the read side is
scaled out (the default: written through 1 agent, read through 3), every agent needs
blocks of segments another agent wrote, which hold chunks of many partitions. Set-ups:

  agents   the agents alone: each reads from the bucket every block its partitions need
  fleet    plus CACHES `strata cache` nodes: each block is read by its owner node only
  role     agents started with --cache-listen, forming the ring themselves

Every set-up starts its processes afresh, so all caches start empty. Per set-up it prints
the bucket GETs of all processes together, GETs per GB of history, the replay's MB/s (all
consumers together, record batch bytes) and the CPU seconds of every process of the
cluster. Everything runs on 127.0.0.1; the script stops the processes it started.

Example:
  scripts/bench_cache_ring.py --strata target/release/strata --history-mb 1024
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

GET = 'strata_object_store_requests_total{op="get"}'


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strata", default="target/release/strata", help="strata binary (default %(default)s)")
    p.add_argument("--agents", type=int, default=3, help="agents serving the replay (default %(default)s)")
    p.add_argument("--write-agents", type=int, default=1,
                   help="agents the history is written through (default %(default)s: the read side was "
                        "scaled out after writing, so every agent reads segments another one wrote)")
    p.add_argument("--caches", type=int, default=2)
    p.add_argument("--consumers", type=int, default=4)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--history-mb", type=int, default=1024, help="MB of 1 KiB records to write")
    p.add_argument("--produce-rate", type=int, default=0,
                   help="write at this many MB/s (small batches: every segment holds a small chunk of "
                        "every partition) instead of flat out (default: flat out)")
    p.add_argument("--setups", default="agents,fleet,role", help="comma-separated (default %(default)s)")
    p.add_argument("--bucket-args", default="", help="bucket flags, e.g. for S3 (default: a local directory)")
    p.add_argument("--json", action="store_true", help="also print each result as a JSON line")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cluster:
    def __init__(self, args, work: Path, bucket: list[str]):
        self.args, self.work, self.bucket = args, work, bucket
        self.procs: list[tuple[subprocess.Popen, int]] = []  # (process, http port)
        self.agents: list[str] = []

    def spawn(self, name: str, argv: list[str], ready: str, http: int) -> None:
        out = open(self.work / f"{name}.out", "w")
        proc = subprocess.Popen(argv, stdout=out, stderr=open(self.work / f"{name}.log", "w"),
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while ready not in (self.work / f"{name}.out").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{name} did not start; see {self.work / (name + '.log')}")
            time.sleep(0.05)
        self.procs.append((proc, http))

    def start(self, setup: str, agents: int) -> None:
        a = self.args
        meta_port, meta_http = free_port(), free_port()
        self.metadata = f"http://127.0.0.1:{meta_port}"
        self.spawn("metadata", [a.strata, "metadata", "--metadata-listen", f"127.0.0.1:{meta_port}",
                                "--metadata-http-listen", f"127.0.0.1:{meta_http}",
                                "--store", f"sqlite://{self.work}/metadata.db"], "ready", meta_http)
        if setup == "fleet":
            for i in range(a.caches):
                http = free_port()
                self.spawn(f"cache{i}", [a.strata, "cache", "--metadata", self.metadata,
                                         "--cache-listen", f"127.0.0.1:{free_port()}",
                                         "--http-listen", f"127.0.0.1:{http}", *self.bucket], "ready", http)
        for node in range(1, agents + 1):
            port, http = free_port(), free_port()
            role = ["--cache-listen", f"127.0.0.1:{free_port()}"] if setup == "role" else []
            self.spawn(f"agent{node}", [a.strata, "agent", "--metadata", self.metadata, "--node-id", str(node),
                                        "--kafka-listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http}",
                                        "--compaction-interval", "0s", "--heartbeat-interval", "200ms",
                                        *role, *self.bucket], "ready", http)
            self.agents.append(f"127.0.0.1:{port}")
        rings = {"fleet": a.caches, "role": agents}.get(setup, 0)
        deadline = time.monotonic() + 30
        while any(metric(http, "strata_agent_read_ring_members") != rings for _, http in self.procs[-agents:]):
            if time.monotonic() > deadline:
                sys.exit(f"agents' rings did not reach {rings} members")
            time.sleep(0.2)
        # every agent lists every agent (a heartbeat each), so leaders spread over them all
        time.sleep(1.0)

    def gets(self) -> float:
        return sum(metric(http, GET) for _, http in self.procs)

    def cpu(self) -> float:
        return sum(cpu_seconds(proc.pid) for proc, _ in self.procs)

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs, self.agents = [], []


def bench(strata: str, *argv: str) -> dict:
    out = subprocess.run([strata, "bench", *argv, "--json", "--quiet"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="strata-ring-bench."))
    bucket = args.bucket_args.split() or ["--bucket", f"file://{work}/bucket"]
    cluster = Cluster(args, work, bucket)
    try:
        cluster.start("agents", args.write_agents)
        records = args.history_mb * 1_000_000 // 1024
        print(f"writing {records} records of 1 KiB into {args.partitions} partitions", file=sys.stderr)
        pace = ["--rate", str(args.produce_rate), "--duration", f"{args.history_mb // args.produce_rate}s"] \
            if args.produce_rate else ["--records", str(records)]
        bench(args.strata, "produce", "--bootstrap", cluster.agents[0], "--topic", "ring",
              "--partitions", str(args.partitions), "--record-size", "1024", *pace)
        cluster.stop()
        print("| set-up | bucket GETs | GETs per GB of history | MB/s (all consumers) | CPU s (cluster) |")
        print("| --- | --- | --- | --- | --- |")
        for setup in args.setups.split(","):
            cluster.start(setup, args.agents)
            gets, cpu = cluster.gets(), cluster.cpu()
            fetched = [metric(http, "strata_agent_fetch_bytes_total") for _, http in cluster.procs[-args.agents:]]
            started = time.monotonic()
            consumers = [subprocess.Popen([args.strata, "bench", "consume", "--bootstrap", cluster.agents[i % args.agents],
                                           "--topic", "ring", "--from", "earliest", "--until-end", "--json", "--quiet"],
                                          stdout=subprocess.PIPE, text=True) for i in range(args.consumers)]
            reports = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in consumers]
            took = time.monotonic() - started
            if any(c.returncode for c in consumers):
                sys.exit(f"a consumer failed: {[c.returncode for c in consumers]}")
            gets, cpu = cluster.gets() - gets, cluster.cpu() - cpu
            fetched = [metric(http, "strata_agent_fetch_bytes_total") - before
                       for (_, http), before in zip(cluster.procs[-args.agents:], fetched)]
            served = sum(r.get("bytes", 0) for r in reports)
            history_gb = served / args.consumers / 1e9
            row = {"setup": setup, "gets": gets, "gets_per_gb": gets / history_gb if history_gb else 0,
                   "mb_per_s": served / took / 1e6, "cpu_s": cpu, "served_bytes": served,
                   "served_by_agent": fetched}
            print(f"| {setup} | {gets:.0f} | {row['gets_per_gb']:.0f} | {row['mb_per_s']:.0f} | {cpu:.1f} |")
            if args.json:
                print(json.dumps(row))
            sys.stdout.flush()
            cluster.stop()
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
