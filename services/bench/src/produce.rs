//! `strata bench produce`: creates the topic if it is missing, runs the producer clients
//! (see `producer`) until the duration or record count is reached, and waits for the
//! responses to every request sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::args::{ProduceArgs, ProduceStopArgs, ProducerArgs, TargetArgs};
use crate::batch::BatchBuilder;
use crate::cluster::{ensure_topic, share_out, TopicLayout};
use crate::connection::Connection;
use crate::error::BenchError;
use crate::payload::ValuePool;
use crate::producer::{run_client, ClientPlan, ProducerSettings};
use crate::rate::Schedule;
use crate::report::{Progress, Summary};
use crate::stats::Stats;
use crate::tasks::join_all;
use crate::wall_clock::WallClock;

/// What producer latency measures.
pub const PRODUCE_LATENCY: &str = "record created -> produce response";

/// Runs `strata bench produce` and returns its summary. `stop` ends the run early (the
/// responses to requests already sent are still awaited).
pub async fn produce(
    args: &ProduceArgs,
    wall: WallClock,
    stop: CancellationToken,
) -> Result<Summary, BenchError> {
    args.producer.validate()?;
    let layout = prepare_topic(&args.target, &args.producer).await?;
    let stats = Stats::new();
    let _progress = Progress::start(args.target.quiet, vec![("produce", Arc::clone(&stats))]);
    let run = ProducerRun::start(
        &args.target,
        &args.producer,
        &args.stop,
        layout,
        false,
        wall,
        Arc::clone(&stats),
        stop,
    );
    let elapsed = run.finish().await?;
    Ok(Summary::new(
        "produce",
        &args.target.topic,
        &stats,
        elapsed,
        PRODUCE_LATENCY,
    ))
}

/// Connects to the bootstrap broker and returns the topic's layout, creating the topic
/// with `--partitions` partitions if it does not exist.
pub async fn prepare_topic(
    target: &TargetArgs,
    producer: &ProducerArgs,
) -> Result<Arc<TopicLayout>, BenchError> {
    let mut connection = Connection::connect(&target.bootstrap, target.request_timeout).await?;
    let (layout, created) = ensure_topic(
        &mut connection,
        &target.topic,
        producer.partitions,
        target.request_timeout,
    )
    .await?;
    if created && !target.quiet {
        eprintln!(
            "created topic {} with {} partitions",
            target.topic,
            layout.leaders.len()
        );
    }
    Ok(Arc::new(layout))
}

/// Producer clients at work.
#[derive(Debug)]
pub struct ProducerRun {
    started: Instant,
    tasks: JoinSet<Result<(), BenchError>>,
    deadline: Option<JoinHandle<()>>,
}

impl ProducerRun {
    /// Starts `--clients` clients over the topic's partitions. With `stamp_sent_at`, every
    /// record carries its creation time in a header. The run stops by itself at the
    /// duration or record count; cancelling `stop` stops it earlier.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        target: &TargetArgs,
        producer: &ProducerArgs,
        limits: &ProduceStopArgs,
        layout: Arc<TopicLayout>,
        stamp_sent_at: bool,
        wall: WallClock,
        stats: Arc<Stats>,
        stop: CancellationToken,
    ) -> Self {
        let started = Instant::now();
        let clients = producer.clients as usize;
        let settings = Arc::new(ProducerSettings {
            topic: target.topic.clone(),
            acks: producer.acks,
            request_timeout: target.request_timeout,
            linger: producer.linger,
            max_in_flight: producer.max_in_flight as usize,
            retries: producer.retries,
            records_per_batch: BatchBuilder::records_per_batch(
                producer.batch_bytes,
                producer.record_size,
                stamp_sent_at,
            ),
        });
        let values = ValuePool::new(producer.payload, producer.record_size, producer.seed);
        // records per second of one client at the requested rate
        let client_rate = producer
            .rate
            .map(|mb| mb * 1e6 / clients as f64 / producer.record_size.max(1) as f64);
        let mut tasks = JoinSet::new();
        for (index, partitions) in share_out(&layout.partitions(), clients)
            .into_iter()
            .enumerate()
        {
            let schedule = client_rate.map(|rate| {
                // stagger the clients' timetables so they do not send in lockstep
                let phase = Duration::from_secs_f64(index as f64 / clients as f64 / rate);
                Schedule::new(started + phase, rate)
            });
            let plan = ClientPlan {
                partitions,
                limit: client_limit(
                    limits.records.map(|total| share(total, clients, index)),
                    schedule.as_ref(),
                    limits.effective_duration().map(|d| started + d),
                ),
                schedule,
            };
            let builder = BatchBuilder::new(
                values.offset_by(index * 4099),
                producer.compression.codec(),
                wall,
                stamp_sent_at,
            );
            tasks.spawn(run_client(
                Arc::clone(&settings),
                Arc::clone(&layout),
                plan,
                builder,
                Arc::clone(&stats),
                stop.clone(),
            ));
        }
        let deadline = limits.effective_duration().map(|duration| {
            tokio::spawn(async move {
                tokio::time::sleep(duration).await;
                stop.cancel();
            })
        });
        Self {
            started,
            tasks,
            deadline,
        }
    }

    /// Waits for every client to finish and returns the time from the start to the last
    /// response. The first client error ends the other clients and is returned.
    pub async fn finish(mut self) -> Result<Duration, BenchError> {
        let result = join_all(&mut self.tasks).await;
        let elapsed = self.started.elapsed();
        if let Some(deadline) = self.deadline.take() {
            deadline.abort();
        }
        result.map(|()| elapsed)
    }
}

/// The records a client produces: its share of `--records`, and at a fixed rate no record
/// due at or after the end of the run, so a timed run produces exactly rate x duration
/// however late the stop signal is noticed.
fn client_limit(
    share: Option<u64>,
    schedule: Option<&Schedule>,
    end: Option<Instant>,
) -> Option<u64> {
    let in_time = match (schedule, end) {
        (Some(schedule), Some(end)) => {
            Some(schedule.due_count(end.checked_sub(Duration::from_nanos(1)).unwrap_or(end)))
        }
        _ => None,
    };
    match (share, in_time) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Client `index`'s share of `total` among `parts` (the first ones get the remainder).
fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts.max(1) as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_counts_are_split_exactly() {
        let shares: Vec<u64> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!(shares.iter().sum::<u64>(), 10);
        assert_eq!(share(2, 4, 3), 0);
    }

    #[test]
    fn a_timed_fixed_rate_run_produces_rate_times_duration() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0);
        let end = Some(start + Duration::from_secs(2));
        assert_eq!(client_limit(None, Some(&schedule), end), Some(2000));
        assert_eq!(client_limit(Some(500), Some(&schedule), end), Some(500));
        assert_eq!(client_limit(Some(500), None, end), Some(500));
        assert_eq!(client_limit(None, None, end), None);
    }
}
