//! What flows between the stages: item metadata, prepared pixels, output rows.

use std::sync::Arc;

use crate::classes::{LabelSpace, Scoring};
use crate::error::ItemError;

/// Top-5 classes and probabilities, and the probability of the true label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub top5: [i64; 5],
    pub top5_prob: [f32; 5],
    pub p_true: f32,
}

/// Identity and annotation facts of one image, shared by all its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemMeta {
    pub shard: Arc<str>,
    pub key: String,
    pub label: Option<i64>,
    /// What `label` numbers when it is not the model's class (`"label_space"` in the
    /// sample's JSON): decides each row's [`Scoring`].
    pub label_space: Option<LabelSpace>,
    pub fg_fraction: Option<f64>,
    /// `boxes` or `mask`: what the variants kept or replaced (known once the annotation is).
    pub fg_source: Option<&'static str>,
    /// Whether the foreground fraction is within `[min_fg, max_fg]`; `false` only for an
    /// image a run with `--original-all` classified on `original` alone; `None` for an item
    /// that failed before the filter.
    pub in_filter: Option<bool>,
    pub width: Option<usize>,
    pub height: Option<usize>,
    /// Per output slot, the background another source gave it (`image:KEY`,
    /// `texture:NAME`); empty when no variant takes donors.
    pub backgrounds: Vec<Option<Arc<str>>>,
    /// Per output slot, an error that only that slot has (`no_donor`, `no_mask`); empty
    /// when none.
    pub slot_errors: Vec<Option<RowError>>,
    /// `released:<name>` for a dataset's pre-rendered image, classified as it is: the
    /// `variant` column of its `original` row ([`crate::source::Annotation::released_variant`]).
    pub released: Option<Arc<str>>,
}

impl ItemMeta {
    pub fn new(shard: Arc<str>, key: String) -> Self {
        ItemMeta {
            shard,
            key,
            label: None,
            label_space: None,
            fg_fraction: None,
            fg_source: None,
            in_filter: None,
            width: None,
            height: None,
            backgrounds: Vec::new(),
            slot_errors: Vec::new(),
            released: None,
        }
    }

    /// The `variant` column of this item's rows in a slot the run names `variant`.
    pub fn variant_name(&self, variant: &Arc<str>) -> Arc<str> {
        match &self.released {
            Some(r) if &**variant == "original" => r.clone(),
            _ => variant.clone(),
        }
    }

    pub fn background(&self, slot: usize) -> Option<Arc<str>> {
        self.backgrounds.get(slot).cloned().flatten()
    }

    pub fn slot_error(&self, slot: usize) -> Option<&RowError> {
        self.slot_errors.get(slot).and_then(Option::as_ref)
    }
}

/// The CPU stage's result for one sample.
#[derive(Debug)]
pub enum Prepared {
    /// Outside `[min_fg, max_fg]`: counted, not predicted.
    Filtered(ItemMeta),
    /// A recorded failure: one error row per (variant, model).
    Failed(ItemMeta, ItemError),
    /// Per preprocessing group, all variants back to back (`V * S * S * 3` bytes).
    Ready(Arc<ItemMeta>, Vec<Vec<u8>>),
}

/// What the writer stage receives.
#[derive(Debug)]
pub enum SinkMsg {
    /// Rows of predicted or failed items.
    Rows(Vec<Row>),
    /// One sample of this shard was filtered out (no rows).
    Filtered(Arc<str>),
    /// The reader finished a shard: it held `samples` samples.
    ShardRead {
        shard: Arc<str>,
        samples: u64,
        error: Option<String>,
        /// Size and hash of the shard file as read (when read to its end).
        content: Option<crate::source::tar_reader::ShardContent>,
    },
}

/// One output row: (image, slot, model). A slot is a variant, or one candidate of
/// `worst_bg:K`.
#[derive(Debug, Clone)]
pub struct Row {
    pub meta: Arc<ItemMeta>,
    /// Position in the run's slot list: the output order within an image.
    pub slot: usize,
    pub variant: Arc<str>,
    pub model: Arc<str>,
    /// The background another source gave this slot (`image:KEY`, `texture:NAME`).
    pub background: Option<Arc<str>>,
    /// How the prediction was compared with the label; `None` on rows without one.
    pub scoring: Option<Scoring>,
    pub outcome: Result<Prediction, RowError>,
}

impl Row {
    /// (top-1 right, top-5 right) of an ok row, by its scoring rule; `None` on a failed
    /// row and on one its model's class map does not cover.
    pub fn hits(&self) -> Option<(bool, bool)> {
        let p = self.outcome.as_ref().ok()?;
        let k = p.top5.iter().take_while(|&&c| c >= 0).count();
        let scoring = self.scoring.unwrap_or(Scoring::Direct);
        // A label no output of a class-mapped model covers: neither right nor wrong.
        if scoring == Scoring::ClassMap(None) {
            return None;
        }
        Some(scoring.hits(&p.top5[..k], self.meta.label.unwrap_or(-1)))
    }
}

/// The status/error columns of a failed row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub code: &'static str,
    pub message: String,
}

impl From<&ItemError> for RowError {
    fn from(e: &ItemError) -> Self {
        RowError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// Longest key kept as it is in a file name (a name must stay under 255 bytes).
const STEM_CHARS: usize = 120;

/// A file-name-safe form of a key (keys may hold `/`, any character, any length), one
/// per key: a key of only `[A-Za-z0-9._-]` (not `.` or `..`, at most [`STEM_CHARS`]) is
/// its own name; any other is its safe characters, cut to [`STEM_CHARS`], then `~` (which
/// no kept name holds) and a 64-bit hash of the whole key. Callers that write many still
/// check that no two keys met the same name (`preview`'s `StemSet`).
pub fn file_stem(key: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let kept = key.chars().all(safe) && !matches!(key, "" | "." | "..") && key.len() <= STEM_CHARS;
    if kept {
        return key.to_string();
    }
    let stem: String = key
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .take(STEM_CHARS)
        .collect();
    format!("{stem}~{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
}
