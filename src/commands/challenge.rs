//! `bgstream challenge`: ImageNet-9's challenge accuracy, every background per foreground.

use bgstream::infer::device::{self, DeviceRequest};
use bgstream::precision::Autotune;
use bgstream::source::{budget::ReadLimits, expand_shards};

use super::EXIT_ITEMS_FAILED;
use crate::cli::ChallengeArgs;

pub fn run(a: &ChallengeArgs) -> anyhow::Result<u8> {
    if !(0.0..=1.0).contains(&a.min_fg) || !(a.min_fg..=1.0).contains(&a.max_fg) {
        anyhow::bail!("--min-fg and --max-fg: 0 <= min <= max <= 1");
    }
    let shards = expand_shards(&a.shards)?;
    let device = (device::open(&DeviceRequest {
        spec: a.device.clone(),
        local_rank: None,
        precision: a.precision,
        allow_tf32: a.allow_tf32,
        autotune: Autotune::Auto,
    })?)
    .first();
    let cfg = bgstream::challenge::ChallengeConfig {
        shards,
        backgrounds: (!a.backgrounds.is_empty())
            .then(|| expand_shards(&a.backgrounds))
            .transpose()?,
        models: a.models.clone(),
        device,
        precision: a.precision,
        batch: a
            .batch_size
            .unwrap_or(if device.is_cuda() { 256 } else { 64 }),
        min_fg: a.min_fg,
        max_fg: a.max_fg,
        limits: bgstream::ops::decode::Limits {
            max_pixels: a.max_pixels,
        },
        read: ReadLimits::for_readers(1, a.max_sample_mib << 20, a.max_sample_mib << 20),
        out: a.out.clone(),
        dump: a.dump_inputs.clone(),
    };
    let summaries = bgstream::challenge::run(&cfg)?;
    println!(
        "{:<24} {:>11} {:>10} {:>11} {:>12} {:>14} {:>9}",
        "model", "foregrounds", "vulnerable", "challenge%", "backgrounds", "forwards", "seconds"
    );
    for s in &summaries {
        let acc = s
            .challenge_accuracy
            .map_or("-".into(), |v| format!("{v:.1}"));
        println!(
            "{:<24} {:>11} {:>10} {acc:>11} {:>12} {:>14} {:>9.1}",
            s.model,
            s.foregrounds,
            s.vulnerable,
            s.backgrounds,
            format!("{}/{}", s.forwards, s.forwards_worst_case),
            s.seconds
        );
        for (code, n) in &s.errors {
            println!("  {}: {n} foreground row(s) with status {code}", s.model);
        }
    }
    let failed = summaries.iter().any(|s| !s.errors.is_empty());
    println!(
        "wrote {} and {}",
        cfg.out.join("challenge.parquet").display(),
        cfg.out.join("challenge.json").display()
    );
    Ok(if failed { EXIT_ITEMS_FAILED } else { 0 })
}
