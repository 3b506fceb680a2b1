//! Accuracy per class (the `label` column): `per_class.csv`, and the report's table of the
//! classes that the background alone predicts best.

use std::collections::BTreeMap;

use super::load::{Loaded, TOP1, TOP5};

/// One (model, variant, class) cell.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassRow {
    pub model: String,
    pub variant: String,
    pub label: i64,
    pub images: u64,
    pub top1: f64,
    pub top5: f64,
}

/// Every (model, variant, class) with at least one scored image, sorted by model, variant
/// and label. Images without a known label are left out.
pub fn per_class(data: &Loaded) -> Vec<ClassRow> {
    let mut rows = Vec::new();
    for (&(m, v), list) in &data.cells {
        let mut by_label: BTreeMap<i64, (u64, u64, u64)> = BTreeMap::new();
        for &(k, bits) in list {
            let label = data.labels.get(k as usize).copied().unwrap_or(-1);
            if label < 0 {
                continue;
            }
            let c = by_label.entry(label).or_default();
            c.0 += 1;
            c.1 += u64::from(bits & TOP1 != 0);
            c.2 += u64::from(bits & TOP5 != 0);
        }
        for (label, (n, a, b)) in by_label {
            rows.push(ClassRow {
                model: data.models[m].clone(),
                variant: data.variants[v].clone(),
                label,
                images: n,
                top1: a as f64 / n as f64,
                top5: b as f64 / n as f64,
            });
        }
    }
    rows.sort_by(|a, b| (&a.model, &a.variant, a.label).cmp(&(&b.model, &b.variant, b.label)));
    rows
}

/// One class of [`best_classes`]: its label, images (most over models) and top-1 per model.
#[derive(Debug, Clone, PartialEq)]
pub struct BestClass {
    pub label: i64,
    pub images: u64,
    pub top1: Vec<Option<f64>>,
}

/// The `n` classes with the highest top-1 on `variant`, averaged over the `models` that
/// have the class (ties: the lower label).
pub fn best_classes(
    rows: &[ClassRow],
    variant: &str,
    models: &[String],
    n: usize,
) -> Vec<BestClass> {
    let mut by_label: BTreeMap<i64, BestClass> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.variant == variant) {
        let Some(m) = models.iter().position(|x| *x == r.model) else {
            continue;
        };
        let c = by_label.entry(r.label).or_insert_with(|| BestClass {
            label: r.label,
            images: 0,
            top1: vec![None; models.len()],
        });
        c.images = c.images.max(r.images);
        c.top1[m] = Some(r.top1);
    }
    let mean = |c: &BestClass| {
        let v: Vec<f64> = c.top1.iter().flatten().copied().collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let mut classes: Vec<BestClass> = by_label.into_values().collect();
    // Stable sort over ascending labels: equal means keep the lower label first.
    classes.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
    classes.truncate(n);
    classes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, label: i64, images: u64, top1: f64) -> ClassRow {
        ClassRow {
            model: model.into(),
            variant: "bg_only".into(),
            label,
            images,
            top1,
            top5: top1,
        }
    }

    #[test]
    fn best_classes_rank_by_mean_top1() {
        let rows = [
            row("a", 3, 10, 0.5),
            row("b", 3, 10, 0.7),
            row("a", 1, 4, 0.6),
            row("b", 1, 4, 0.6),
            row("a", 7, 2, 1.0),
            ClassRow {
                variant: "original".into(),
                ..row("a", 9, 2, 1.0)
            },
        ];
        let models = ["a".to_string(), "b".to_string()];
        let best = best_classes(&rows, "bg_only", &models, 2);
        assert_eq!(best.len(), 2);
        assert_eq!(
            (best[0].label, best[0].top1.clone()),
            (7, vec![Some(1.0), None])
        );
        // 3 and 1 both average 0.6: the lower label first.
        assert_eq!(best[1].label, 1);
        assert_eq!(best_classes(&rows, "bg_only", &models, 5).len(), 3);
    }
}
