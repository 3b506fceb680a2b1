//! Accuracies with Wilson intervals, relative accuracy to a baseline model, the label-noise
//! control (paper, appendix A), invariance gaps, and the generalised Table 1.

use super::load::{Loaded, TOP1, TOP5};
use crate::error::FatalError;
use crate::source::{IN9_RELEASED as RELEASED, RELEASED_PREFIX};
use crate::variant::is_multi_row;
pub use crate::variant::keeps_foreground;

/// 95% Wilson score interval of `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn rate(k: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

/// One row of the summary: one (model, variant).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryRow {
    pub model: String,
    pub variant: String,
    pub images: u64,
    pub top1: Option<f64>,
    pub top1_lo: Option<f64>,
    pub top1_hi: Option<f64>,
    pub top5: Option<f64>,
    pub top5_lo: Option<f64>,
    pub top5_hi: Option<f64>,
    /// accuracy / baseline accuracy on the same variant
    pub rel_top1_ratio: Option<f64>,
    /// accuracy - baseline accuracy on the same variant
    pub rel_top1_diff: Option<f64>,
    pub rel_top5_ratio: Option<f64>,
    pub rel_top5_diff: Option<f64>,
    /// Images the baseline classifies correctly (top-1) on `original`, with a row here.
    pub controlled_images: u64,
    pub controlled_top1: Option<f64>,
    pub controlled_top5: Option<f64>,
    /// accuracy(original) - accuracy(this variant), for background-switched (`fg_*`) variants.
    pub gap_top1: Option<f64>,
    pub gap_top5: Option<f64>,
}

/// One level of the generalised Table 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub model: String,
    pub original_top1: f64,
    pub bg_only_top1: f64,
    /// Images this model gets right from the background alone.
    pub correct: u64,
    /// ... that no less accurate model gets right.
    pub new: u64,
    /// Images the previous (next less accurate) model gets right that this one does not.
    pub lost_from_previous: u64,
    pub examples: Vec<String>,
}

/// ImageNet-9-style figures of one model (Xiao et al., 2020, "Noise or Signal").
#[derive(Debug, Clone, PartialEq)]
pub struct BgRow {
    pub model: String,
    /// Top-1 on `bg_only_black` ("Only-BG-B") and `bg_tiled` ("Only-BG-T").
    pub only_bg_black: Option<f64>,
    pub only_bg_tiled: Option<f64>,
    /// Top-1 on `only_fg` ("Only-FG") and `no_fg` ("No-FG"): samples with masks only.
    pub only_fg: Option<f64>,
    pub no_fg: Option<f64>,
    pub mixed_same: Option<f64>,
    pub mixed_rand: Option<f64>,
    pub mixed_next: Option<f64>,
    /// top-1(mixed_same) - top-1(mixed_rand) over the images that have both rows.
    pub bg_gap: Option<f64>,
    pub bg_gap_images: u64,
    /// `worst_bg:K`: share of images that no candidate background flips.
    pub challenge_variant: Option<String>,
    pub challenge_top1: Option<f64>,
    pub challenge_images: u64,
    /// `bgstream challenge` (every background, as challenge_eval.py): percent of the
    /// foregrounds no background flips, and how many were judged.
    pub exhaustive_top1: Option<f64>,
    pub exhaustive_images: u64,
}

#[derive(Debug, Clone)]
pub struct Aggregate {
    pub baseline: String,
    /// Models ordered by top-1 on `original`, least accurate first.
    pub models: Vec<String>,
    pub variants: Vec<String>,
    pub rows: Vec<SummaryRow>,
    pub levels: Vec<Level>,
    /// Every level's set contains the previous level's set.
    pub nested: bool,
    /// Images every model gets right from the background alone.
    pub common: u64,
    /// ImageNet-9-style figures, when the data has any of those variants.
    pub backgrounds: Vec<BgRow>,
    /// The class map the accuracies were scored with (coarse level), if any.
    pub class_map: Option<String>,
    /// How ImageNet-9-labelled rows were scored ([`Loaded::scoring_note`]), if any.
    pub scoring: Option<String>,
}

fn counts(list: &[(u32, u8)], keep: impl Fn(u32) -> bool) -> (u64, u64, u64) {
    list.iter()
        .filter(|(k, _)| keep(*k))
        .fold((0, 0, 0), |(n, a, b), (_, bits)| {
            (
                n + 1,
                a + u64::from(bits & TOP1 != 0),
                b + u64::from(bits & TOP5 != 0),
            )
        })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

/// The variants' display order (indices into `names`): the paper's, then ImageNet-9's,
/// then `worst_bg:K`, then released folders in the release's order; anything else as it
/// appeared.
fn variant_order(names: &[String]) -> Vec<usize> {
    let mut variants: Vec<usize> = (0..names.len()).collect();
    // The paper's order, then ImageNet-9's, then worst_bg:K; anything else as it appeared.
    let known: Vec<&str> = crate::variant::DEFAULT_VARIANTS
        .split(',')
        .chain(crate::variant::EXTRA_VARIANTS.split(','))
        .collect();
    variants.sort_by_key(|&v| {
        let name = names[v].as_str();
        match known.iter().position(|k| *k == name) {
            Some(i) => (i, 0),
            // Right after original (position 0), before bg_only.
            None if name == crate::variant::ORIGINAL_ALL => (0, 1),
            None if name.starts_with("fg_color:") => (8, 0),
            None if is_multi_row(name) => (known.len(), 0),
            None => match name.strip_prefix(RELEASED_PREFIX) {
                Some(r) => (
                    known.len() + 1,
                    1 + (RELEASED.iter())
                        .position(|k| *k == r)
                        .unwrap_or(RELEASED.len()),
                ),
                None => (known.len() + 2, 0),
            },
        }
    });
    variants
}

/// Computes everything from loaded predictions. `baseline` `None` picks the least accurate
/// model on `original` (the paper's choice of ResNet-18 was its least accurate model).
pub fn compute(
    data: &Loaded,
    baseline: Option<&str>,
    examples: usize,
) -> Result<Aggregate, FatalError> {
    let vid = |name: &str| data.variants.iter().position(|v| v == name);
    // A run over ImageNet-9's released folders alone has the released original instead.
    let released_original = vid(&format!("{RELEASED_PREFIX}original"));
    // None: no image was classified as it is (a run of released variant folders alone);
    // accuracies and relative accuracies remain, gaps and Table 1 do not.
    let original = vid("original").or(released_original);
    // What a variant's gap is measured from: a released variant's from the released
    // original when there is one.
    let reference = |v: usize| match released_original {
        Some(r) if data.variants[v].starts_with(RELEASED_PREFIX) => Some(r),
        _ => original,
    };
    let cell = |m: usize, v: usize| data.cells.get(&(m, v)).map(Vec::as_slice).unwrap_or(&[]);
    let cell_of = |m: usize, v: Option<usize>| v.map_or(&[][..], |v| cell(m, v));
    let acc_original = |m: usize| {
        let (n, a, _) = counts(cell_of(m, original), |_| true);
        rate(a, n).unwrap_or(0.0)
    };
    let mut order: Vec<usize> = (0..data.models.len()).collect();
    order.sort_by(|&a, &b| {
        acc_original(a)
            .total_cmp(&acc_original(b))
            .then(data.models[a].cmp(&data.models[b]))
    });
    let base = match baseline {
        Some(name) => data.models.iter().position(|m| m == name).ok_or_else(|| {
            FatalError::Config(format!(
                "baseline model {name:?} is not in the data (models: {})",
                data.models.join(", ")
            ))
        })?,
        None => order[0],
    };
    let variants = variant_order(&data.variants);
    let controlled: Vec<bool> = {
        let mut c = vec![false; data.keys.len()];
        for (k, bits) in cell_of(base, original) {
            c[*k as usize] = bits & TOP1 != 0;
        }
        c
    };
    let mut rows = Vec::new();
    for &m in &order {
        for &v in &variants {
            rows.push(summary_row(
                (&data.models[m], &data.variants[v]),
                counts(cell(m, v), |_| true),
                counts(cell(base, v), |_| true),
                counts(cell(m, v), |k| controlled[k as usize]),
                counts(cell_of(m, reference(v)), |_| true),
            ));
        }
    }
    let (levels, nested, common) = match (vid("bg_only"), original) {
        (Some(bg), Some(original)) => table1(data, &order, bg, original, examples),
        _ => (Vec::new(), true, 0),
    };
    Ok(Aggregate {
        baseline: data.models[base].clone(),
        models: order.iter().map(|&m| data.models[m].clone()).collect(),
        variants: variants.iter().map(|&v| data.variants[v].clone()).collect(),
        rows,
        levels,
        nested,
        common,
        backgrounds: backgrounds(data, &order),
        class_map: data.class_map.clone(),
        scoring: data.scoring_note(),
    })
}

/// Images, top-1 and top-5 hits of one cell.
type Counts = (u64, u64, u64);

/// One (model, variant) row from its counts, the baseline's on the same variant, those
/// over the baseline's correct images (`controlled`) and the reference's (`original`).
fn summary_row(
    (model, variant): (&str, &str),
    (n, a, b): Counts,
    (bn, ba, bb): Counts,
    (cn, ca, cb): Counts,
    (on, o1, o5): Counts,
) -> SummaryRow {
    let (top1, top5) = (rate(a, n), rate(b, n));
    let (b1, b5) = (rate(ba, bn), rate(bb, bn));
    let switched = keeps_foreground(variant.strip_prefix(RELEASED_PREFIX).unwrap_or(variant));
    let (l1, h1) = wilson(a, n);
    let (l5, h5) = wilson(b, n);
    let finite = |x: f64| x.is_finite().then_some(x);
    SummaryRow {
        model: model.to_string(),
        variant: variant.to_string(),
        images: n,
        top1,
        top1_lo: finite(l1),
        top1_hi: finite(h1),
        top5,
        top5_lo: finite(l5),
        top5_hi: finite(h5),
        rel_top1_ratio: ratio(top1, b1),
        rel_top1_diff: diff(top1, b1),
        rel_top5_ratio: ratio(top5, b5),
        rel_top5_diff: diff(top5, b5),
        controlled_images: cn,
        controlled_top1: rate(ca, cn),
        controlled_top5: rate(cb, cn),
        gap_top1: switched.then(|| diff(rate(o1, on), top1)).flatten(),
        gap_top5: switched.then(|| diff(rate(o5, on), top5)).flatten(),
    }
}

/// BG-Gap and challenge accuracy per model (empty when no such variant was run).
fn backgrounds(data: &Loaded, order: &[usize]) -> Vec<BgRow> {
    let position = |name: &str| data.variants.iter().position(|v| v == name);
    // bgstream's own rendering of an ImageNet-9 variant, else the released folder's.
    let vid = |name: &str| {
        position(name).or_else(|| {
            let released = match name {
                "bg_only_black" => "only_bg_b",
                "bg_tiled" => "only_bg_t",
                other => other,
            };
            position(&format!("{RELEASED_PREFIX}{released}"))
        })
    };
    let challenge = data.variants.iter().position(|v| is_multi_row(v));
    let names = [
        "bg_only_black",
        "bg_tiled",
        "only_fg",
        "no_fg",
        "mixed_same",
        "mixed_rand",
        "mixed_next",
    ];
    if names.iter().all(|n| vid(n).is_none()) && challenge.is_none() && data.exhaustive.is_empty() {
        return Vec::new();
    }
    let cell = |m: usize, v: Option<usize>| {
        v.and_then(|v| data.cells.get(&(m, v)))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    let top1 = |m: usize, v: Option<usize>| {
        let (n, a, _) = counts(cell(m, v), |_| true);
        rate(a, n)
    };
    order
        .iter()
        .map(|&m| {
            let (same, rand) = (cell(m, vid("mixed_same")), cell(m, vid("mixed_rand")));
            // Paired: only images with both rows (a no_donor slot drops one side).
            let rand_of: std::collections::HashMap<u32, u8> = rand.iter().copied().collect();
            let (mut n, mut d) = (0u64, 0i64);
            for (k, bits) in same {
                if let Some(rb) = rand_of.get(k) {
                    n += 1;
                    d += i64::from(bits & TOP1 != 0) - i64::from(rb & TOP1 != 0);
                }
            }
            let (cn, _, _) = counts(cell(m, challenge), |_| true);
            BgRow {
                model: data.models[m].clone(),
                only_bg_black: top1(m, vid("bg_only_black")),
                only_bg_tiled: top1(m, vid("bg_tiled")),
                only_fg: top1(m, vid("only_fg")),
                no_fg: top1(m, vid("no_fg")),
                mixed_same: top1(m, vid("mixed_same")),
                mixed_rand: top1(m, vid("mixed_rand")),
                mixed_next: top1(m, vid("mixed_next")),
                bg_gap: (n > 0).then(|| d as f64 / n as f64),
                bg_gap_images: n,
                challenge_variant: challenge.map(|v| data.variants[v].clone()),
                challenge_top1: top1(m, challenge),
                challenge_images: cn,
                exhaustive_top1: (data.exhaustive.get(&data.models[m]))
                    .and_then(|&(n, robust)| rate(robust, n)),
                exhaustive_images: data.exhaustive.get(&data.models[m]).map_or(0, |e| e.0),
            }
        })
        .collect()
}

/// The paper's Table 1, generalised to every model: sets of images correct from the
/// background alone, by increasing accuracy on `original`.
fn table1(
    data: &Loaded,
    order: &[usize],
    bg: usize,
    original: usize,
    examples: usize,
) -> (Vec<Level>, bool, u64) {
    let nkeys = data.keys.len();
    let set_of = |m: usize| {
        let mut s = vec![false; nkeys];
        for (k, bits) in data.cells.get(&(m, bg)).map(Vec::as_slice).unwrap_or(&[]) {
            s[*k as usize] = bits & TOP1 != 0;
        }
        s
    };
    let top1 = |m: usize, v: usize| {
        let (n, a, _) = counts(
            data.cells.get(&(m, v)).map(Vec::as_slice).unwrap_or(&[]),
            |_| true,
        );
        rate(a, n).unwrap_or(f64::NAN)
    };
    let mut seen = vec![false; nkeys];
    let mut all = vec![true; nkeys];
    let mut previous: Option<Vec<bool>> = None;
    let mut levels = Vec::new();
    let mut nested = true;
    for &m in order {
        let s = set_of(m);
        let mut new_keys: Vec<&str> = (0..nkeys)
            .filter(|&k| s[k] && !seen[k])
            .map(|k| data.keys[k].as_str())
            .collect();
        new_keys.sort_unstable();
        let lost = previous
            .as_ref()
            .map_or(0, |p| (0..nkeys).filter(|&k| p[k] && !s[k]).count() as u64);
        nested &= lost == 0;
        levels.push(Level {
            model: data.models[m].clone(),
            original_top1: top1(m, original),
            bg_only_top1: top1(m, bg),
            correct: s.iter().filter(|&&x| x).count() as u64,
            new: new_keys.len() as u64,
            lost_from_previous: lost,
            examples: new_keys
                .iter()
                .take(examples)
                .map(|k| k.to_string())
                .collect(),
        });
        for k in 0..nkeys {
            seen[k] |= s[k];
            all[k] &= s[k];
        }
        previous = Some(s);
    }
    let common = if order.is_empty() {
        0
    } else {
        all.iter().filter(|&&x| x).count() as u64
    };
    (levels, nested, common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 8 of 10: (0.4902, 0.9433) (standard tables)
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 5);
        assert!(lo == 0.0 && (hi - 0.4345).abs() < 1e-4, "{lo} {hi}");
        assert!(wilson(0, 0).0.is_nan());
    }
}
