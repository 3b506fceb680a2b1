//! What the models see: `bgstream preview` contact sheets and the report's gallery.
//!
//! Both render through [`crate::stage::prepare`], the CPU stage of a run, so a tile is exactly the
//! pixels a run feeds its models for that key and variant (a test compares them byte for
//! byte). Only the images shown are decoded: [`find_samples`] reads the other samples'
//! headers and moves on.

#[cfg(feature = "torch")]
pub mod command;
pub mod sheet;
pub mod thumb;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{FatalError, ItemError};
use crate::item::{file_stem, ItemMeta, Prepared};
use crate::ops::geometry::Rect;
use crate::source::tar_reader::read_shard;
use crate::source::Sample;
use crate::stage::prepare::{admit, prepare, prepare_recorded, PrepareConfig, Scratch, FG_MASK};

/// Which samples to show.
#[derive(Debug, Clone)]
pub enum Want {
    /// These keys, in this order (filtered or failing ones too: the sheet says why).
    Keys(Vec<String>),
    /// The first `n` samples, in shard order, that pass the run's checks and filter.
    First(usize),
}

/// Reads `shards` in order until it has the wanted samples. Samples it does not keep are
/// never decoded. A wanted key found in no shard is an error naming it.
pub fn find_samples(
    shards: &[PathBuf],
    want: &Want,
    cfg: &PrepareConfig,
) -> Result<Vec<Sample>, FatalError> {
    match want {
        Want::Keys(keys) => {
            let wanted: HashSet<String> = keys.iter().cloned().collect();
            let mut found = find_keys(shards, &wanted);
            let missing: Vec<&str> = keys
                .iter()
                .map(String::as_str)
                .filter(|k| !found.iter().any(|s| s.key == *k))
                .collect();
            if !missing.is_empty() {
                return Err(FatalError::Config(format!(
                    "key(s) not found in the shards: {}",
                    missing.join(", ")
                )));
            }
            found.sort_by_key(|s| keys.iter().position(|k| *k == s.key));
            Ok(found)
        }
        Want::First(n) => {
            let mut found: Vec<Sample> = Vec::new();
            for shard in shards {
                if found.len() >= *n {
                    break;
                }
                scan(shard, |sample| {
                    let mut meta = ItemMeta::new(sample.shard.clone(), sample.key.clone());
                    if sample.problem.is_none()
                        && matches!(admit(&sample, cfg, &mut meta), Ok(Some(_)))
                    {
                        found.push(sample);
                    }
                    found.len() < *n
                });
            }
            Ok(found)
        }
    }
}

/// The samples of `keys` (the first of each) that `shards` hold, reading them in order
/// until every key is found.
pub fn find_keys(shards: &[PathBuf], keys: &HashSet<String>) -> Vec<Sample> {
    let mut found: Vec<Sample> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for shard in shards {
        if seen.len() == keys.len() {
            break;
        }
        scan(shard, |sample| {
            if keys.contains(&sample.key) && seen.insert(sample.key.clone()) {
                found.push(sample);
            }
            seen.len() < keys.len()
        });
    }
    found
}

fn scan(shard: &std::path::Path, emit: impl FnMut(Sample) -> bool) {
    let report = read_shard(shard, emit);
    if let Some(e) = report.error {
        tracing::warn!(shard = %shard.display(), "shard not fully read: {e}");
    }
}

/// One preprocessing group's pixels of an image: every slot back to back.
#[derive(Debug, Clone)]
pub struct GroupPixels {
    pub size: usize,
    /// `slots * size * size * 3` bytes, as the run batches them.
    pub pixels: Vec<u8>,
    /// The object boxes in this crop's pixels.
    pub boxes: Vec<Rect>,
    /// For a sample with a mask, its outline in this crop's pixels (empty otherwise).
    pub outline: Vec<(usize, usize)>,
}

impl GroupPixels {
    /// Slot `i`'s frame (`size * size * 3` RGB bytes).
    pub fn slot(&self, i: usize) -> &[u8] {
        let frame = self.size * self.size * 3;
        &self.pixels[i * frame..(i + 1) * frame]
    }
}

/// An image as the models see it, or why they do not.
#[derive(Debug)]
pub enum Rendered {
    Ready(Arc<ItemMeta>, Vec<GroupPixels>),
    /// Outside the foreground filter: a run records no rows for it.
    Filtered(ItemMeta),
    Failed(ItemMeta, ItemError),
}

/// Runs the CPU stage on `sample`: with `recorded`, each slot's background is the one a
/// run recorded (see [`prepare_recorded`]) instead of the bank's pairing.
pub fn render(
    sample: &Sample,
    cfg: &PrepareConfig,
    scratch: &mut Scratch,
    recorded: Option<&[Option<&str>]>,
) -> Rendered {
    let prepared = match recorded {
        Some(r) => prepare_recorded(sample, cfg, scratch, r),
        None => prepare(sample, cfg, scratch),
    };
    match prepared {
        Prepared::Ready(meta, groups) => {
            let groups = groups
                .into_iter()
                .zip(&cfg.groups)
                .zip(&scratch.crops)
                .map(|((pixels, p), crop)| GroupPixels {
                    size: p.input_size,
                    pixels,
                    boxes: crop.rects.clone(),
                    outline: if meta.fg_source == Some(FG_MASK) {
                        crop.fg.outline()
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            Rendered::Ready(meta, groups)
        }
        Prepared::Filtered(meta) => Rendered::Filtered(meta),
        Prepared::Failed(meta, e) => Rendered::Failed(meta, e),
    }
}

/// The stems handed out so far, so that two keys can never share a file silently.
#[derive(Debug, Default)]
pub struct StemSet(std::collections::HashMap<String, String>);

impl StemSet {
    /// [`file_stem`] of `key`, or an error naming both keys when another key has it.
    pub fn stem(&mut self, key: &str) -> Result<String, FatalError> {
        let stem = file_stem(key);
        match self.0.get(&stem) {
            Some(other) if other != key => Err(FatalError::Data(format!(
                "keys {other:?} and {key:?} hash to the same file name {stem:?}; preview \
                 one of them with --keys"
            ))),
            Some(_) => Ok(stem),
            None => {
                self.0.insert(stem.clone(), key.to_string());
                Ok(stem)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_one_per_key() {
        assert_eq!(
            file_stem("ILSVRC2012_val_00000001"),
            "ILSVRC2012_val_00000001"
        );
        // Keys that differ only in characters a file name cannot hold stay apart, and
        // never meet a key that is its own name.
        let keys = ["a<b", "a>b", "a_b", "aéb", "a/b", "a_b~0", ".", "..", ""];
        let stems: HashSet<String> = keys.iter().map(|k| file_stem(k)).collect();
        assert_eq!(stems.len(), keys.len(), "{stems:?}");
        assert!(file_stem("a<b").starts_with("a_b~"));
        let long = "k".repeat(300);
        assert!(file_stem(&long).len() < 160);
        assert_ne!(file_stem(&long), file_stem(&"k".repeat(301)));
        let mut set = StemSet::default();
        assert_eq!(set.stem("a<b").unwrap(), set.stem("a<b").unwrap());
        // A collision (forced here by planting another key under a stem) is an error.
        set.0.insert(file_stem("x"), "y".into());
        assert!(set.stem("x").unwrap_err().to_string().contains("\"y\""));
    }
}
