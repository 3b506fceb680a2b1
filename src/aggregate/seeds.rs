//! `aggregate --group-seeds`: models that differ only by a `-seedN` suffix (the runs of
//! `examples/finetune.py --seeds 0,1,2`) as one, with the mean and spread over seeds, as the
//! paper reports its VOC12 / Caltech101 classifiers ("mean over 3 runs").

use super::metrics::SummaryRow;

/// One group x variant.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedRow {
    pub group: String,
    pub variant: String,
    pub seeds: usize,
    pub top1_mean: f64,
    /// Sample standard deviation over seeds (0 with one seed).
    pub top1_sd: f64,
    pub top1_min: f64,
    pub top1_max: f64,
    pub top5_mean: f64,
    pub top5_sd: f64,
}

/// The group of a model name: without a trailing `-seedN` / `_seedN`, or `None`.
pub fn group_of(model: &str) -> Option<&str> {
    let (stem, n) = model.rsplit_once("seed")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.strip_suffix('-').or_else(|| stem.strip_suffix('_'))
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

/// Mean and spread per group and variant, in the order groups and variants first appear.
pub fn group(rows: &[SummaryRow]) -> Vec<SeedRow> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in rows {
        if let Some(g) = group_of(&r.model) {
            let k = (g.to_string(), r.variant.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys.into_iter()
        .filter_map(|(g, v)| {
            let members: Vec<&SummaryRow> = rows
                .iter()
                .filter(|r| r.variant == v && group_of(&r.model) == Some(g.as_str()))
                .collect();
            let top1: Vec<f64> = members.iter().filter_map(|r| r.top1).collect();
            let top5: Vec<f64> = members.iter().filter_map(|r| r.top5).collect();
            if top1.is_empty() {
                return None;
            }
            let (m1, s1) = mean_sd(&top1);
            let (m5, s5) = if top5.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                mean_sd(&top5)
            };
            Some(SeedRow {
                group: g,
                variant: v,
                seeds: top1.len(),
                top1_mean: m1,
                top1_sd: s1,
                top1_min: top1.iter().copied().fold(f64::INFINITY, f64::min),
                top1_max: top1.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                top5_mean: m5,
                top5_sd: s5,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, variant: &str, top1: f64) -> SummaryRow {
        SummaryRow {
            model: model.into(),
            variant: variant.into(),
            images: 10,
            top1: Some(top1),
            top1_lo: None,
            top1_hi: None,
            top5: Some(1.0),
            top5_lo: None,
            top5_hi: None,
            ..Default::default()
        }
    }

    #[test]
    fn seeds_are_grouped_with_mean_and_spread() {
        assert_eq!(group_of("r18-voc-seed12"), Some("r18-voc"));
        assert_eq!(group_of("r18_voc_seed0"), Some("r18_voc"));
        assert_eq!(group_of("resnet18"), None);
        assert_eq!(group_of("r18-seedling"), None);
        assert_eq!(group_of("seed3"), None);
        let rows = [
            row("a-seed0", "original", 0.90),
            row("a-seed1", "original", 0.80),
            row("a-seed2", "original", 0.70),
            row("a-seed0", "fg_white", 0.5),
            row("resnet18", "original", 0.6),
        ];
        let g = group(&rows);
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].group.as_str(), g[0].variant.as_str(), g[0].seeds),
            ("a", "original", 3)
        );
        assert!((g[0].top1_mean - 0.8).abs() < 1e-12);
        assert!((g[0].top1_sd - 0.1).abs() < 1e-12);
        assert_eq!((g[0].top1_min, g[0].top1_max), (0.7, 0.9));
        assert_eq!((g[1].seeds, g[1].top1_sd), (1, 0.0));
    }
}
