//! What a run did ([`RunSummary`], filled in by the pipeline from what the sink
//! committed): the one-screen summary, the model x variant accuracy table, the JSON.

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::ops::variants::ORIGINAL_ALL;

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
    /// Of `filtered`, the images classified on `original` too (`--original-all`).
    pub outside_classified: u64,
    pub failed: u64,
    pub predicted_images: u64,
    pub rows_written: u64,
    pub files: Vec<PathBuf>,
    pub shard_errors: Vec<(String, String)>,
    pub skipped_members: u64,
    /// Samples whose key another shard of this run also holds, and up to a few examples
    /// (key, one shard, the other).
    pub duplicate_keys: u64,
    pub duplicate_examples: Vec<(String, String, String)>,
    pub failures_by_code: Vec<(String, u64)>,
    /// Rows per variant whose slot found no donor background (status `no_donor`).
    pub no_donor: Vec<(String, u64)>,
    /// Rows per variant of `only_fg` / `no_fg` for samples without a mask (`no_mask`).
    pub no_mask: Vec<(String, u64)>,
    /// Rows per variant not rendered from a released image (`released`): it is classified
    /// as it is, on `original`.
    pub released: Vec<(String, u64)>,
    pub accuracy: Vec<Accuracy>,
    pub elapsed: Duration,
    pub interrupted: bool,
    pub in_flight_max: u64,
}

#[derive(Serialize)]
struct JsonAccuracy<'a> {
    model: &'a str,
    variant: &'a str,
    images: u64,
    top1: f64,
    top5: f64,
}

fn pct(n: u64, d: u64) -> f64 {
    if d == 0 {
        f64::NAN
    } else {
        100.0 * n as f64 / d as f64
    }
}

/// Human-readable summary.
pub fn render(s: &RunSummary) -> String {
    let mut o = String::new();
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let forwards: u64 = s.accuracy.iter().map(|a| a.images).sum();
    let _ = writeln!(
        o,
        "bgstream {}",
        if s.interrupted {
            "(interrupted: partial results)"
        } else {
            "run complete"
        }
    );
    let _ = writeln!(
        o,
        "  images read {:>8}   filtered {:>6}   failed {:>6}   predicted {:>8}",
        s.samples_read, s.filtered, s.failed, s.predicted_images
    );
    if s.outside_classified > 0 {
        let _ = writeln!(
            o,
            "  --original-all: the {} filtered image(s) classified on original too \
             (column {ORIGINAL_ALL}: every image; original: the filtered subset)",
            s.outside_classified
        );
    }
    let _ = writeln!(
        o,
        "  rows written {:>7} in {} file(s)",
        s.rows_written,
        s.files.len()
    );
    let _ = writeln!(
        o,
        "  {:.1} s: {:.1} images/s read, {:.1} variant-images x models/s predicted",
        secs,
        s.samples_read as f64 / secs,
        forwards as f64 / secs
    );
    let _ = writeln!(
        o,
        "  shards: {} complete this run, {} already complete (--resume), {} incomplete",
        s.shards_completed,
        s.shards_skipped,
        s.shards_incomplete.len()
    );
    if !s.shards_incomplete.is_empty() {
        let _ = writeln!(
            o,
            "  incomplete shards were not written; rerun the same command with --resume to finish them"
        );
    }
    if s.skipped_members > 0 {
        let _ = writeln!(
            o,
            "  {} tar member(s) skipped (not regular files, or no key)",
            s.skipped_members
        );
    }
    if s.duplicate_keys > 0 {
        let _ = writeln!(
            o,
            "  {} sample(s) have a key that another shard also holds{}: rows stay apart by \
             `shard`, but a query joining on `key` alone would mix two images",
            s.duplicate_keys,
            s.duplicate_examples
                .first()
                .map(|(k, a, b)| format!(" (e.g. {k} in {a} and {b})"))
                .unwrap_or_default()
        );
    }
    problems(s, &mut o);
    o.push_str(&accuracy_table(s));
    o
}

/// The lines on what failed or was left out: failures by code, rows of slots without an
/// image (`no_donor`, `no_mask`, `released`) by variant, shard errors.
fn problems(s: &RunSummary, o: &mut String) {
    for (code, n) in &s.failures_by_code {
        let _ = writeln!(o, "  failed: {n} x {code}");
    }
    for (variant, n) in &s.no_donor {
        let _ = writeln!(
            o,
            "  {variant}: {n} row(s) without a donor background (status no_donor; see the README on donors)"
        );
    }
    for (variant, n) in &s.no_mask {
        let _ = writeln!(
            o,
            "  {variant}: {n} row(s) of samples without a mask (status no_mask: their foreground is boxes)"
        );
    }
    for (variant, n) in &s.released {
        let _ = writeln!(
            o,
            "  {variant}: {n} row(s) of released images (status released: a pre-rendered image is classified as it is, as released:<name>)"
        );
    }
    for (shard, e) in &s.shard_errors {
        let _ = writeln!(o, "  shard error: {shard}: {e}");
    }
}

/// Top-1 accuracy (%) per model (rows) and variant (columns), with top-5 below.
pub fn accuracy_table(s: &RunSummary) -> String {
    let mut models: Vec<&str> = Vec::new();
    let mut variants: Vec<&str> = Vec::new();
    for a in &s.accuracy {
        if !models.contains(&a.model.as_str()) {
            models.push(&a.model);
        }
        if !variants.contains(&a.variant.as_str()) {
            variants.push(&a.variant);
        }
    }
    if models.is_empty() {
        return String::new();
    }
    let title_w = "top-1 accuracy (%)".len();
    let mw = models
        .iter()
        .map(|m| m.len())
        .max()
        .unwrap_or(5)
        .max(title_w);
    let mut o = String::new();
    for (title, top5) in [("top-1 accuracy (%)", false), ("top-5 accuracy (%)", true)] {
        let _ = write!(o, "\n{title:<mw$}");
        for v in &variants {
            let _ = write!(o, " {:>w$}", v, w = v.len().max(6));
        }
        // Each column's image count (the first model's; every model sees the same images).
        let _ = write!(o, "\n{:<mw$}", "  images");
        for v in &variants {
            let n = (s.accuracy.iter())
                .find(|a| a.model == models[0] && a.variant == *v)
                .map_or(0, |a| a.images);
            let _ = write!(o, " {n:>w$}", w = v.len().max(6));
        }
        o.push('\n');
        for m in &models {
            let _ = write!(o, "{m:<mw$}");
            for v in &variants {
                let a = s.accuracy.iter().find(|a| a.model == *m && a.variant == *v);
                let val = a.map_or(f64::NAN, |a| {
                    pct(if top5 { a.top5 } else { a.top1 }, a.images)
                });
                let _ = write!(o, " {:>w$.1}", val, w = v.len().max(6));
            }
            o.push('\n');
        }
    }
    o
}

/// Machine-readable summary (`--summary-json`).
pub fn to_json(s: &RunSummary) -> serde_json::Value {
    let accuracy: Vec<_> = s
        .accuracy
        .iter()
        .map(|a| JsonAccuracy {
            model: &a.model,
            variant: &a.variant,
            images: a.images,
            top1: pct(a.top1, a.images),
            top5: pct(a.top5, a.images),
        })
        .collect();
    serde_json::json!({
        "shards": s.shards,
        "samples_read": s.samples_read,
        "filtered": s.filtered,
        "outside_classified": s.outside_classified,
        "failed": s.failed,
        "predicted_images": s.predicted_images,
        "rows_written": s.rows_written,
        "files": s.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "shard_errors": s.shard_errors,
        "failures_by_code": s.failures_by_code,
        "no_donor_rows": s.no_donor,
        "no_mask_rows": s.no_mask,
        "released_rows": s.released,
        "elapsed_s": s.elapsed.as_secs_f64(),
        "interrupted": s.interrupted,
        "shards_completed": s.shards_completed,
        "shards_skipped": s.shards_skipped,
        "shards_incomplete": s.shards_incomplete,
        "skipped_members": s.skipped_members,
        "duplicate_keys": s.duplicate_keys,
        "duplicate_examples": s.duplicate_examples,
        "in_flight_max": s.in_flight_max,
        "accuracy": accuracy,
    })
}
