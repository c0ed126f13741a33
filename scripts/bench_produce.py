#!/usr/bin/env python3
"""Produce benchmark for a Kafka-compatible broker, using confluent-kafka (librdkafka).

Creates the topic if it is missing, produces fixed-size records either flat
out (--rate 0) or at a fixed rate, and prints throughput and produce latency
(time from produce() to the delivery report, as measured by librdkafka).

Examples:
  scripts/bench_produce.py --bootstrap 127.0.0.1:9092 --topic bench --duration 20
  scripts/bench_produce.py --bootstrap 127.0.0.1:9092 --topic bench --records 100000 --rate 10000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="bootstrap HOST:PORT (default %(default)s)")
    p.add_argument("--topic", default="bench", help="topic name (default %(default)s)")
    p.add_argument("--partitions", type=int, default=3,
                   help="partitions when the topic has to be created (default %(default)s)")
    p.add_argument("--record-size", type=int, default=1024, help="value bytes per record (default %(default)s)")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--records", type=int, help="number of records to produce")
    amount.add_argument("--duration", type=float, help="seconds to produce for (default 10 if --records is not given)")
    p.add_argument("--acks", default="all", choices=["0", "1", "all", "-1"], help="producer acks (default %(default)s)")
    p.add_argument("--rate", type=float, default=0, help="records per second; 0 = flat out (default)")
    p.add_argument("--linger-ms", type=float, default=5, help="producer linger.ms (default %(default)s)")
    p.add_argument("--compression", default="none", help="producer compression.type (default %(default)s)")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = p.parse_args(argv)
    if args.records is None and args.duration is None:
        args.duration = 10.0
    if args.record_size < 0 or args.rate < 0 or args.partitions < 1:
        p.error("--record-size and --rate must be >= 0, --partitions >= 1")
    return args


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> int:
    """Creates the topic if missing; returns its partition count."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=30)
    if topic not in md.topics or md.topics[topic].error is not None:
        fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  request_timeout=30)[topic]
        try:
            fut.result(timeout=30)
            print(f"created topic {topic} with {partitions} partitions", file=sys.stderr)
        except KafkaException as e:
            if e.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: someone else created it
                raise
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = admin.list_topics(topic=topic, timeout=30)
            if topic in md.topics and md.topics[topic].error is None and md.topics[topic].partitions:
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"topic {topic} did not appear in metadata")
    return len(md.topics[topic].partitions)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = math.ceil(q * len(sorted_values))  # nearest-rank percentile
    return sorted_values[min(len(sorted_values), max(rank, 1)) - 1]


def run(args: argparse.Namespace) -> dict:
    partitions = ensure_topic(args.bootstrap, args.topic, args.partitions)
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "linger.ms": args.linger_ms,
        "compression.type": args.compression,
        "enable.idempotence": False,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.timeout.ms": 120_000,
    })
    # distinct random values, cycled: a single repeated value would compress to nothing in
    # the broker's zstd chunks and flatter the throughput figures
    pool_size = 16384
    pool = os.urandom(args.record_size * pool_size)
    values = [pool[i * args.record_size:(i + 1) * args.record_size] for i in range(pool_size)]
    latencies: list[float] = []
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            latencies.append(msg.latency())

    sent = 0
    start = time.perf_counter()
    end_at = start + args.duration if args.duration is not None else None
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    while True:
        now = time.perf_counter()
        if args.records is not None and sent >= args.records:
            break
        if end_at is not None and now >= end_at:
            break
        if interval:
            due = start + sent * interval
            if now < due:
                producer.poll(min(due - now, 0.01))
                continue
        try:
            producer.produce(args.topic, value=values[sent % pool_size], on_delivery=on_delivery)
            sent += 1
        except BufferError:
            producer.poll(0.01)
            continue
        if sent % 1000 == 0:
            producer.poll(0)
    produce_done = time.perf_counter()
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start

    delivered = len(latencies)
    lat_ms = sorted(x * 1000 for x in latencies)
    result = {
        "topic": args.topic,
        "partitions": partitions,
        "record_size": args.record_size,
        "acks": args.acks,
        "target_rate": args.rate,
        "sent": sent,
        "delivered": delivered,
        "errors": len(errors),
        "undelivered": remaining,
        "seconds": round(elapsed, 3),
        "send_seconds": round(produce_done - start, 3),
        "records_per_s": round(delivered / elapsed, 1) if elapsed else 0.0,
        "mb_per_s": round(delivered * args.record_size / elapsed / 1e6, 2) if elapsed else 0.0,
        "latency_ms_p50": round(percentile(lat_ms, 0.50), 2),
        "latency_ms_p99": round(percentile(lat_ms, 0.99), 2),
        "latency_ms_max": round(lat_ms[-1], 2) if lat_ms else float("nan"),
    }
    if errors:
        result["first_error"] = errors[0]
    return result


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    r = run(args)
    mode = "flat out" if not args.rate else f"{args.rate:g} records/s target"
    print(f"produce {r['topic']} ({r['partitions']} partitions), {r['record_size']} B records, acks={r['acks']}, {mode}")
    print(f"  records: {r['delivered']} delivered of {r['sent']} sent in {r['seconds']:.2f}s "
          f"({r['errors']} errors, {r['undelivered']} undelivered)")
    print(f"  throughput: {r['records_per_s']:.0f} records/s, {r['mb_per_s']:.2f} MB/s")
    print(f"  latency (produce -> delivery): p50 {r['latency_ms_p50']:.2f} ms, "
          f"p99 {r['latency_ms_p99']:.2f} ms, max {r['latency_ms_max']:.2f} ms")
    if "first_error" in r:
        print(f"  first error: {r['first_error']}")
    if args.json:
        print(json.dumps(r))
    return 0 if not r["errors"] and not r["undelivered"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
