//! `bgstream bench`: per model, pure forward throughput on the device and end-to-end
//! pipeline throughput (shards -> Parquet) in the same process, with their ratio, and the
//! CPU stage's rate per core — the figures that say whether the device is kept busy.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use tch::{Kind, Tensor};

use crate::error::FatalError;
use crate::infer::Model;
use crate::pipeline::{self, Counters, Stop};
use crate::run::plan::RunPlan;
use crate::source::tar_reader::read_shard;
use crate::stage::prepare::{prepare, PrepareConfig, Scratch};

/// Batches a timed window must hold, at least, to count as a measurement.
pub const MIN_BATCHES: u64 = 10;

/// A timed window: how much work, in how long.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    /// Images (forward) or variant-images (end to end) per second.
    pub rate: f64,
    pub seconds: f64,
    pub batches: u64,
    pub images: u64,
}

impl Window {
    fn new(images: u64, batches: u64, seconds: f64) -> Self {
        Window {
            rate: if seconds > 0.0 {
                images as f64 / seconds
            } else {
                0.0
            },
            seconds,
            batches,
            images,
        }
    }

    /// Why this window is too short to report as a rate, if it is.
    pub fn too_short(&self, min_seconds: f64) -> Option<String> {
        if self.batches < MIN_BATCHES {
            Some(format!(
                "{} batches timed, fewer than {MIN_BATCHES}",
                self.batches
            ))
        } else if self.seconds < min_seconds {
            Some(format!(
                "{:.2} s timed, under the {min_seconds} s minimum",
                self.seconds
            ))
        } else {
            None
        }
    }
}

/// Pure forward throughput of `model` at `batch`: random uint8 batches already on the
/// device, normalisation and top-5 included, one batch in flight as in the pipeline; at
/// least `iters` (and [`MIN_BATCHES`]) batches and at least `min_seconds`.
pub fn forward_rate(
    model: &Model,
    batch: usize,
    iters: usize,
    min_seconds: f64,
) -> Result<Window, FatalError> {
    let s = model.sidecar.input_size as i64;
    let input = Tensor::randint(256, [batch as i64, s, s, 3], (Kind::Uint8, model.device()));
    let labels = Tensor::zeros([batch as i64], (Kind::Int64, model.device()));
    let _g = tch::no_grad_guard();
    model.warm_up(batch, 3)?;
    let start = Instant::now();
    let mut pending = model.launch(&input, &labels)?;
    let mut n = 1;
    let least = iters.max(MIN_BATCHES as usize);
    while n < least || start.elapsed().as_secs_f64() < min_seconds {
        let next = model.launch(&input, &labels)?;
        std::mem::replace(&mut pending, next).collect(model.name())?;
        n += 1;
    }
    pending.collect(model.name())?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Window::new((n * batch) as u64, n as u64, seconds))
}

/// Images per second of the CPU stage on one core, over up to `n` samples of `shards`.
pub fn cpu_stage_rate(shards: &[std::path::PathBuf], prep: &PrepareConfig, n: usize) -> f64 {
    let mut samples = Vec::new();
    for shard in shards {
        read_shard(shard, |s| {
            samples.push(s);
            samples.len() < n
        });
        if samples.len() >= n {
            break;
        }
    }
    if samples.is_empty() {
        return 0.0;
    }
    let mut scratch = Scratch::default();
    let start = Instant::now();
    for s in &samples {
        let _ = prepare(s, prep, &mut scratch);
    }
    samples.len() as f64 / start.elapsed().as_secs_f64()
}

/// One end-to-end measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EndToEnd {
    /// From the first batch read back to the last one counted: warm-up and the first
    /// batch's latency are outside it, as the drain and the writer's last commit are.
    pub window: Window,
    /// The whole run, start to close.
    pub wall_seconds: f64,
    /// Whether the time budget stopped the run (else every shard was read).
    pub stopped_by_budget: bool,
}

/// Batch boundaries as the watcher saw them.
#[derive(Default)]
struct Seen {
    first: Option<(Instant, u64, u64)>,
    last: Option<(Instant, u64, u64)>,
    budget_hit: bool,
}

/// The whole pipeline for `plan` (one model, as `bgstream bench` plans them), writing to
/// the plan's `--out`. With `limit`, the run is abandoned at the first batch boundary after
/// `limit` from its start ([`Stop::Abandon`]: no drain, queued work dropped), so that the
/// run lasts about `limit` whatever the device.
pub async fn end_to_end(plan: RunPlan, limit: Option<Duration>) -> Result<EndToEnd, FatalError> {
    let claim = crate::run::claim::claim(&plan)?;
    let counters = Arc::new(Counters::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = Instant::now();
    let watch = {
        let (counters, seen) = (counters.clone(), seen.clone());
        async move {
            // Polls the batch counter: at most 1 ms late on a boundary, against windows of
            // seconds.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut batches = 0;
            loop {
                tick.tick().await;
                let (b, f) = *tally(&counters);
                if b == batches {
                    continue;
                }
                batches = b;
                let now = (Instant::now(), b, f);
                let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                s.first.get_or_insert(now);
                s.last = Some(now);
                if limit.is_some_and(|l| now.0 - start >= l) {
                    s.budget_hit = true;
                    return Stop::Abandon;
                }
            }
        }
    };
    pipeline::run(plan, claim, counters.clone(), watch).await?;
    let wall_seconds = start.elapsed().as_secs_f64();
    let s = seen.lock().unwrap_or_else(|p| p.into_inner());
    // Batches the watcher did not see (a run that read everything ended first): counted
    // up to the run's end.
    let (b, f) = *tally(&counters);
    let end = match s.last {
        Some(last) if s.budget_hit || last.1 == b => last,
        _ => (Instant::now(), b, f),
    };
    let window = match s.first {
        Some((t0, b0, f0)) => Window::new(end.2 - f0, end.1 - b0, (end.0 - t0).as_secs_f64()),
        None => Window::new(0, 0, 0.0),
    };
    Ok(EndToEnd {
        window,
        wall_seconds,
        stopped_by_budget: s.budget_hit,
    })
}

fn tally(counters: &Counters) -> std::sync::MutexGuard<'_, (u64, u64)> {
    counters.batches.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a benchmark ran on, for its records.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cpu: String,
    pub cpus: usize,
    /// GPU models from the NVIDIA driver (`/proc/driver/nvidia/gpus/*/information`).
    pub gpus: Vec<String>,
    pub bgstream_version: String,
}

impl Machine {
    pub fn here() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key))
                .map(|(_, v)| v.trim().to_string())
        };
        let mut gpus: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
            .into_iter()
            .flatten()
            .filter_map(|e| {
                field(
                    &read(&format!("{}/information", e.ok()?.path().display())),
                    "Model",
                )
            })
            .collect();
        gpus.sort();
        Machine {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            cpu: field(&read("/proc/cpuinfo"), "model name").unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            gpus,
            bgstream_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// One line of `bench.json`: one model in one precision, one mode.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub model: String,
    pub precision: String,
    /// `forward` (the model alone, input on the device) or `end_to_end` (shards to Parquet).
    pub mode: &'static str,
    #[serde(flatten)]
    pub window: Window,
    /// End to end: the whole run's seconds; forward: the window's.
    pub wall_seconds: f64,
    /// End to end: whether `--e2e-seconds` ended the run (else it read every shard).
    pub stopped_by_budget: bool,
    /// Why the window is too short to trust, when it is (the rate is still given).
    pub too_short: Option<String>,
    pub settings: serde_json::Value,
    pub machine: Machine,
}
