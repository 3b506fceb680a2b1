//! `bgstream aggregate`: the paper's numbers from prediction Parquet files.
//!
//! Reads any number of files from any runs or workers ([`load`]), computes per model x
//! variant accuracies with Wilson intervals, relative accuracy to a baseline model, the
//! label-noise control, invariance gaps and the generalised Table 1 ([`metrics`]), and writes
//! the summary (Parquet / CSV), paper-style figures ([`plots`]) and an HTML report
//! ([`report`]).

pub mod completeness;
pub mod load;
pub mod metrics;
pub mod per_class;
pub mod seeds;

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;

use crate::classes::ClassNames;
use crate::error::FatalError;
pub use load::{load, Loaded};
pub use metrics::{compute, Aggregate, SummaryRow};

/// What `bgstream aggregate` writes.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    pub input: PathBuf,
    pub baseline: Option<String>,
    pub out: PathBuf,
    pub parquet: bool,
    pub csv: bool,
    pub report: Option<PathBuf>,
    pub figures: bool,
    pub examples: usize,
    /// Score at a coarse level (`--class-map`, ImageNet-9 style).
    pub class_map: Option<PathBuf>,
    /// Class names for the tables and report (`--class-names imagenet|none|FILE`; default
    /// ImageNet's for 1000-class runs).
    pub class_names: Option<PathBuf>,
    /// The run's shards, for the report's pictures (none: no pictures).
    pub shards: Vec<PathBuf>,
    /// The run's `--textures`, for the pictures.
    pub textures: Option<PathBuf>,
    /// Images in the report's gallery.
    pub gallery: usize,
    /// Draw pictures from `shards` even when they are not the files the run read
    /// (`--allow-changed-shards`): each difference becomes a warning instead of an error.
    pub allow_changed_shards: bool,
    /// Also report models that differ only by a `-seedN` suffix as one (mean ± sd).
    pub group_seeds: bool,
}

/// What an aggregate run produced.
pub struct AggregateOutput {
    /// Missing ranks and unfinished shards (see [`completeness`]).
    pub warnings: Vec<String>,
    pub data: Loaded,
    pub aggregate: Aggregate,
    pub written: Vec<PathBuf>,
    /// The report's size, when one was written.
    pub report_bytes: Option<usize>,
    /// `--group-seeds`: mean and spread per group of seeds.
    pub seed_groups: Vec<seeds::SeedRow>,
    /// What the input's `_run.json` files say (the report re-renders from them).
    pub facts: completeness::RunFacts,
    pub per_class: Vec<per_class::ClassRow>,
    /// Class names for tables and report, when the classes are named.
    pub names: Option<ClassNames>,
}

/// The summary table's schema (`schemas/aggregate-summary.schema.json`).
pub fn summary_schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("variant", DataType::Utf8, false),
        Field::new("images", DataType::UInt64, false),
        f("top1"),
        f("top1_lo"),
        f("top1_hi"),
        f("top5"),
        f("top5_lo"),
        f("top5_hi"),
        f("rel_top1_ratio"),
        f("rel_top1_diff"),
        f("rel_top5_ratio"),
        f("rel_top5_diff"),
        Field::new("controlled_images", DataType::UInt64, false),
        f("controlled_top1"),
        f("controlled_top5"),
        f("gap_top1"),
        f("gap_top5"),
    ]))
}

/// Accuracy as every output gives it: percent (timm's results tables do too), to 1e-10
/// points, so that 29 % reads `29` and not `28.999999999999996`.
pub fn percent(fraction: f64) -> f64 {
    (fraction * 1e12).round() / 1e10
}

/// The summary as a record batch: accuracies, intervals, differences and gaps in percent
/// (points), relative ratios as ratios.
pub fn summary_batch(rows: &[SummaryRow]) -> RecordBatch {
    let ratio = |g: fn(&SummaryRow) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(g).collect::<Float64Array>())
    };
    let col = |g: fn(&SummaryRow) -> Option<f64>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|r| g(r).map(percent))
                .collect::<Float64Array>(),
        )
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.model.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.variant.as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.images))),
        col(|r| r.top1),
        col(|r| r.top1_lo),
        col(|r| r.top1_hi),
        col(|r| r.top5),
        col(|r| r.top5_lo),
        col(|r| r.top5_hi),
        ratio(|r| r.rel_top1_ratio),
        col(|r| r.rel_top1_diff),
        ratio(|r| r.rel_top5_ratio),
        col(|r| r.rel_top5_diff),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.controlled_images),
        )),
        col(|r| r.controlled_top1),
        col(|r| r.controlled_top5),
        col(|r| r.gap_top1),
        col(|r| r.gap_top5),
    ];
    RecordBatch::try_new(summary_schema(), columns).expect("columns match the schema")
}

/// Writes `path` atomically; the writer's own error is kept as the output error's source.
fn atomic_write<E: Into<crate::error::BoxError>>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), FatalError> {
    crate::atomic::write_with(path, write)
}

/// Loads, computes and writes the numbers the config asks for (Parquet and CSV tables);
/// figures and the HTML report are [`crate::report::publish`]'s.
pub fn run(cfg: &AggregateConfig) -> Result<AggregateOutput, FatalError> {
    let class_map = cfg
        .class_map
        .as_deref()
        .map(crate::classes::ClassMap::read)
        .transpose()?;
    let facts = completeness::facts(&cfg.input);
    if let (Some(map), Some(path)) = (&class_map, &cfg.class_map) {
        check_class_map(map, path, &facts)?;
    }
    let data = load::load_with(
        &cfg.input,
        load::LoadOptions {
            class_map: class_map.as_ref(),
        },
    )?;
    // Labels are named by the models' label space: a class-mapped model's is ImageNet's.
    let num_classes: Vec<i64> = (facts.identity())
        .map(|id| id.models.iter().map(|m| m.label_classes()).collect())
        .unwrap_or_else(|| vec![0]);
    // ImageNet-9 labels name IN-9 classes, whatever the models' class count.
    let names = match cfg.class_names.as_deref() {
        None if data.has_in9_labels() => Some(crate::classes::ClassNames::in9()),
        spec => crate::classes::ClassNames::for_models(spec, &num_classes)?,
    };
    let mut aggregate = compute(&data, cfg.baseline.as_deref(), cfg.examples)?;
    if names.is_some() {
        name_examples(&mut aggregate, &data, names.as_ref());
    }
    let warnings = input_warnings(cfg, &data);
    let seed_groups = if cfg.group_seeds {
        seeds::group(&aggregate.rows)
    } else {
        Vec::new()
    };
    let mut out = AggregateOutput {
        warnings,
        per_class: per_class::per_class(&data),
        data,
        aggregate,
        written: Vec::new(),
        report_bytes: None,
        seed_groups,
        facts,
        names,
    };
    std::fs::create_dir_all(&cfg.out).map_err(|e| FatalError::output(&cfg.out, e))?;
    if cfg.parquet {
        out.written
            .push(write_summary_parquet(&cfg.out, &out.aggregate)?);
    }
    if cfg.csv {
        let written = std::mem::take(&mut out.written);
        out.written = write_tables_csv(&cfg.out, &out, written)?;
    }
    Ok(out)
}

/// Table 1's example keys read "key (class)" when classes are named.
fn name_examples(aggregate: &mut Aggregate, data: &Loaded, names: Option<&ClassNames>) {
    let key_ids: std::collections::HashMap<&str, usize> = (data.keys.iter().enumerate())
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    for level in &mut aggregate.levels {
        for ex in &mut level.examples {
            let label = key_ids.get(ex.as_str()).map_or(-1, |&k| data.labels[k]);
            let class = class_name(names, label);
            if !class.is_empty() {
                *ex = format!("{ex} ({class})");
            }
        }
    }
}

/// A label's class name, or nothing when classes are not named.
pub fn class_name(names: Option<&ClassNames>, label: i64) -> String {
    let name = names.and_then(|n| n.name(label));
    name.map_or(String::new(), str::to_string)
}

/// Missing ranks, unfinished shards, and rows the input should not hold together.
fn input_warnings(cfg: &AggregateConfig, data: &Loaded) -> Vec<String> {
    let mut warnings = completeness::check(&cfg.input);
    if data.mixes_label_spaces() {
        warnings.push(
            "the rows mix ImageNet-9 labels (scoring in9 / in_to_in9) with labels of the \
             models' own classes (scoring direct): each row is scored by its own rule, but \
             per-class tables and class names mix the two label spaces; aggregate them apart"
                .into(),
        );
    }
    if let Some((key, a, b)) = &data.cross_shard_example {
        warnings.push(format!(
            "{} key(s) have rows from more than one shard (e.g. {key} in {a} and {b}): two \
             images under one key, or one shard run twice into the input; per (key, variant, \
             model) the first row read is kept",
            data.cross_shard_keys
        ));
    }
    warnings
}

fn write_summary_parquet(dir: &Path, aggregate: &Aggregate) -> Result<PathBuf, FatalError> {
    let batch = summary_batch(&aggregate.rows);
    let path = dir.join("summary.parquet");
    atomic_write(&path, |f| {
        let mut w = ArrowWriter::try_new(f, batch.schema(), None)?;
        w.write(&batch)?;
        w.close().map(|_| ())
    })?;
    Ok(path)
}

/// Every CSV table, appended to `written` in the order they are written.
fn write_tables_csv(
    dir: &Path,
    out: &AggregateOutput,
    mut written: Vec<PathBuf>,
) -> Result<Vec<PathBuf>, FatalError> {
    let (aggregate, data) = (&out.aggregate, &out.data);
    let class_of = |label: i64| class_name(out.names.as_ref(), label);
    let path = dir.join("summary.csv");
    let batch = summary_batch(&aggregate.rows);
    atomic_write(&path, |f| {
        let mut w = arrow::csv::Writer::new(f);
        w.write(&batch)
    })?;
    written.push(path);
    written.push(write_table1_csv(dir, aggregate)?);
    let sidecars: Vec<&crate::sidecar::Sidecar> = (out.facts.identities.iter())
        .filter_map(|(_, id)| id.as_ref().ok())
        .flat_map(|id| &id.models)
        .collect();
    written.push(write_results_csv(dir, aggregate, &sidecars)?);
    if !aggregate.backgrounds.is_empty() {
        written.push(write_backgrounds_csv(dir, &aggregate.backgrounds)?);
    }
    if !data.worst.is_empty() {
        written.push(write_worst_csv(dir, data, &class_of)?);
    }
    if !out.per_class.is_empty() {
        written.push(write_per_class_csv(dir, &out.per_class, &class_of)?);
    }
    if !out.seed_groups.is_empty() {
        written.push(write_seed_groups_csv(dir, &out.seed_groups)?);
    }
    Ok(written)
}

fn write_table1_csv(dir: &Path, aggregate: &Aggregate) -> Result<PathBuf, FatalError> {
    let table1 = aggregate.levels.iter().map(|l| {
        vec![
            l.model.clone(),
            percent(l.original_top1).to_string(),
            percent(l.bg_only_top1).to_string(),
            l.correct.to_string(),
            l.new.to_string(),
            l.lost_from_previous.to_string(),
            l.examples.join(" "),
        ]
    });
    write_csv(
        &dir.join("table1.csv"),
        &[
            "model",
            "original_top1",
            "bg_only_top1",
            "correct",
            "new",
            "lost_from_previous",
            "examples",
        ],
        table1,
    )
}

fn write_per_class_csv(
    dir: &Path,
    per_class: &[per_class::ClassRow],
    class_of: &dyn Fn(i64) -> String,
) -> Result<PathBuf, FatalError> {
    let rows = per_class.iter().map(|r| {
        vec![
            r.model.clone(),
            r.variant.clone(),
            r.label.to_string(),
            class_of(r.label),
            r.images.to_string(),
            percent(r.top1).to_string(),
            percent(r.top5).to_string(),
        ]
    });
    write_csv(
        &dir.join("per_class.csv"),
        &[
            "model", "variant", "label", "class", "images", "top1", "top5",
        ],
        rows,
    )
}

fn write_seed_groups_csv(dir: &Path, groups: &[seeds::SeedRow]) -> Result<PathBuf, FatalError> {
    let rows = groups.iter().map(|r| {
        vec![
            r.group.clone(),
            r.variant.clone(),
            r.seeds.to_string(),
            percent(r.top1_mean).to_string(),
            percent(r.top1_sd).to_string(),
            percent(r.top1_min).to_string(),
            percent(r.top1_max).to_string(),
            percent(r.top5_mean).to_string(),
            percent(r.top5_sd).to_string(),
        ]
    });
    write_csv(
        &dir.join("seed_groups.csv"),
        &[
            "group",
            "variant",
            "seeds",
            "top1_mean",
            "top1_sd",
            "top1_min",
            "top1_max",
            "top5_mean",
            "top5_sd",
        ],
        rows,
    )
}

/// A class map groups the models' own (fine) classes: one that names a label no model of the
/// run can predict (at or above a model's `num_classes`, from the runs' `_run.json`) is for
/// another label space, and scoring with it would compare unrelated numbers.
fn check_class_map(
    map: &crate::classes::ClassMap,
    path: &Path,
    facts: &completeness::RunFacts,
) -> Result<(), FatalError> {
    let Some(max) = map.max_label() else {
        return Ok(());
    };
    let models = (facts.identities.iter())
        .filter_map(|(_, id)| id.as_ref().ok())
        .flat_map(|id| &id.models);
    for m in models {
        if max >= m.num_classes {
            return Err(FatalError::Usage(format!(
                "--class-map {}: it maps fine label {max}, but model {} has {} classes \
                 (0..{}): the map is for another label space than the rows' predictions",
                path.display(),
                m.name,
                m.num_classes,
                m.num_classes - 1
            )));
        }
    }
    Ok(())
}

/// Refuses (or, when allowed, warns about) `--shards` files that are not, byte for byte,
/// the shards the run read: the report would show images that were not classified.
/// `--shards` against the files the run read: a difference is an error, or a warning with
/// `--allow-changed-shards`.
pub fn check_shards(cfg: &AggregateConfig, warnings: &mut Vec<String>) -> Result<(), FatalError> {
    let recorded = completeness::recorded_shards(&cfg.input);
    let changed = completeness::changed_shards(&cfg.shards, &recorded);
    let Some(first) = changed.first() else {
        return Ok(());
    };
    if !cfg.allow_changed_shards {
        return Err(FatalError::Data(format!(
            "--shards: {} of {} shard(s) are not the files the run read, so the report would \
             show images that were not classified; first: {first}. Give the run's own shards, \
             or pass --allow-changed-shards to draw them anyway (flagged in the report)",
            changed.len(),
            cfg.shards.len()
        )));
    }
    warnings.extend(changed.iter().map(|c| {
        format!("--allow-changed-shards: the pictures may not be what was classified: {c}")
    }));
    Ok(())
}

/// An optional accuracy (fraction) as percent text; empty when there is none.
fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| percent(x).to_string())
}

/// Writes a header and rows as `path`, atomically.
fn write_csv(
    path: &Path,
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<PathBuf, FatalError> {
    atomic_write(path, |f| {
        let mut w = csv::Writer::from_writer(f);
        w.write_record(header)?;
        for row in rows {
            w.write_record(&row)?;
        }
        w.flush().map_err(csv::Error::from)
    })?;
    Ok(path.to_path_buf())
}

/// A number as timm's validate.py writes it: rounded to 4 decimals, in Python's shortest
/// form (`76.13`, `100.0`).
fn timm_round(x: f64) -> String {
    let r = (x * 1e4).round() / 1e4;
    if r.fract() == 0.0 {
        format!("{r:.1}")
    } else {
        r.to_string()
    }
}

/// `results.csv` in timm's `validate.py` form (model, top1, top1_err, top5, top5_err,
/// param_count, img_size, crop_pct, interpolation; percent), one row per model x variant
/// with the images counted and the accuracy relative to the baseline beside it, so that a
/// timm results file and this one join on `model` (the full pretrained name).
fn write_results_csv(
    dir: &Path,
    a: &Aggregate,
    sidecars: &[&crate::sidecar::Sidecar],
) -> Result<PathBuf, FatalError> {
    let rows = a.rows.iter().map(|r| {
        let side = sidecars.iter().find(|s| s.name == r.model);
        let num = |v: Option<f64>| v.map_or(String::new(), |x| timm_round(percent(x)));
        let err = |v: Option<f64>| v.map_or(String::new(), |x| timm_round(100.0 - percent(x)));
        vec![
            r.model.clone(),
            r.variant.clone(),
            r.images.to_string(),
            num(r.top1),
            err(r.top1),
            num(r.top5),
            err(r.top5),
            side.and_then(|s| s.param_count)
                .map_or(String::new(), |p| p.to_string()),
            side.map_or(String::new(), |s| s.input_size.to_string()),
            side.map_or(String::new(), |s| s.crop_pct.to_string()),
            side.map_or(String::new(), |s| {
                format!("{:?}", s.interpolation).to_lowercase()
            }),
            r.rel_top1_ratio.map_or(String::new(), timm_round),
        ]
    });
    write_csv(
        &dir.join("results.csv"),
        &[
            "model",
            "variant",
            "images",
            "top1",
            "top1_err",
            "top5",
            "top5_err",
            "param_count",
            "img_size",
            "crop_pct",
            "interpolation",
            "rel_top1",
        ],
        rows,
    )
}

fn write_backgrounds_csv(dir: &Path, rows: &[metrics::BgRow]) -> Result<PathBuf, FatalError> {
    let rows = rows.iter().map(|r| {
        vec![
            r.model.clone(),
            opt(r.only_bg_black),
            opt(r.only_bg_tiled),
            opt(r.only_fg),
            opt(r.no_fg),
            opt(r.mixed_same),
            opt(r.mixed_rand),
            opt(r.mixed_next),
            opt(r.bg_gap),
            r.bg_gap_images.to_string(),
            r.challenge_variant.clone().unwrap_or_default(),
            opt(r.challenge_top1),
            r.challenge_images.to_string(),
            opt(r.exhaustive_top1),
            r.exhaustive_images.to_string(),
        ]
    });
    write_csv(
        &dir.join("backgrounds.csv"),
        &[
            "model",
            "only_bg_black_top1",
            "only_bg_tiled_top1",
            "only_fg_top1",
            "no_fg_top1",
            "mixed_same_top1",
            "mixed_rand_top1",
            "mixed_next_top1",
            "bg_gap",
            "bg_gap_images",
            "challenge_variant",
            "challenge_top1",
            "challenge_images",
            "challenge_all_top1",
            "challenge_all_images",
        ],
        rows,
    )
}

/// Per (model, variant, image): the candidate background with the lowest probability of
/// the true label, and whether any candidate flipped the prediction.
fn write_worst_csv(
    dir: &Path,
    data: &Loaded,
    class_of: &dyn Fn(i64) -> String,
) -> Result<PathBuf, FatalError> {
    let mut cases: Vec<_> = data.worst.iter().collect();
    let name = |(m, v, k): &(usize, usize, u32)| {
        (
            &data.models[*m],
            &data.variants[*v],
            &data.keys[*k as usize],
        )
    };
    cases.sort_by(|a, b| name(a.0).cmp(&name(b.0)));
    let rows = cases.into_iter().map(|(&(m, v, k), wc)| {
        let correct = data
            .cells
            .get(&(m, v))
            .and_then(|l| l.binary_search_by_key(&k, |e| e.0).ok().map(|i| l[i].1))
            .is_some_and(|bits| bits & load::TOP1 != 0);
        let label = data.labels[k as usize];
        vec![
            data.models[m].clone(),
            data.variants[v].clone(),
            data.keys[k as usize].clone(),
            if label < 0 {
                String::new()
            } else {
                label.to_string()
            },
            class_of(label),
            wc.background.clone().unwrap_or_default(),
            wc.p_true.to_string(),
            wc.candidates.to_string(),
            correct.to_string(),
        ]
    });
    write_csv(
        &dir.join("worst_backgrounds.csv"),
        &[
            "model",
            "variant",
            "key",
            "label",
            "class",
            "worst_background",
            "worst_p_true",
            "candidates",
            "all_correct",
        ],
        rows,
    )
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{:.1}", 100.0 * x))
}

/// The `--group-seeds` table printed by `bgstream aggregate`.
pub fn render_seed_groups(rows: &[seeds::SeedRow]) -> String {
    let mut o = String::new();
    if rows.is_empty() {
        return o;
    }
    let gw = rows.iter().map(|r| r.group.len()).max().unwrap_or(5).max(5);
    let vw = rows
        .iter()
        .map(|r| r.variant.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let _ = writeln!(o, "\nSeed groups (mean ± sample sd over seeds, top-1 %):");
    let _ = writeln!(
        o,
        "{:<gw$} {:<vw$} {:>5} {:>13} {:>13} {:>13}",
        "group", "variant", "seeds", "top1", "min..max", "top5"
    );
    for r in rows {
        let _ = writeln!(
            o,
            "{:<gw$} {:<vw$} {:>5} {:>13} {:>13} {:>13}",
            r.group,
            r.variant,
            r.seeds,
            format!("{:.1} ± {:.1}", 100.0 * r.top1_mean, 100.0 * r.top1_sd),
            format!("{:.1}..{:.1}", 100.0 * r.top1_min, 100.0 * r.top1_max),
            format!("{:.1} ± {:.1}", 100.0 * r.top5_mean, 100.0 * r.top5_sd),
        );
    }
    o
}

/// The aligned text table printed by `bgstream aggregate`.
pub fn render_table(a: &Aggregate) -> String {
    let mut o = String::new();
    let mw = a.models.iter().map(String::len).max().unwrap_or(5).max(5);
    let vw = a.variants.iter().map(String::len).max().unwrap_or(7).max(7);
    let _ = writeln!(
        o,
        "baseline: {} (relative = accuracy / baseline accuracy on the same variant)",
        a.baseline
    );
    if let Some(map) = &a.class_map {
        let _ = writeln!(o, "scored at the coarse level of class map {map}");
    }
    if let Some(note) = &a.scoring {
        let _ = writeln!(o, "{note}");
    }
    let _ = writeln!(
        o,
        "{:<mw$} {:<vw$} {:>6} {:>6} {:>13} {:>6} {:>7} {:>8} {:>7} {:>7}",
        "model", "variant", "images", "top1%", "95% CI", "top5%", "rel", "ctrl1%", "gap1", "gap5"
    );
    for r in &a.rows {
        let ci = format!("[{}, {}]", pct(r.top1_lo), pct(r.top1_hi));
        let _ = writeln!(
            o,
            "{:<mw$} {:<vw$} {:>6} {:>6} {:>13} {:>6} {:>7} {:>8} {:>7} {:>7}",
            r.model,
            r.variant,
            r.images,
            pct(r.top1),
            ci,
            pct(r.top5),
            r.rel_top1_ratio.map_or("-".into(), |x| format!("{x:.2}")),
            pct(r.controlled_top1),
            pct(r.gap_top1),
            pct(r.gap_top5),
        );
    }
    if !a.backgrounds.is_empty() {
        render_backgrounds(a, mw, &mut o);
    }
    if !a.levels.is_empty() {
        render_levels(a, mw, &mut o);
    }
    o
}

/// The ImageNet-9 style Backgrounds table, `mw` the model column's width.
fn render_backgrounds(a: &Aggregate, mw: usize, o: &mut String) {
    let _ = writeln!(
        o,
        "\nBackgrounds (ImageNet-9 style; top-1 %; BG-Gap = mixed_same - mixed_rand on the same images; challenge = no worst_bg:K candidate flips it; all_bgs = no background flips it, bgstream challenge):"
    );
    let _ = writeln!(
        o,
        "{:<mw$} {:>9} {:>9} {:>7} {:>7} {:>10} {:>10} {:>10} {:>7} {:>16} {:>7}",
        "model",
        "only_bg_b",
        "only_bg_t",
        "only_fg",
        "no_fg",
        "mixed_same",
        "mixed_rand",
        "mixed_next",
        "bg_gap",
        "challenge",
        "all_bgs"
    );
    for r in &a.backgrounds {
        let challenge = match &r.challenge_variant {
            Some(v) => format!("{} {v}", pct(r.challenge_top1)),
            None => "-".into(),
        };
        let _ = writeln!(
            o,
            "{:<mw$} {:>9} {:>9} {:>7} {:>7} {:>10} {:>10} {:>10} {:>7} {:>16} {:>7}",
            r.model,
            pct(r.only_bg_black),
            pct(r.only_bg_tiled),
            pct(r.only_fg),
            pct(r.no_fg),
            pct(r.mixed_same),
            pct(r.mixed_rand),
            pct(r.mixed_next),
            pct(r.bg_gap),
            challenge,
            pct(r.exhaustive_top1)
        );
    }
}

/// Table 1: what the background alone gets right, by accuracy on original.
fn render_levels(a: &Aggregate, mw: usize, o: &mut String) {
    let _ = writeln!(
        o,
        "\nTable 1 (correct from the background alone, by accuracy on original; sets {}; {} common to all):",
        if a.nested { "nest" } else { "do not nest" },
        a.common
    );
    for l in &a.levels {
        let _ = writeln!(
            o,
            "  {:<mw$} original {:>5.1}%  bg_only {:>5.1}%  correct {:>5}  new {:>5}  lost {:>4}  e.g. {}",
            l.model,
            100.0 * l.original_top1,
            100.0 * l.bg_only_top1,
            l.correct,
            l.new,
            l.lost_from_previous,
            l.examples.join(", ")
        );
    }
}
