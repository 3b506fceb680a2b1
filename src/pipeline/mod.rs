//! Wiring: bounded channels between dedicated stage threads, shutdown, and the summary.
//!
//! ```text
//! shard paths -> [readers xR] -> samples -> [workers xW] -> prepared -> [inference x1]
//!             -> rows -> [writer x1] -> Parquet + manifest
//! ```
//! Every edge is a bounded async-channel, so memory stays flat however many shards there
//! are: at most `R + cap(samples) + W + cap(prepared) + 1` samples are alive at once. Stages
//! are the functions of [`stages`], run on tokio's blocking pool; each owns its channel ends
//! and stops when its input closes or its send fails. Readers also tell the writer how many
//! samples each shard held, so the writer knows when a shard is complete. Shutdown stops
//! the readers only and the rest drains; shards not read to the end are left out (and
//! redone by `--resume`). The first fatal error or panic wins ([`Control`]) and stops the
//! readers. The summary counts what the sink committed, nothing else.

pub mod control;
pub mod stages;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{bounded, Receiver, Sender};
use tokio::task::JoinHandle;

use crate::batch::{Group, Inference};
use crate::error::FatalError;
use crate::item::{Prepared, SinkMsg};
use crate::ops::variants::{is_multi_row, ORIGINAL_ALL};
pub use crate::progress::Counters;
use crate::run::claim::Claim;
use crate::run::plan::RunPlan;
use crate::sink::{ParquetSink, SinkConfig, SinkReport};
pub use control::Control;
use stages::ReadTotals;

pub use crate::run::summary::{Accuracy, RunSummary};

/// How a run ends early when its `shutdown` future resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop reading; everything already read is predicted and complete shards are written
    /// (Ctrl-C, SIGTERM).
    Drain,
    /// Stop reading and drop the work in flight at the next batch boundary
    /// ([`Control::abandon`]): a measurement's time budget.
    Abandon,
}

/// Executes a claimed plan to the end, or until `shutdown` resolves (then drains or
/// abandons, as it says, and closes).
pub async fn run(
    plan: RunPlan,
    claim: Claim,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = Stop>,
) -> Result<RunSummary, FatalError> {
    let start = Instant::now();
    let ctl = Control::default();
    let RunPlan {
        cfg,
        groups,
        other_devices,
        prepare,
        identity,
    } = plan;
    // One name per output slot: `worst_bg:K` repeats its name K times.
    let variants: Vec<Arc<str>> = (prepare.slots().iter())
        .map(|&(vi, _)| prepare.variants[vi].name().into())
        .collect();
    let models: Vec<Arc<str>> = groups.iter().flatten().map(|m| m.name().into()).collect();
    let sink = ParquetSink::new(SinkConfig {
        dir: cfg.out.clone(),
        rows_per_file: cfg.rows_per_file,
        batch_rows: 8192,
        run_sha256: identity.sha256(),
        variants: variants.clone(),
        models: models.clone(),
        manifest: cfg.rank.manifest_name(),
    })?;
    let workers = cfg.workers.max(1);
    let readers = cfg.readers.clamp(1, claim.todo.len().max(1));
    let (sample_tx, sample_rx) = bounded(workers * 2);
    let (prep_tx, prep_rx) = bounded::<Prepared>(workers * 2);
    let (sink_tx, sink_rx) = bounded::<SinkMsg>(sink_capacity(cfg.batch_size));
    let read = {
        let (paths, ctl2, counters) = (queue(&claim.todo), ctl.clone(), counters.clone());
        let sink_tx = sink_tx.clone();
        let keys = Arc::new(stages::KeyIndex::default());
        let limits = cfg.read_limits.clone();
        ctl.spawn_n(readers, move || {
            stages::read_shards(paths, sample_tx, sink_tx, ctl2, counters, keys, limits)
        })
    };
    let ctl2 = ctl.clone();
    let cpu = ctl.spawn_n(workers, move || {
        stages::prepare_samples(sample_rx, prep_tx, prepare, ctl2)
    });
    let devices = std::iter::once((cfg.devices[0], groups)).chain(other_devices);
    let workers: Vec<Inference> = devices
        .map(|(device, groups)| {
            let groups = (groups.into_iter())
                .map(|models| Group::new(models, cfg.batch_size, device))
                .collect();
            Inference::new(groups, variants.clone(), device, counters.clone())
                .dump_inputs(cfg.dump_inputs.clone())
                .dump_logits(cfg.dump_logits.clone())
        })
        .collect();
    let infer = spawn_inference(&ctl, workers, prep_rx, sink_tx, cfg.fail_fast, &counters);
    let writer = {
        let (ctl2, counters) = (ctl.clone(), counters.clone());
        ctl.spawn(move || stages::write(sink_rx, sink, ctl2, counters))
    };
    let (reads, interrupted) = until_read(read, shutdown, &ctl).await?;
    for h in cpu.into_iter().chain(infer) {
        h.await.map_err(join_error)?;
    }
    let report = writer.await.map_err(join_error)?;
    if let Some(e) = ctl.take_error() {
        return Err(e);
    }
    let report = report.ok_or_else(|| FatalError::Panic("the writer stopped".into()))?;
    let mut summary = RunSummary::committed(report, reads, &models, &variants);
    summary.shards = claim.todo.len() + claim.completed.len();
    summary.shards_skipped = claim.completed.len();
    summary.elapsed = start.elapsed();
    summary.interrupted = interrupted;
    summary.in_flight_max = counters.in_flight_max.load(Ordering::Relaxed);
    Ok(summary)
}

/// Rows the devices may produce while the writer is busy committing a shard (its fsyncs):
/// about 0.1 s at 200,000 rows/s, many small models on a fast GPU.
const COMMIT_STALL_ROWS: usize = 20_000;

/// Messages the rows channel holds: one message is a batch's rows (or one filtered image,
/// or one shard's end), so the channel is sized in batches, to absorb
/// [`COMMIT_STALL_ROWS`] without stalling inference; about 100 bytes a row, 2 MB at most.
fn sink_capacity(batch_size: usize) -> usize {
    COMMIT_STALL_ROWS
        .div_ceil(batch_size.max(1))
        .clamp(16, 4096)
}

/// A closed channel holding `items`: the readers' work list.
fn queue<T: Clone>(items: &[T]) -> Receiver<T> {
    let (tx, rx) = bounded(items.len().max(1));
    for item in items {
        tx.try_send(item.clone()).expect("sized to the list");
    }
    rx
}

/// One inference stage per device worker, sharing the prepared-item and row channels.
fn spawn_inference(
    ctl: &Control,
    workers: Vec<Inference>,
    input: Receiver<Prepared>,
    sink: Sender<SinkMsg>,
    fail_fast: bool,
    counters: &Arc<Counters>,
) -> Vec<JoinHandle<Option<()>>> {
    let spawn = |worker: Inference| {
        let (input, sink, ctl2, counters) =
            (input.clone(), sink.clone(), ctl.clone(), counters.clone());
        ctl.spawn(move || stages::infer(input, sink, worker, fail_fast, ctl2, counters))
    };
    workers.into_iter().map(spawn).collect()
}

/// Waits for the readers, or for `shutdown` (then stops them and waits); whether the run
/// was interrupted.
async fn until_read(
    readers: Vec<JoinHandle<Option<ReadTotals>>>,
    shutdown: impl std::future::Future<Output = Stop>,
    ctl: &Control,
) -> Result<(Vec<ReadTotals>, bool), FatalError> {
    let all = async {
        let mut totals = Vec::new();
        for h in readers {
            totals.extend(h.await.map_err(join_error)?);
        }
        Ok::<_, FatalError>(totals)
    };
    tokio::pin!(all);
    tokio::pin!(shutdown);
    tokio::select! {
        r = &mut all => Ok((r?, false)),
        how = &mut shutdown => {
            match how {
                Stop::Drain => ctl.stop(),
                Stop::Abandon => ctl.abandon(),
            }
            Ok(((&mut all).await?, true))
        }
    }
}

/// The accuracy table's columns: the run's variants (`worst_bg:K` is aggregate's), with
/// `all` after `original` when `--original-all` classified images outside the filter, then
/// released variants.
fn table_columns<'a>(
    t: &'a crate::sink::Tally,
    slots: &'a [Arc<str>],
    all: &'a Arc<str>,
) -> Vec<&'a Arc<str>> {
    let mut variants: Vec<&Arc<str>> = Vec::new();
    for v in slots.iter().filter(|v| !is_multi_row(v)) {
        if !variants.contains(&v) {
            variants.push(v);
        }
        if &**v == "original" && t.outside_classified > 0 && !variants.contains(&all) {
            variants.push(all);
        }
    }
    // Released variants' rows (`released:<name>`), after the run's own, by name.
    let mut released: Vec<&Arc<str>> = (t.accuracy.keys())
        .map(|(_, v)| v)
        .filter(|v| v.starts_with(crate::source::RELEASED_PREFIX))
        .collect();
    released.sort();
    released.dedup();
    if !released.is_empty() {
        // Released images are classified on original alone: the run's own variants
        // keep a column only where other images gave them rows.
        variants.retain(|v| t.accuracy.keys().any(|(_, x)| x == *v));
    }
    variants.extend(released);
    variants
}

fn join_error(e: tokio::task::JoinError) -> FatalError {
    FatalError::Panic(e.to_string())
}

impl RunSummary {
    /// The summary of what the sink committed this run (timings and shard totals are the
    /// caller's).
    fn committed(
        report: SinkReport,
        reads: Vec<ReadTotals>,
        models: &[Arc<str>],
        slots: &[Arc<str>],
    ) -> Self {
        let t = &report.tally;
        let slot_errors = |code: &str| -> Vec<(String, u64)> {
            (t.slot_errors.iter())
                .filter(|((c, _), _)| *c == code)
                .map(|((_, k), v)| (k.to_string(), *v))
                .collect()
        };
        let all: Arc<str> = ORIGINAL_ALL.into();
        let variants = table_columns(t, slots, &all);
        let accuracy = models
            .iter()
            .flat_map(|m| variants.iter().map(move |v| (m, *v)))
            .map(|(m, v)| {
                let (images, top1, top5) = (t.accuracy.get(&(m.clone(), v.clone())))
                    .copied()
                    .unwrap_or_default();
                Accuracy {
                    model: m.to_string(),
                    variant: v.to_string(),
                    images,
                    top1,
                    top5,
                }
            })
            .collect();
        let mut shard_errors: Vec<(String, String)> =
            reads.iter().flat_map(|r| r.shard_errors.clone()).collect();
        shard_errors.sort();
        RunSummary {
            shards: 0,
            shards_skipped: 0,
            shards_completed: report.completed.len(),
            shards_incomplete: report.incomplete.clone(),
            samples_read: t.samples,
            filtered: t.filtered,
            outside_classified: t.outside_classified,
            failed: t.failed,
            predicted_images: t.samples - t.filtered - t.failed,
            rows_written: report.rows_written,
            files: report.files.clone(),
            shard_errors,
            skipped_members: reads.iter().map(|r| r.skipped_members).sum(),
            duplicate_keys: reads.iter().map(|r| r.duplicate_keys).sum(),
            duplicate_examples: {
                let mut e: Vec<_> = (reads.iter())
                    .flat_map(|r| r.duplicate_examples.clone())
                    .collect();
                e.sort();
                e.truncate(3);
                e
            },
            failures_by_code: (t.failures.iter())
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            no_donor: slot_errors("no_donor"),
            no_mask: slot_errors("no_mask"),
            released: slot_errors("released"),
            accuracy,
            elapsed: Duration::ZERO,
            interrupted: false,
            in_flight_max: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_channel_holds_a_commit_stall_of_batches() {
        // 256-image batches: 79 messages hold 20,000 rows.
        assert_eq!(sink_capacity(256), 79);
        assert!(sink_capacity(256) * 256 >= COMMIT_STALL_ROWS);
        // Never fewer than 16 messages (filtered images are one message each), never
        // unbounded for tiny batches.
        assert_eq!(sink_capacity(100_000), 16);
        assert_eq!(sink_capacity(1), 4096);
        assert_eq!(sink_capacity(0), 4096);
    }
}
