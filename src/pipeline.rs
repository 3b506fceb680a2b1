//! Wiring: bounded channels between dedicated stage threads, shutdown, and the summary.
//!
//! ```text
//! shard paths -> [readers xR] -> samples -> [workers xW] -> prepared -> [inference x1]
//!             -> rows -> [writer x1] -> Parquet + manifest
//! ```
//! Every edge is a bounded async-channel, so memory stays flat however many shards there
//! are: at most `R + cap(samples) + W + cap(prepared) + 1` samples are alive at once. Stages
//! are blocking loops on tokio's blocking pool; a loop stops when its input closes or its
//! send fails. Readers also tell the writer how many samples each shard held, so the writer
//! knows when a shard is complete. Shutdown stops the readers only and the rest drains;
//! shards not read to the end are left out (and redone by `--resume`). The first fatal
//! error wins and stops everything upstream of it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tch::Device;

use crate::batch::{Group, Inference};
use crate::claim::Claim;
use crate::error::FatalError;
use crate::item::{Prepared, SinkMsg};
use crate::plan::{group_models, RunPlan};
use crate::prepare::{prepare, Scratch};
use crate::sink::{ParquetSink, SinkConfig};
use crate::source::tar_reader::read_shard;

/// Live counters, read by the progress display.
#[derive(Debug, Default)]
pub struct Counters {
    pub samples_read: AtomicU64,
    pub filtered: AtomicU64,
    pub failed: AtomicU64,
    pub predicted_images: AtomicU64,
    /// Rows with a prediction (image x variant x model forward passes read back).
    pub forwards: AtomicU64,
    pub rows_written: AtomicU64,
    /// Samples alive between reader and inference (backpressure check).
    pub in_flight: AtomicU64,
    pub in_flight_max: AtomicU64,
}

/// Accuracy of one (model, variant) over the rows with a prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Accuracy {
    pub model: String,
    pub variant: String,
    pub images: u64,
    pub top1: u64,
    pub top5: u64,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub shards: usize,
    /// Shards an earlier run had completed (`--resume`).
    pub shards_skipped: usize,
    pub shards_completed: usize,
    /// Shards not finished (interrupted): nothing of theirs was written.
    pub shards_incomplete: Vec<String>,
    pub samples_read: u64,
    pub filtered: u64,
    pub failed: u64,
    pub predicted_images: u64,
    pub rows_written: u64,
    pub files: Vec<PathBuf>,
    pub shard_errors: Vec<(String, String)>,
    pub skipped_members: u64,
    pub failures_by_code: Vec<(String, u64)>,
    /// Rows per variant whose slot found no donor background (status `no_donor`).
    pub no_donor: Vec<(String, u64)>,
    pub accuracy: Vec<Accuracy>,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub in_flight_max: u64,
}

#[derive(Default)]
struct FirstError(Mutex<Option<FatalError>>);

impl FirstError {
    fn set(&self, e: FatalError, stop: &AtomicBool) {
        stop.store(true, Ordering::SeqCst);
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn take(&self) -> Option<FatalError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn join_error(e: tokio::task::JoinError) -> FatalError {
    FatalError::Panic(e.to_string())
}

/// (model, variant) -> (images, top-1 hits, top-5 hits).
type Tally = HashMap<(Arc<str>, Arc<str>), (u64, u64, u64)>;

fn tally_rows(tally: &mut Tally, no_donor: &mut HashMap<Arc<str>, u64>, msg: &SinkMsg) {
    if let SinkMsg::Rows(rows) = msg {
        for r in rows {
            if let Err(e) = &r.outcome {
                if e.code == "no_donor" {
                    *no_donor.entry(r.variant.clone()).or_default() += 1;
                }
            }
            // worst_bg:K is one verdict over K rows: `bgstream aggregate` computes it.
            if r.variant.starts_with("worst_bg:") {
                continue;
            }
            if let Ok(p) = &r.outcome {
                let t = tally
                    .entry((r.model.clone(), r.variant.clone()))
                    .or_default();
                let label = r.meta.label.unwrap_or(-1);
                t.0 += 1;
                t.1 += u64::from(p.top5[0] == label);
                t.2 += u64::from(p.top5.contains(&label));
            }
        }
    }
}

/// Executes a claimed plan to the end, or until `shutdown` resolves (then drains and
/// closes).
pub async fn run(
    plan: RunPlan,
    claim: Claim,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunSummary, FatalError> {
    let start = Instant::now();
    let metadata = plan.metadata_json(&claim.todo);
    let RunPlan {
        cfg,
        groups,
        prepare: prep,
        ..
    } = plan;
    let shards = claim.todo;
    // One name per output slot: `worst_bg:K` repeats its name K times.
    let variant_names: Vec<Arc<str>> = prep
        .slots()
        .iter()
        .map(|&(vi, _)| prep.variants[vi].name().into())
        .collect();
    let model_names: Vec<Arc<str>> = groups.iter().flatten().map(|m| m.name().into()).collect();
    let sink = ParquetSink::new(SinkConfig {
        dir: cfg.out.clone(),
        rows_per_file: cfg.rows_per_file,
        batch_rows: 8192,
        metadata: vec![("bgstream".into(), metadata)],
        variants: variant_names.clone(),
        models: model_names.clone(),
        manifest: cfg.rank.manifest_name(),
    })?;
    let batch_size = cfg.batch_size;
    // One inference worker per device, each with its own copy of the models.
    let mut per_device: Vec<(Device, Vec<Group>)> = Vec::with_capacity(cfg.devices.len());
    let mut first = Some(groups);
    for &device in &cfg.devices {
        let groups = match first.take() {
            Some(g) => g,
            None => group_models(cfg.load_models_on(device)?),
        };
        let groups = groups
            .into_iter()
            .map(|models| Group::new(models, batch_size, device))
            .collect();
        per_device.push((device, groups));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let first_error = Arc::new(FirstError::default());
    let workers = cfg.workers.max(1);
    let (shard_tx, shard_rx) = async_channel::bounded::<PathBuf>(shards.len().max(1));
    let (sample_tx, sample_rx) = async_channel::bounded(workers * 2);
    let (prep_tx, prep_rx) = async_channel::bounded::<Prepared>(workers * 2);
    let (sink_tx, sink_rx) = async_channel::bounded::<SinkMsg>(8);
    for s in &shards {
        shard_tx
            .try_send(s.clone())
            .expect("channel sized to the shard list");
    }
    drop(shard_tx);

    let shard_errors = Arc::new(Mutex::new(Vec::new()));
    let skipped_members = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..cfg.readers.clamp(1, shards.len().max(1)) {
        let (rx, tx, done_tx) = (shard_rx.clone(), sample_tx.clone(), sink_tx.clone());
        let (stop, counters, errors, skipped) = (
            stop.clone(),
            counters.clone(),
            shard_errors.clone(),
            skipped_members.clone(),
        );
        readers.push(tokio::task::spawn_blocking(move || {
            while let Ok(path) = rx.recv_blocking() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let report = read_shard(&path, |sample| {
                    if stop.load(Ordering::SeqCst) {
                        return false;
                    }
                    counters.samples_read.fetch_add(1, Ordering::Relaxed);
                    let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                    counters.in_flight_max.fetch_max(now, Ordering::Relaxed);
                    tx.send_blocking(sample).is_ok()
                });
                skipped.fetch_add(report.skipped_members, Ordering::Relaxed);
                if report.stopped {
                    // Not read to the end: the shard stays incomplete.
                    break;
                }
                if let Some(e) = &report.error {
                    tracing::warn!(shard = %path.display(), "{e}");
                    errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((path.display().to_string(), e.clone()));
                }
                let msg = SinkMsg::ShardRead {
                    shard: path.display().to_string().into(),
                    samples: report.samples,
                    error: report.error,
                };
                if done_tx.send_blocking(msg).is_err() {
                    break;
                }
            }
        }));
    }
    drop(sample_tx);
    drop(shard_rx);

    let mut cpu = Vec::new();
    for _ in 0..workers {
        let (rx, tx, prep) = (sample_rx.clone(), prep_tx.clone(), prep.clone());
        cpu.push(tokio::task::spawn_blocking(move || {
            let mut scratch = Scratch::default();
            while let Ok(sample) = rx.recv_blocking() {
                if tx
                    .send_blocking(prepare(&sample, &prep, &mut scratch))
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    drop(sample_rx);
    drop(prep_tx);

    let mut infer = Vec::new();
    for (device, groups) in per_device {
        let (counters, stop, first_error) = (counters.clone(), stop.clone(), first_error.clone());
        let fail_fast = cfg.fail_fast;
        let variants = variant_names.clone();
        let (sink_tx, prep_rx) = (sink_tx.clone(), prep_rx.clone());
        infer.push(tokio::task::spawn_blocking(move || {
            let _no_grad = tch::no_grad_guard();
            let mut inference = Inference::new(groups, variants, device, counters.clone());
            let mut emit = |msg: SinkMsg| sink_tx.send_blocking(msg).is_ok();
            let mut failures: HashMap<&'static str, u64> = HashMap::new();
            let result = (|| {
                while let Ok(item) = prep_rx.recv_blocking() {
                    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                    match &item {
                        Prepared::Filtered(_) => {
                            counters.filtered.fetch_add(1, Ordering::Relaxed);
                        }
                        Prepared::Failed(_, e) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            *failures.entry(e.code()).or_default() += 1;
                            if fail_fast {
                                let Prepared::Failed(meta, source) = item else {
                                    unreachable!("matched Failed above")
                                };
                                return Err(FatalError::FailFast {
                                    shard: meta.shard.to_string(),
                                    key: meta.key,
                                    source,
                                });
                            }
                        }
                        Prepared::Ready(..) => {
                            counters.predicted_images.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    inference.push(item, &mut emit)?;
                }
                inference.finish(&mut emit)
            })();
            if let Err(e) = result {
                first_error.set(e, &stop);
                // Keep draining so the CPU stages never block on a worker that stopped.
                while prep_rx.recv_blocking().is_ok() {}
            }
            failures
        }));
    }
    drop(prep_rx);
    drop(sink_tx);

    let writer = {
        let (counters, stop, first_error) = (counters.clone(), stop.clone(), first_error.clone());
        tokio::task::spawn_blocking(move || {
            let mut sink = sink;
            let mut tally = Tally::new();
            let mut no_donor = HashMap::new();
            while let Ok(msg) = sink_rx.recv_blocking() {
                tally_rows(&mut tally, &mut no_donor, &msg);
                if let Err(e) = sink.handle(msg) {
                    first_error.set(e, &stop);
                    // Keep draining so upstream never blocks; nothing more is written.
                    while sink_rx.recv_blocking().is_ok() {}
                    break;
                }
                counters
                    .rows_written
                    .store(sink.rows_written(), Ordering::Relaxed);
            }
            (sink.finish(), tally, no_donor)
        })
    };

    // Shutdown only stops the readers; everything downstream drains.
    let interrupted = {
        let stop = stop.clone();
        let all_readers = join_all(readers);
        tokio::pin!(all_readers);
        tokio::pin!(shutdown);
        tokio::select! {
            r = &mut all_readers => { r?; false }
            _ = &mut shutdown => {
                stop.store(true, Ordering::SeqCst);
                all_readers.await?;
                true
            }
        }
    };
    for h in cpu {
        h.await.map_err(join_error)?;
    }
    let mut failures: HashMap<&'static str, u64> = HashMap::new();
    for h in infer {
        for (code, n) in h.await.map_err(join_error)? {
            *failures.entry(code).or_default() += n;
        }
    }
    let (report, tally, no_donor) = writer.await.map_err(join_error)?;
    let mut no_donor: Vec<(String, u64)> = no_donor
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    no_donor.sort();
    if let Some(e) = first_error.take() {
        return Err(e);
    }

    let mut accuracy = Vec::new();
    let mut unique: Vec<&Arc<str>> = Vec::new();
    for v in &variant_names {
        if !unique.contains(&v) && !v.starts_with("worst_bg:") {
            unique.push(v);
        }
    }
    for model in &model_names {
        for &variant in &unique {
            let (images, top1, top5) = tally
                .get(&(model.clone(), variant.clone()))
                .copied()
                .unwrap_or_default();
            accuracy.push(Accuracy {
                model: model.to_string(),
                variant: variant.to_string(),
                images,
                top1,
                top5,
            });
        }
    }
    let mut failures_by_code: Vec<(String, u64)> = failures
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    failures_by_code.sort();
    let mut shard_errors =
        std::mem::take(&mut *shard_errors.lock().unwrap_or_else(|p| p.into_inner()));
    shard_errors.sort();
    Ok(RunSummary {
        shards: shards.len() + claim.completed.len(),
        shards_skipped: claim.completed.len(),
        shards_completed: report.completed.len(),
        shards_incomplete: report.incomplete,
        samples_read: counters.samples_read.load(Ordering::Relaxed),
        filtered: counters.filtered.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        predicted_images: counters.predicted_images.load(Ordering::Relaxed),
        rows_written: report.rows_written,
        files: report.files,
        shard_errors,
        skipped_members: skipped_members.load(Ordering::Relaxed),
        failures_by_code,
        no_donor,
        accuracy,
        elapsed: start.elapsed(),
        interrupted,
        in_flight_max: counters.in_flight_max.load(Ordering::Relaxed),
    })
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<()>>) -> Result<(), FatalError> {
    for h in handles {
        h.await.map_err(join_error)?;
    }
    Ok(())
}
