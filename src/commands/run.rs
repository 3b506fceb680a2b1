//! `bgstream [run]`: check the flags, open the device, then plan -> claim -> execute, with a
//! progress line and the signals that stop a run cleanly.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use bgstream::error::FatalError;
use bgstream::infer::device::{self, DeviceRequest};
use bgstream::ops::decode::Limits;
use bgstream::ops::variants::Variant;
use bgstream::pipeline::{self, Counters};
use bgstream::precision::{Autotune, Precision};
use bgstream::run::plan::RunPlan;
use bgstream::run::ranks::Rank;
use bgstream::run::settings::{expand_shards, RunConfig, MAX_BATCH};
use bgstream::run::summary;
use bgstream::source::budget::ReadLimits;

use super::EXIT_ITEMS_FAILED;
use crate::cli::RunArgs;

const EXIT_INTERRUPTED: u8 = 130;

pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    // plan (no side effects) -> claim (the only step that touches --out) -> execute.
    let plan = RunPlan::build(run_config(args)?)?;
    let claim = bgstream::run::claim::claim(&plan)?;
    let cfg = &plan.cfg;
    if cfg.rank.world_size > 1 {
        eprintln!(
            "bgstream: rank {} of {} ({}): {} of the run's shards, {} still to do, on {:?}",
            cfg.rank.rank,
            cfg.rank.world_size,
            cfg.rank.source,
            cfg.rank_shards.len(),
            claim.todo.len(),
            cfg.devices
        );
    }
    let counters = Arc::new(Counters::default());
    // Rows per predicted image: every output slot of every model.
    let per_image = plan.prepare.slots().len() * plan.groups.iter().flatten().count();
    let progress = (!args.no_progress)
        .then(|| spawn_progress(counters.clone(), &claim.todo, per_image as u64));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(pipeline::run(plan, claim, counters, shutdown_signal()));
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let s = result?;
    print!("{}", summary::render(&s));
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary::to_json(&s))?;
        bgstream::atomic::write_file(path, text.as_bytes())?;
    }
    Ok(if s.interrupted {
        STOP_SIGNAL_EXIT.load(Ordering::SeqCst)
    } else if s.failed > 0 || !s.shard_errors.is_empty() || s.skipped_members > 0 {
        EXIT_ITEMS_FAILED
    } else {
        0
    })
}

/// The run's configuration: every flag checked first (nothing in the process changes while
/// validating), then the device opened, which applies TF32 and cuDNN settings.
pub fn run_config(a: &RunArgs) -> Result<RunConfig, FatalError> {
    check_flags(a)?;
    let i = &a.job.image;
    let variants = Variant::parse_list(&i.variants).map_err(FatalError::Config)?;
    if a.job.original_all && !variants.contains(&Variant::Original) {
        return Err(usage(
            "--original-all classifies filtered images on the original variant: add \
             original to --variants",
        ));
    }
    let rank = Rank::from_env(a.rank, a.world_size)?;
    let shards = expand_shards(&a.job.shards)?;
    let class_map = (i.class_map.as_deref())
        .map(bgstream::classes::ClassMap::read)
        .transpose()?;
    let donor_shards = if i.donor_shards.is_empty() {
        shards.clone()
    } else {
        expand_shards(&i.donor_shards)?
    };
    // Absolute model paths: the run's metadata must not depend on the working directory.
    let models = (a.job.models.iter())
        .map(|p| p.canonicalize().map_err(|e| FatalError::io(p, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let opened = device::open(&device_request(a, &rank))?;
    let cuda = opened.first().is_cuda();
    let batch_size = a.job.batch_size.unwrap_or(if cuda { 256 } else { 64 });
    // Batches are allocated (and pinned on CUDA) at full size: bound it up front.
    if !(1..=MAX_BATCH).contains(&batch_size) {
        return Err(FatalError::Usage(format!(
            "--batch-size must be in 1..={MAX_BATCH}"
        )));
    }
    Ok(RunConfig {
        rank_shards: rank.assign(&shards),
        shards,
        models,
        out: a.out.clone().expect("checked"),
        device: opened.first(),
        devices: opened.devices,
        precision: a.job.precision,
        cudnn_benchmark: opened.cudnn_benchmark,
        tf32: opened.tf32,
        batch_size,
        variants,
        textures: i.textures.clone(),
        seed: i.seed,
        min_fg: i.min_fg,
        max_fg: i.max_fg,
        original_all: a.job.original_all,
        workers: (a.job.workers).map_or_else(|| default_workers(cuda), |w| w as usize),
        readers: a.job.readers as usize,
        read_limits: ReadLimits::for_readers(
            a.job.readers as usize,
            a.job.max_sample_mib << 20,
            a.job.max_buffered_mib << 20,
        ),
        rows_per_file: a.rows_per_file,
        limits: Limits {
            max_pixels: i.max_pixels,
        },
        fail_fast: a.fail_fast,
        overwrite: a.overwrite,
        resume: a.resume,
        class_map,
        class_map_path: i.class_map.clone(),
        donor_shards,
        donors: i.donors,
        rank,
        dump_inputs: a.dump_inputs.clone(),
        dump_logits: a.dump_logits.clone(),
    })
}

/// `--device`, `--precision`, `--allow-tf32` and `--cudnn-benchmark` as one request.
fn device_request(a: &RunArgs, rank: &Rank) -> DeviceRequest {
    DeviceRequest {
        spec: a.job.device.clone(),
        local_rank: rank.local_rank,
        precision: a.job.precision,
        allow_tf32: a.job.allow_tf32,
        autotune: if a.job.no_cudnn_benchmark {
            Autotune::Off
        } else {
            a.job.cudnn_benchmark
        },
    }
}

fn usage(m: &str) -> FatalError {
    FatalError::Usage(m.to_string())
}

/// The checks that need nothing but the flags.
fn check_flags(a: &RunArgs) -> Result<(), FatalError> {
    let i = &a.job.image;
    if a.job.shards.is_empty() {
        return Err(usage("--shards is required (paths or globs of tar shards)"));
    }
    if a.job.models.is_empty() {
        return Err(usage("at least one --model PATH.pt is required"));
    }
    if a.out.is_none() {
        return Err(usage("--out DIR is required"));
    }
    if i.max_pixels == 0 {
        return Err(usage("--max-pixels must be at least 1"));
    }
    if a.rows_per_file == 0 {
        return Err(usage("--rows-per-file must be at least 1"));
    }
    if !(0.0..=1.0).contains(&i.min_fg) || !(0.0..=1.0).contains(&i.max_fg) || i.min_fg > i.max_fg {
        return Err(usage("need 0 <= --min-fg <= --max-fg <= 1"));
    }
    if a.job.allow_tf32 && a.job.precision != Precision::Fp32 {
        return Err(usage("--allow-tf32 applies to --precision fp32 only"));
    }
    if a.resume && a.overwrite {
        return Err(usage("--resume and --overwrite contradict each other"));
    }
    if i.donors == 0 {
        return Err(usage("--donors must be at least 1"));
    }
    Ok(())
}

/// Every core; on a GPU, one is left to the inference thread and the writer.
fn default_workers(cuda: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if cuda {
        cores.saturating_sub(1).max(1)
    } else {
        cores
    }
}

/// The exit status of an interrupted run: 128 + the signal that stopped it.
static STOP_SIGNAL_EXIT: std::sync::atomic::AtomicU8 =
    std::sync::atomic::AtomicU8::new(EXIT_INTERRUPTED);

/// The next delivery of a signal we may not have been able to listen for.
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// First Ctrl-C, SIGTERM (Slurm's time limit or preemption, before its SIGKILL) or SIGHUP:
/// stop reading, drain and commit finished shards. A second signal aborts at once.
async fn shutdown_signal() -> pipeline::Stop {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind| signal(kind).ok();
    let (mut term, mut hup) = (
        listen(SignalKind::terminate()),
        listen(SignalKind::hangup()),
    );
    let (name, code) = tokio::select! {
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => ("interrupted", EXIT_INTERRUPTED),
            Err(_) => return std::future::pending().await,
        },
        Some(()) = recv(&mut term) => ("terminated (SIGTERM)", 143),
        Some(()) = recv(&mut hup) => ("hung up (SIGHUP)", 129),
    };
    STOP_SIGNAL_EXIT.store(code, Ordering::SeqCst);
    eprintln!("bgstream: {name}, finishing what is in flight (signal again to abort)");
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(()) = recv(&mut term) => {}
            Some(()) = recv(&mut hup) => {}
        }
        eprintln!("bgstream: aborted");
        std::process::exit(i32::from(code));
    });
    pipeline::Stop::Drain
}

fn spawn_progress(
    counters: Arc<Counters>,
    shards: &[std::path::PathBuf],
    per_image: u64,
) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("valid template"),
    );
    // The total, from the shards' tar headers, while the run starts (plain tars only).
    let (c, list) = (counters.clone(), shards.to_vec());
    std::thread::spawn(move || {
        let counts: Option<u64> = (list.iter())
            .map(|p| bgstream::source::tar_reader::count_samples(p))
            .sum();
        if let Some(n) = counts {
            c.samples_total.store(n, Ordering::Relaxed);
        }
    });
    let b = bar.clone();
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while !b.is_finished() {
            b.set_message(progress_line(&counters, start.elapsed(), per_image));
            b.tick();
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    bar
}

/// `read/total images (rate), filtered, failed, predictions/expected (rate, ETA), rows`.
/// The expected predictions extrapolate the share of images kept so far to the total; the
/// ETA divides what is left by the prediction rate (the device is what takes the time).
fn progress_line(c: &Counters, elapsed: Duration, per_image: u64) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (read, total, fwd) = (
        load(&c.samples_read),
        load(&c.samples_total),
        load(&c.forwards),
    );
    let (filtered, failed, kept) = (
        load(&c.filtered),
        load(&c.failed),
        load(&c.predicted_images),
    );
    let seen = filtered + failed + kept;
    let images = if total > 0 {
        format!("{read}/{total} images ({:.1}/s)", read as f64 / secs)
    } else {
        format!("{read} images ({:.1}/s)", read as f64 / secs)
    };
    let expected = (total > 0 && seen > 0)
        .then(|| (total as f64 * kept as f64 / seen as f64 * per_image as f64) as u64)
        .filter(|&e| e >= fwd);
    let predictions = match expected {
        Some(e) if fwd > 0 => {
            let left = (e - fwd) as f64 * secs / fwd as f64;
            format!(
                "{fwd}/~{e} predictions ({:.1}/s, ETA {})",
                fwd as f64 / secs,
                indicatif::HumanDuration(Duration::from_secs_f64(left))
            )
        }
        Some(e) => format!("0/~{e} predictions"),
        None => format!("{fwd} predictions ({:.1}/s)", fwd as f64 / secs),
    };
    format!(
        "{images}, {filtered} filtered, {failed} failed, {predictions}, {} rows written",
        load(&c.rows_written),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_has_a_total_and_an_eta_once_it_can() {
        let c = Counters::default();
        c.samples_read.store(30, Ordering::Relaxed);
        let line = progress_line(&c, Duration::from_secs(3), 9);
        assert!(line.starts_with("30 images (10.0/s)"), "{line}");
        assert!(line.contains("0 predictions (0.0/s)"), "{line}");
        // 100 in the shards; of 20 done, 5 filtered: 75 images x 9 rows expected.
        c.samples_total.store(100, Ordering::Relaxed);
        c.filtered.store(5, Ordering::Relaxed);
        c.predicted_images.store(15, Ordering::Relaxed);
        let line = progress_line(&c, Duration::from_secs(3), 9);
        assert!(
            line.contains("30/100 images") && line.contains("0/~675 predictions"),
            "{line}"
        );
        // 135 rows in 3 s: 540 left at 45/s is 12 s.
        c.forwards.store(135, Ordering::Relaxed);
        let line = progress_line(&c, Duration::from_secs(3), 9);
        assert!(
            line.contains("135/~675 predictions (45.0/s, ETA 12 seconds)"),
            "{line}"
        );
    }
}
