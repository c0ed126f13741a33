//! `strata bench e2e`: producers and consumers at once. Every record carries its creation
//! time in a header; consumers start at the high watermark taken before the producers
//! start, and put `arrival - creation` of every record into the latency histogram.
//!
//! When the producers are done (duration, record count or a stop), the high watermarks
//! are taken again and the consumers read up to them, for at most `--drain-timeout`.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::args::E2eArgs;
use crate::cluster::{list_offsets, LATEST};
use crate::consume::{fetch_settings, spawn_fetchers};
use crate::consumer::LatencySource;
use crate::error::BenchError;
use crate::produce::{prepare_topic, ProducerRun, PRODUCE_LATENCY};
use crate::report::{E2eSummary, Progress, Summary};
use crate::stats::Stats;
use crate::tasks::join_all;
use crate::wall_clock::WallClock;

/// What consumer latency measures in `strata bench e2e`.
pub const E2E_LATENCY: &str = "record created -> record fetched by a consumer";

/// Runs `strata bench e2e` and returns both sides' summaries. `stop` ends the run early.
pub async fn e2e(
    args: &E2eArgs,
    wall: WallClock,
    stop: CancellationToken,
) -> Result<E2eSummary, BenchError> {
    args.producer.validate()?;
    args.fetch.validate()?;
    let target = &args.target;
    let layout = prepare_topic(target, &args.producer).await?;
    let partitions = layout.partitions();
    let starts = list_offsets(&layout, &partitions, LATEST, target.request_timeout).await?;

    let produced = Stats::new();
    let consumed = Stats::new();
    let _progress = Progress::start(
        target.quiet,
        vec![
            ("produce", Arc::clone(&produced)),
            ("consume", Arc::clone(&consumed)),
        ],
    );
    let (ends_tx, ends_rx) = watch::channel(None);
    let consumers_stop = stop.child_token();
    let settings = Arc::new(fetch_settings(
        target,
        &args.fetch,
        LatencySource::EndToEnd(wall),
    ));
    let consumers_started = Instant::now();
    let mut consumers = spawn_fetchers(
        &layout,
        &starts,
        args.consumers as usize,
        &settings,
        &ends_rx,
        &consumed,
        &consumers_stop,
    )?;

    let producers = ProducerRun::start(
        target,
        &args.producer,
        &args.stop,
        Arc::clone(&layout),
        true,
        wall,
        Arc::clone(&produced),
        stop.child_token(),
    );
    let produced_in = match producers.finish().await {
        Ok(elapsed) => elapsed,
        Err(error) => {
            consumers_stop.cancel();
            return Err(error);
        }
    };

    let ends = list_offsets(&layout, &partitions, LATEST, target.request_timeout).await?;
    let _ = ends_tx.send(Some(ends));
    let drained = tokio::time::timeout(args.drain_timeout, join_all(&mut consumers)).await;
    consumers_stop.cancel();
    match drained {
        Ok(result) => result?,
        Err(_) => {
            eprintln!(
                "consumers did not reach the producers' last offsets within {:?}; reporting what they read",
                args.drain_timeout
            );
            join_all(&mut consumers).await?;
        }
    }
    let consumed_in = consumers_started.elapsed();
    Ok(E2eSummary {
        mode: "e2e",
        produce: Summary::new(
            "produce",
            &target.topic,
            &produced,
            produced_in,
            PRODUCE_LATENCY,
        ),
        consume: Summary::new(
            "consume",
            &target.topic,
            &consumed,
            consumed_in,
            E2E_LATENCY,
        ),
    })
}
