//! `bgstream bench`: per model, pure forward vs end-to-end throughput in one process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bgstream::bench::{EndToEnd, Machine, Record, Window};
use bgstream::run::plan::RunPlan;
use bgstream::run::settings::RunConfig;

use crate::cli::{BenchArgs, RunArgs};

/// Exit code when any measurement is too short to trust (its rate is still printed).
pub const EXIT_TOO_SHORT: u8 = 4;

/// The run a benchmark makes of its shared flags, into `out`, as rank 0 of 1.
fn run_args(a: &BenchArgs, out: PathBuf) -> RunArgs {
    RunArgs {
        job: a.job.clone(),
        out: Some(out),
        rows_per_file: 1_000_000,
        fail_fast: false,
        overwrite: false,
        resume: false,
        rank: Some(0),
        world_size: Some(1),
        summary_json: None,
        no_progress: true,
        dump_inputs: None,
        dump_logits: None,
    }
}

/// Where the end-to-end runs write: `--out` (kept), or a temporary folder (removed).
enum Scratch {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl Scratch {
    fn new(out: Option<&Path>) -> anyhow::Result<Self> {
        Ok(match out {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                Scratch::Kept(dir.to_path_buf())
            }
            None => Scratch::Temporary(tempfile::tempdir()?),
        })
    }

    fn path(&self) -> &Path {
        match self {
            Scratch::Kept(p) => p,
            Scratch::Temporary(t) => t.path(),
        }
    }
}

/// The settings every record carries.
fn settings(cfg: &RunConfig, a: &BenchArgs, cpu_rate: f64) -> serde_json::Value {
    serde_json::json!({
        "device": format!("{:?}", cfg.device),
        "tf32": cfg.tf32,
        "cudnn_benchmark": cfg.cudnn_benchmark,
        "batch_size": cfg.batch_size,
        "variants": cfg.variants.iter().map(|v| v.name()).collect::<Vec<_>>(),
        "workers": cfg.workers,
        "readers": cfg.readers,
        "shards": cfg.rank_shards.len(),
        "e2e_seconds": a.e2e_seconds,
        "min_seconds": a.min_seconds,
        "cpu_stage_samples_per_s_per_core": cpu_rate,
    })
}

#[cfg(feature = "torch")]
pub fn run(a: &BenchArgs) -> anyhow::Result<u8> {
    let scratch = Scratch::new(a.out.as_deref())?;
    let cfg = super::run::run_config(&run_args(a, scratch.path().join("probe")))?;
    // The run's own plan: the CPU stage is timed with its textures and donor bank.
    let plan = RunPlan::build(cfg.clone())?;
    let cpu = bgstream::bench::cpu_stage_rate(&cfg.rank_shards, &plan.prepare, a.cpu_samples);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut table = vec![header(&cfg, cpu)];
    table.push(format!(
        "{:<28} {:>14} {:>22} {:>7} {:>8} {:>8}  {}",
        "model", "forward img/s", "end-to-end var-img/s", "ratio", "window s", "wall s", "note"
    ));
    let (settings, machine) = (settings(&cfg, a, cpu), Machine::here());
    let mut records = Vec::new();
    let limit = (a.e2e_seconds > 0.0).then(|| Duration::from_secs_f64(a.e2e_seconds));
    for (i, model) in plan.groups.into_iter().flatten().enumerate() {
        let name = model.name().to_string();
        let forward =
            bgstream::bench::forward_rate(&model, cfg.batch_size, a.forward_iters, a.min_seconds)?;
        let mut one = cfg.clone();
        one.out = scratch.path().join(format!("e2e-{i}-{}", safe(&name)));
        one.models = vec![model.path.clone()];
        let e2e = runtime.block_on(bgstream::bench::end_to_end(
            RunPlan::with_models(one, vec![model])?,
            limit,
        ))?;
        let record = |mode, window: Window, wall, stopped_by_budget| Record {
            model: name.clone(),
            precision: cfg.precision.name().to_string(),
            mode,
            window,
            wall_seconds: wall,
            stopped_by_budget,
            too_short: window.too_short(a.min_seconds),
            settings: settings.clone(),
            machine: machine.clone(),
        };
        let (f, e) = (
            record("forward", forward, forward.seconds, false),
            record(
                "end_to_end",
                e2e.window,
                e2e.wall_seconds,
                e2e.stopped_by_budget,
            ),
        );
        table.push(row(&name, &f, &e, &e2e));
        records.extend([f, e]);
    }
    table.push(String::new());
    finish(a, &scratch, &table, &records)
}

fn header(cfg: &RunConfig, cpu: f64) -> String {
    format!(
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
        cpu * cfg.variants.len() as f64 * cfg.workers as f64
    )
}

fn row(name: &str, f: &Record, e: &Record, e2e: &EndToEnd) -> String {
    let mut notes: Vec<String> = [("forward", &f.too_short), ("end-to-end", &e.too_short)]
        .into_iter()
        .filter_map(|(m, w)| w.as_ref().map(|w| format!("TOO SHORT {m}: {w}")))
        .collect();
    if !e2e.stopped_by_budget && e.too_short.is_some() {
        notes.push("give more shards or a longer --e2e-seconds".into());
    }
    format!(
        "{name:<28} {:>14.1} {:>22.1} {:>7.2} {:>8.2} {:>8.2}  {}",
        f.window.rate,
        e.window.rate,
        e.window.rate / f.window.rate,
        e.window.seconds,
        e.wall_seconds,
        notes.join("; ")
    )
}

/// Prints the table, writes the records where asked, and returns the exit code.
fn finish(
    a: &BenchArgs,
    scratch: &Scratch,
    table: &[String],
    records: &[Record],
) -> anyhow::Result<u8> {
    let text = table.join("\n");
    print!("{text}");
    let json = serde_json::to_vec_pretty(records)?;
    if let Scratch::Kept(dir) = scratch {
        bgstream::atomic::write_file(&dir.join("bench.json"), &json)?;
        bgstream::atomic::write_file(&dir.join("bench.txt"), text.as_bytes())?;
    }
    if let Some(path) = &a.summary_json {
        bgstream::atomic::write_file(path, &json)?;
    }
    let short = records.iter().filter(|r| r.too_short.is_some()).count();
    if short > 0 {
        eprintln!(
            "bgstream bench: {short} of {} measurements are too short to trust (see the note column)",
            records.len()
        );
        return Ok(EXIT_TOO_SHORT);
    }
    Ok(0)
}

/// A model name as a folder name.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
