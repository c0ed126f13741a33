#!/usr/bin/env python3
"""Replay benchmark for a Kafka-compatible broker, using confluent-kafka (librdkafka).

Starts N consumer processes that each read every partition of a topic from offset 0 to
the high watermark measured at start (assign(), no group), and prints the aggregate and
per-consumer throughput in MB of record values. With --metrics-url (the agent's
/metrics) it also prints the bucket GETs and bytes the replay caused, per GB delivered.

Fill the topic first, e.g. with scripts/bench_produce.py. For figures "from the bucket",
restart the node before each run: its read cache survives between runs.

Examples:
  scripts/bench_replay.py --topic flat --consumers 1 --metrics-url http://127.0.0.1:9095/metrics
  scripts/bench_replay.py --topic flat --consumers 10 --json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import sys
import time
import urllib.request

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="bootstrap HOST:PORT (default %(default)s)")
    p.add_argument("--topic", default="bench", help="topic to replay (default %(default)s)")
    p.add_argument("--consumers", type=int, default=1, help="consumer processes (default %(default)s)")
    p.add_argument("--metrics-url", help="the agent's /metrics URL, to count bucket GETs")
    p.add_argument("--timeout", type=float, default=600, help="give up after this many seconds (default %(default)s)")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = p.parse_args(argv)
    if args.consumers < 1:
        p.error("--consumers must be >= 1")
    return args


def consumer_conf(bootstrap: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": "bench-replay-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
    }


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer(consumer_conf(bootstrap))
    try:
        md = consumer.list_topics(topic, timeout=30)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise SystemExit(f"topic {topic} not found")
        ends = {}
        for p in md.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            ends[p] = high
        return ends
    finally:
        consumer.close()


def replay(bootstrap: str, topic: str, ends: dict[int, int], start, results, timeout: float) -> None:
    """One consumer process: read to `ends`, report (bytes, records, seconds)."""
    consumer = Consumer(consumer_conf(bootstrap))
    consumer.list_topics(topic, timeout=30)  # connect before the clock starts
    next_offset = {p: 0 for p in ends}
    value_bytes = records = 0
    start.wait()
    began = time.perf_counter()
    # librdkafka starts fetching (and filling its local queue) as soon as partitions are
    # assigned, so assign only once the clock runs
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    deadline = began + timeout
    while any(next_offset[p] < end for p, end in ends.items()):
        if time.perf_counter() > deadline:
            break
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            value = msg.value()
            value_bytes += len(value) if value else 0
            records += 1
            next_offset[msg.partition()] = msg.offset() + 1
    elapsed = time.perf_counter() - began
    consumer.close()
    results.put((value_bytes, records, elapsed))


def scrape(url: str | None) -> dict[str, float]:
    if not url:
        return {}
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    wanted = {
        "gets": r'^strata_object_store_requests_total\{op="get"\} (\S+)$',
        "get_bytes": r'^strata_object_store_bytes_total\{op="get"\} (\S+)$',
        "fetch_bytes": r"^strata_agent_fetch_bytes_total (\S+)$",
    }
    out = {}
    for name, pattern in wanted.items():
        m = re.search(pattern, text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def run(args: argparse.Namespace) -> dict:
    ends = end_offsets(args.bootstrap, args.topic)
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=replay, args=(args.bootstrap, args.topic, ends, start, results, args.timeout))
             for _ in range(args.consumers)]
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # let every consumer connect and fetch metadata before the clock starts
    before = scrape(args.metrics_url)
    began = time.perf_counter()
    start.set()
    outcomes = [results.get(timeout=args.timeout + 60) for _ in procs]
    wall = time.perf_counter() - began
    after = scrape(args.metrics_url)
    for proc in procs:
        proc.join()
    total_bytes = sum(b for b, _, _ in outcomes)
    total_records = sum(r for _, r, _ in outcomes)
    expected = sum(ends.values()) * args.consumers
    result = {
        "topic": args.topic,
        "consumers": args.consumers,
        "records": total_records,
        "complete": total_records == expected,
        "value_bytes": total_bytes,
        "seconds": round(wall, 3),
        "mb_per_s": round(total_bytes / wall / 1e6, 1) if wall else 0.0,
        "per_consumer_mb_per_s": [round(b / s / 1e6, 1) if s else 0.0 for b, _, s in outcomes],
    }
    if before and after:
        gets = after["gets"] - before["gets"]
        get_bytes = after["get_bytes"] - before["get_bytes"]
        served = after["fetch_bytes"] - before["fetch_bytes"]
        result.update({
            "bucket_gets": int(gets),
            "bucket_get_bytes": int(get_bytes),
            "fetch_bytes": int(served),
            "gets_per_gb_served": round(gets / (served / 1e9), 1) if served else None,
            "bucket_bytes_per_byte_served": round(get_bytes / served, 3) if served else None,
        })
    return result


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    r = run(args)
    print(f"replay {r['topic']} with {r['consumers']} consumer(s): {r['records']} records "
          f"({'complete' if r['complete'] else 'INCOMPLETE'}) in {r['seconds']:.2f}s")
    print(f"  throughput: {r['mb_per_s']:.1f} MB/s of values in all; per consumer "
          f"{', '.join(str(x) for x in r['per_consumer_mb_per_s'])} MB/s")
    if "bucket_gets" in r:
        print(f"  bucket: {r['bucket_gets']} GETs, {r['bucket_get_bytes'] / 1e6:.1f} MB for "
              f"{r['fetch_bytes'] / 1e6:.1f} MB served: {r['gets_per_gb_served']} GETs per GB served, "
              f"{r['bucket_bytes_per_byte_served']} bucket bytes per byte served")
    if args.json:
        print(json.dumps(r))
    return 0 if r["complete"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
