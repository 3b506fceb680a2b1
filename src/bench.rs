//! `bgstream bench`: per model, pure forward throughput on the device and end-to-end
//! pipeline throughput (shards -> Parquet) in the same process, with their ratio, and the
//! CPU stage's rate per core — the figures that say whether the device is kept busy.

use std::sync::Arc;
use std::time::Instant;

use tch::{Kind, Tensor};

use crate::error::FatalError;
use crate::infer::Model;
use crate::pipeline::{self, Counters};
use crate::run::plan::RunPlan;
use crate::source::tar_reader::read_shard;
use crate::stage::prepare::{prepare, PrepareConfig, Scratch};

/// Pure forward throughput (images/s) of `model` at `batch`: random uint8 batches already
/// on the device, normalisation and top-5 included, one batch in flight as in the pipeline.
pub fn forward_rate(model: &Model, batch: usize, iters: usize) -> Result<f64, FatalError> {
    let s = model.sidecar.input_size as i64;
    let input = Tensor::randint(256, [batch as i64, s, s, 3], (Kind::Uint8, model.device()));
    let labels = Tensor::zeros([batch as i64], (Kind::Int64, model.device()));
    let _g = tch::no_grad_guard();
    model.warm_up(batch, 3)?;
    let start = Instant::now();
    let mut pending = model.launch(&input, &labels)?;
    for _ in 1..iters.max(1) {
        let next = model.launch(&input, &labels)?;
        std::mem::replace(&mut pending, next).collect(model.name())?;
    }
    pending.collect(model.name())?;
    Ok((iters.max(1) * batch) as f64 / start.elapsed().as_secs_f64())
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

/// Variant-images per second of the whole pipeline for `plan` (one model, as `bgstream
/// bench` plans them), writing to the plan's `--out`, and the seconds it ran. With `limit`
/// the run is stopped after that long (as by Ctrl-C: reading stops, work in flight drains)
/// and every forward made counts, so a large shard set gives a fixed-length measurement.
pub async fn end_to_end(
    plan: RunPlan,
    limit: Option<std::time::Duration>,
) -> Result<(f64, f64), FatalError> {
    let claim = crate::run::claim::claim(&plan)?;
    let counters = Arc::new(Counters::default());
    let stop = async move {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let summary = pipeline::run(plan, claim, counters.clone(), stop).await?;
    let forwards = counters.forwards.load(std::sync::atomic::Ordering::Relaxed);
    let seconds = summary.elapsed.as_secs_f64();
    Ok((forwards as f64 / seconds, seconds))
}
