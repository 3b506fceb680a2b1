//! Counts over the rows the sink committed: the run summary is computed from these, so an
//! interrupted run never reports rows of shards it then left out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::item::Row;
use crate::ops::variants::{is_multi_row, ORIGINAL_ALL};

/// (model, variant) -> (rows with a prediction, top-1 hits, top-5 hits).
pub type Hits = HashMap<(Arc<str>, Arc<str>), (u64, u64, u64)>;

/// Images and rows of committed shards.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub samples: u64,
    pub filtered: u64,
    /// Images whose rows carry an item error (one per image, whatever its rows).
    pub failed: u64,
    /// Failed images by error code.
    pub failures: BTreeMap<&'static str, u64>,
    /// Rows whose slot alone failed, by (code, variant): `no_donor`, `no_mask`.
    pub slot_errors: BTreeMap<(&'static str, Arc<str>), u64>,
    /// Per (model, variant); `worst_bg:K` is one verdict over K rows, which `bgstream
    /// aggregate` computes. [`ORIGINAL_ALL`] counts `original` over every image classified,
    /// in the filter or not.
    pub accuracy: Hits,
    /// Images outside the foreground filter classified on `original` (`--original-all`);
    /// also counted in `filtered`.
    pub outside_classified: u64,
}

impl Tally {
    /// Counts one row's prediction or slot error.
    pub fn row(&mut self, r: &Row) {
        match &r.outcome {
            Err(e) if r.meta.slot_error(r.slot).is_some() => {
                *self
                    .slot_errors
                    .entry((e.code, r.variant.clone()))
                    .or_default() += 1;
            }
            Err(_) => {}
            Ok(_) if is_multi_row(&r.variant) => {}
            Ok(_) => {
                // A label its model's class map does not cover counts in no accuracy.
                let Some((top1, top5)) = r.hits() else {
                    return;
                };
                let mut count = |variant: Arc<str>| {
                    let t = self.accuracy.entry((r.model.clone(), variant)).or_default();
                    t.0 += 1;
                    t.1 += u64::from(top1);
                    t.2 += u64::from(top5);
                };
                let outside = r.meta.in_filter == Some(false);
                if &*r.variant == "original" {
                    count(ORIGINAL_ALL.into());
                }
                if !outside {
                    count(r.variant.clone());
                }
            }
        }
    }

    /// An image of `--original-all` outside the filter, its rows all in.
    pub fn outside_item(&mut self) {
        self.filtered += 1;
        self.outside_classified += 1;
    }

    /// A failed image (counted once, when all its rows are in).
    pub fn failed_item(&mut self, code: &'static str) {
        self.failed += 1;
        *self.failures.entry(code).or_default() += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.samples += other.samples;
        self.filtered += other.filtered;
        self.outside_classified += other.outside_classified;
        self.failed += other.failed;
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        for (k, v) in other.slot_errors {
            *self.slot_errors.entry(k).or_default() += v;
        }
        for (k, (n, a, b)) in other.accuracy {
            let t = self.accuracy.entry(k).or_default();
            *t = (t.0 + n, t.1 + a, t.2 + b);
        }
    }
}
