//! Thin entry point: parse -> validated config -> run -> exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use bgstream::aggregate::{self, AggregateConfig};
use bgstream::cli::{
    AggregateArgs, BenchArgs, ChallengeArgs, Cli, Command, PreviewArgs, RunArgs, ShardArgs,
    SummaryFormat,
};
use bgstream::source::shard_writer;
#[cfg(feature = "torch")]
use {
    anyhow::Context,
    bgstream::config::RunConfig,
    bgstream::pipeline::{self, Counters},
    bgstream::plan::RunPlan,
    bgstream::summary,
    indicatif::{ProgressBar, ProgressStyle},
    std::sync::atomic::Ordering,
    std::sync::Arc,
    std::time::Duration,
};

/// Finished, but some items or shards failed, or tar members were skipped (rows carry
/// their status; the summary counts the rest).
#[cfg(feature = "torch")]
const EXIT_ITEMS_FAILED: u8 = 3;
#[cfg(feature = "torch")]
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    reproducible_math();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BGSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Fail points (tikv's `fail`) exist only in builds with the `failpoints` feature: the
    // crash tests use them (FAILPOINTS=...) to stop the process at exact points of a commit.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Shard(a)) => shard(&a),
        Some(Command::Run(a)) => run(&a),
        Some(Command::Aggregate(a)) => aggregate_cmd(&a),
        Some(Command::Bench(a)) => bench_cmd(&a),
        Some(Command::Preview(a)) => preview_cmd(&a),
        Some(Command::Challenge(a)) => challenge_cmd(&a),
        None => run(&cli.run),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("bgstream: error: {e:#}");
            match e.downcast_ref::<bgstream::error::FatalError>() {
                Some(bgstream::error::FatalError::Usage(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

#[cfg(feature = "torch")]
fn run(args: &RunArgs) -> anyhow::Result<u8> {
    // plan (no side effects) -> claim (the only step that touches --out) -> execute.
    let plan = RunPlan::build(RunConfig::from_args(args)?)?;
    let claim = bgstream::claim::claim(&plan)?;
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

/// The exit status of an interrupted run: 128 + the signal that stopped it.
#[cfg(feature = "torch")]
static STOP_SIGNAL_EXIT: std::sync::atomic::AtomicU8 =
    std::sync::atomic::AtomicU8::new(EXIT_INTERRUPTED);

/// The next delivery of a signal we may not have been able to listen for.
#[cfg(feature = "torch")]
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(feature = "torch")]
/// First Ctrl-C, SIGTERM (Slurm's time limit or preemption, before its SIGKILL) or SIGHUP:
/// stop reading, drain and commit finished shards. A second signal aborts at once.
async fn shutdown_signal() {
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
}

#[cfg(feature = "torch")]
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
#[cfg(feature = "torch")]
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

fn shard(a: &ShardArgs) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let mut found = shard_writer::collect(&shard_writer::ShardInputs {
        format: a.format,
        annotations: a.annotations.clone(),
        released_variant: a.released_variant.clone(),
        images: a.images.clone(),
        synsets: a.synsets.clone(),
        split: a.split.clone(),
        skip_difficult: a.voc_skip_difficult,
    })?;
    println!("detected {}", found.detected);
    if let Some(n) = a.limit {
        found.entries.truncate(n);
    }
    if found.entries.is_empty() {
        anyhow::bail!(
            "no annotated image of {} was found in {} ({} annotated images, {} images)",
            a.annotations
                .as_deref()
                .unwrap_or(found.images.as_path())
                .display(),
            found.images.display(),
            found.missing.len(),
            found.unannotated.len(),
        );
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)));
    let read_secs = started.elapsed().as_secs_f64();
    let planned =
        bgstream::source::shard_out::planned(&a.prefix, found.entries.len(), a.shard_size);
    bgstream::source::shard_out::claim(&a.out, &planned, a.overwrite)?;
    let writing = std::time::Instant::now();
    let written =
        shard_writer::write_shards(&found.entries, &a.out, &a.prefix, a.shard_size, threads)?;
    let write_secs = writing.elapsed().as_secs_f64();
    println!(
        "wrote {} samples into {} shard(s) under {} ({:.1} MB) in {write_secs:.2} s ({:.0} \
         images/s, {threads} reader threads); annotations and image index read in {read_secs:.2} s",
        written.samples,
        written.shards.len(),
        a.out.display(),
        written.bytes as f64 / 1e6,
        written.samples as f64 / write_secs.max(1e-9),
    );
    if written.masks > 0 {
        println!(
            "  {} sample(s) with a foreground mask (<key>.mask.png)",
            written.masks
        );
    }
    print_shard_notes(&found, &written);
    let summary = a.out.join(format!("{}.summary.json", a.prefix));
    let json = serde_json::json!({
        "detected": found.detected,
        "annotations": a.annotations,
        "images": found.images,
        "samples": written.samples,
        "shards": written.shards,
        "seconds_reading_annotations": read_secs,
        "seconds_writing": write_secs,
        "annotations_without_image": found.missing,
        "images_without_annotation": found.unannotated,
        "without_objects": found.without_objects,
        "several_classes": found.several_classes,
        "folder_mismatch": found.folder_mismatch,
        "size_mismatch": written.size_mismatch,
        "unreadable_header": written.unreadable,
        "masks": written.masks,
        "bad_masks": written.bad_masks,
    });
    bgstream::atomic::write_file(&summary, &serde_json::to_vec_pretty(&json)?)?;
    println!("  every list in full: {}", summary.display());
    Ok(0)
}

/// What `shard` left out or noted, five keys a kind (the summary JSON lists them all).
fn print_shard_notes(found: &shard_writer::Collected, written: &shard_writer::ShardReport) {
    let notes: [(&str, &[String]); 8] = [
        ("annotations without an image", &found.missing),
        ("images without objects skipped", &found.without_objects),
        ("images without an annotation (not sharded)", &found.unannotated),
        (
            "images whose objects name several classes (labelled by the largest total box area)",
            &found.several_classes,
        ),
        (
            "images filed under another class folder than their annotation's (labelled by the annotation)",
            &found.folder_mismatch,
        ),
        (
            "images whose header disagrees with the annotated size (the run records size_mismatch)",
            &written.size_mismatch,
        ),
        (
            "images with an unreadable header (written; the run records the error)",
            &written.unreadable,
        ),
        (
            "masks unreadable or of another size than the image (written; the run records bad_mask)",
            &written.bad_masks,
        ),
    ];
    for (what, keys) in notes.iter().filter(|(_, k)| !k.is_empty()) {
        let shown = keys.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = if keys.len() > 5 { ", ..." } else { "" };
        println!("  {} {what}: {shown}{more}", keys.len());
    }
}

fn aggregate_cmd(a: &AggregateArgs) -> anyhow::Result<u8> {
    let cfg = AggregateConfig {
        input: a.input.clone(),
        baseline: a.baseline.clone(),
        out: a
            .out
            .clone()
            .unwrap_or_else(|| sibling(&a.input, "-aggregate")),
        parquet: a.format.contains(&SummaryFormat::Parquet),
        csv: a.format.contains(&SummaryFormat::Csv),
        report: a.report.clone(),
        figures: !a.no_figures,
        examples: a.examples,
        class_map: a.class_map.clone(),
        class_names: a.class_names.clone(),
        shards: if a.shards.is_empty() {
            Vec::new()
        } else {
            bgstream::source::expand_shards(&a.shards)?
        },
        textures: a.textures.clone(),
        gallery: a.gallery,
        allow_changed_shards: a.allow_changed_shards,
        group_seeds: a.group_seeds,
    };
    let out = aggregate::run(&cfg)?;
    for w in &out.warnings {
        eprintln!("bgstream: warning: {w}");
    }
    if out.data.duplicates > 0 {
        eprintln!(
            "bgstream: warning: {} (key, variant, model) rows appear more than once; the first was kept",
            out.data.duplicates
        );
    }
    if out.data.unmapped > 0 {
        eprintln!(
            "bgstream: note: {} rows have a label outside the class map and were left out",
            out.data.unmapped
        );
    }
    print!("{}", aggregate::render_table(&out.aggregate));
    print!("{}", aggregate::render_seed_groups(&out.seed_groups));
    for p in &out.written {
        println!("wrote {}", p.display());
    }
    if let (Some(path), Some(bytes)) = (&a.report, out.report_bytes) {
        println!(
            "report: {} ({:.2} MB{})",
            path.display(),
            bytes as f64 / 1e6,
            if cfg.shards.is_empty() {
                "; without --shards it has no pictures"
            } else {
                ""
            }
        );
    }
    Ok(0)
}

/// `results/` -> `results-aggregate/`: beside the input, never inside it (the input is
/// searched recursively for prediction files).
/// `run` and `bench` need libtorch; this build has none.
#[cfg(not(feature = "torch"))]
fn run(_: &RunArgs) -> anyhow::Result<u8> {
    anyhow::bail!(
        "this bgstream was built without libtorch (cargo feature `torch`): only `shard` and \
         `aggregate` work; build with default features to run models"
    )
}

#[cfg(not(feature = "torch"))]
fn bench_cmd(a: &BenchArgs) -> anyhow::Result<u8> {
    run(&a.run)
}

#[cfg(not(feature = "torch"))]
fn preview_cmd(_: &PreviewArgs) -> anyhow::Result<u8> {
    anyhow::bail!(
        "this bgstream was built without libtorch (cargo feature `torch`): preview needs it"
    )
}

#[cfg(feature = "torch")]
fn preview_cmd(a: &PreviewArgs) -> anyhow::Result<u8> {
    let out = bgstream::preview::command::run(a)?;
    println!(
        "{} image(s), {} tile(s); index {}",
        out.images,
        out.tiles,
        out.index.display()
    );
    for s in &out.sheets {
        println!("wrote {}", s.display());
    }
    Ok(0)
}

#[cfg(not(feature = "torch"))]
fn challenge_cmd(_: &ChallengeArgs) -> anyhow::Result<u8> {
    anyhow::bail!(
        "this bgstream was built without libtorch (cargo feature `torch`): challenge needs it"
    )
}

#[cfg(feature = "torch")]
fn challenge_cmd(a: &ChallengeArgs) -> anyhow::Result<u8> {
    use bgstream::source::{budget::ReadLimits, expand_shards};
    if !(0.0..=1.0).contains(&a.min_fg) || !(a.min_fg..=1.0).contains(&a.max_fg) {
        anyhow::bail!("--min-fg and --max-fg: 0 <= min <= max <= 1");
    }
    if a.precision == bgstream::infer::Precision::Fp32 && !a.allow_tf32 {
        bgstream::infer::device::forbid_tf32().map_err(anyhow::Error::msg)?;
    }
    let device = bgstream::infer::resolve_device(&a.device, None)?;
    let cfg = bgstream::challenge::ChallengeConfig {
        shards: expand_shards(&a.shards)?,
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

fn sibling(dir: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "results".into());
    name.push(suffix);
    dir.with_file_name(name)
}

/// Same inputs must give bit-identical rows run after run. libtorch's CPU GEMMs go through
/// MKL, whose threads split work by machine load unless conditional numerical
/// reproducibility is on: measured here, two identical runs differed in the last bits of
/// ~20% of the probabilities without these settings and never with them. Set only when the
/// user has not chosen otherwise, and before any thread or library starts.
fn reproducible_math() {
    for (key, value) in [("MKL_CBWR", "AUTO,STRICT"), ("MKL_DYNAMIC", "FALSE")] {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
}

#[cfg(feature = "torch")]
fn bench_cmd(a: &BenchArgs) -> anyhow::Result<u8> {
    let scratch = match &a.run.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new().prefix("bench-").tempdir_in(dir)?
        }
        None => tempfile::tempdir()?,
    };
    let mut args = a.run.clone();
    args.out = Some(scratch.path().join("probe"));
    let cfg = RunConfig::from_args(&args)?;
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

#[cfg(all(test, feature = "torch"))]
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
