//! `strata bench consume`: reads partitions of an existing topic from a start offset and
//! reports the throughput (the replay measurement).
//!
//! Partitions are shared out among `--clients` consumers; each consumer has one fetcher
//! per leader it reads from. Start offsets (earliest, latest) and, with `--until-end`, the
//! end offsets are taken with ListOffsets before the first fetch.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::args::{ConsumeArgs, FetchArgs, StartFrom, TargetArgs};
use crate::cluster::{existing_topic, list_offsets, share_out, TopicLayout, EARLIEST, LATEST};
use crate::connection::Connection;
use crate::consumer::{run_fetcher, EndOffsets, FetchSettings, LatencySource};
use crate::error::BenchError;
use crate::report::{Progress, Summary};
use crate::stats::Stats;
use crate::tasks::join_all;

/// What consumer latency measures in `strata bench consume`.
pub const FETCH_LATENCY: &str = "fetch request -> fetch response";

/// Runs `strata bench consume` and returns its summary. `stop` ends the run early.
pub async fn consume(args: &ConsumeArgs, stop: CancellationToken) -> Result<Summary, BenchError> {
    args.validate()?;
    let target = &args.target;
    let mut connection = Connection::connect(&target.bootstrap, target.request_timeout).await?;
    let layout = existing_topic(&mut connection, &target.topic, target.request_timeout).await?;
    drop(connection);
    let partitions = if args.partitions.is_empty() {
        layout.partitions()
    } else {
        for partition in &args.partitions {
            layout.leader(*partition)?;
        }
        args.partitions.clone()
    };
    let starts = start_offsets(&layout, &partitions, args.from, target).await?;
    let ends = if args.until_end {
        Some(list_offsets(&layout, &partitions, LATEST, target.request_timeout).await?)
    } else {
        None
    };
    let (_ends_tx, ends_rx) = watch::channel(ends);
    let stats = Stats::new();
    let _progress = Progress::start(target.quiet, vec![("consume", Arc::clone(&stats))]);
    let settings = Arc::new(FetchSettings {
        topic: target.topic.clone(),
        fetch: args.fetch.clone(),
        request_timeout: target.request_timeout,
        latency: LatencySource::FetchRoundTrip,
        budget: args.records.map(AtomicU64::new),
    });
    let stop = stop.child_token();
    if let Some(duration) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        });
    }
    let started = Instant::now();
    let mut tasks = spawn_fetchers(
        &layout,
        &starts,
        args.clients as usize,
        &settings,
        &ends_rx,
        &stats,
        &stop,
    )?;
    let result = join_all(&mut tasks).await;
    let elapsed = started.elapsed();
    stop.cancel();
    result?;
    Ok(Summary::new(
        "consume",
        &target.topic,
        &stats,
        elapsed,
        FETCH_LATENCY,
    ))
}

/// Each partition's first offset to read.
async fn start_offsets(
    layout: &TopicLayout,
    partitions: &[i32],
    from: StartFrom,
    target: &TargetArgs,
) -> Result<BTreeMap<i32, i64>, BenchError> {
    match from {
        StartFrom::Earliest => {
            list_offsets(layout, partitions, EARLIEST, target.request_timeout).await
        }
        StartFrom::Latest => list_offsets(layout, partitions, LATEST, target.request_timeout).await,
        StartFrom::Offset(offset) => Ok(partitions.iter().map(|p| (*p, offset)).collect()),
    }
}

/// Starts one fetcher per (consumer, leader): the partitions in `starts` are shared out
/// among at most `consumers` consumers (never more consumers than partitions, so no
/// record is read twice).
pub fn spawn_fetchers(
    layout: &TopicLayout,
    starts: &BTreeMap<i32, i64>,
    consumers: usize,
    settings: &Arc<FetchSettings>,
    ends: &EndOffsets,
    stats: &Arc<Stats>,
    stop: &CancellationToken,
) -> Result<JoinSet<Result<(), BenchError>>, BenchError> {
    let partitions: Vec<i32> = starts.keys().copied().collect();
    let mut tasks = JoinSet::new();
    for share in share_out(&partitions, consumers.min(partitions.len())) {
        let mut by_leader: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
        for partition in share {
            let start = starts.get(&partition).copied().unwrap_or(0);
            by_leader
                .entry(layout.leader(partition)?.to_string())
                .or_default()
                .insert(partition, start);
        }
        for (address, starts) in by_leader {
            tasks.spawn(run_fetcher(
                Arc::clone(settings),
                address,
                starts,
                ends.clone(),
                Arc::clone(stats),
                stop.clone(),
            ));
        }
    }
    Ok(tasks)
}

/// The fetch settings of `args` as the fetchers take them.
pub fn fetch_settings(
    target: &TargetArgs,
    fetch: &FetchArgs,
    latency: LatencySource,
) -> FetchSettings {
    FetchSettings {
        topic: target.topic.clone(),
        fetch: fetch.clone(),
        request_timeout: target.request_timeout,
        latency,
        budget: None,
    }
}
