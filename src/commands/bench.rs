//! `bgstream bench`: per model, pure forward vs end-to-end throughput in one process.

use std::time::Duration;

use bgstream::run::plan::RunPlan;

use crate::cli::BenchArgs;

#[cfg(feature = "torch")]
pub fn run(a: &BenchArgs) -> anyhow::Result<u8> {
    let scratch = match &a.run.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new().prefix("bench-").tempdir_in(dir)?
        }
        None => tempfile::tempdir()?,
    };
    let mut args = a.run.clone();
    args.out = Some(scratch.path().join("probe"));
    let cfg = super::run::run_config(&args)?;
    // The run's own plan: the CPU stage is timed with its textures and donor bank.
    let plan = RunPlan::build(cfg.clone())?;
    let cpu = bgstream::bench::cpu_stage_rate(&cfg.rank_shards, &plan.prepare, a.cpu_samples);
    let variants = cfg.variants.len() as f64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "device {:?}, {}{}, cuDNN autotuning {}, batch {}, {} variants, {} CPU workers; CPU stage {:.1} samples/s per core, filtered ones included ({:.0} variant-images/s on all workers)",
        cfg.device,
        cfg.precision.name(),
        match (cfg.precision, cfg.tf32) {
            (bgstream::precision::Precision::Fp32, true) => " (TF32 allowed)",
            (bgstream::precision::Precision::Fp32, false) => " (no TF32)",
            _ => "",
        },
        if cfg.cudnn_benchmark { "on" } else { "off" },
        cfg.batch_size,
        cfg.variants.len(),
        cfg.workers,
        cpu,
        cpu * variants * cfg.workers as f64
    );
    println!(
        "{:<28} {:>16} {:>22} {:>8} {:>8}",
        "model", "forward img/s", "end-to-end var-img/s", "ratio", "seconds"
    );
    for (i, model) in plan.groups.into_iter().flatten().enumerate() {
        let name = model.name().to_string();
        let forward = bgstream::bench::forward_rate(&model, cfg.batch_size, a.forward_iters)?;
        let mut one = cfg.clone();
        one.out = scratch.path().join(format!("e2e-{i}"));
        one.models = vec![model.path.clone()];
        let limit = (a.e2e_seconds > 0.0).then(|| Duration::from_secs_f64(a.e2e_seconds));
        let (e2e, seconds) = runtime.block_on(bgstream::bench::end_to_end(
            RunPlan::with_models(one, vec![model])?,
            limit,
        ))?;
        println!(
            "{name:<28} {forward:>16.1} {e2e:>22.1} {:>8.2} {seconds:>8.2}",
            e2e / forward
        );
    }
    Ok(0)
}
