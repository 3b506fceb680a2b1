//! Tar shards in, [`Sample`]s out — and the `bgstream shard` writer that makes them.
//!
//! # Shard layout (WebDataset)
//! One sample is the run of consecutive tar members sharing a key: the member path up to
//! the first dot of its file name. `<key>.jpg|.jpeg|.png` (any case) is the image,
//! `<key>.cls` the class index as text, `<key>.json` the annotation
//! (`schemas/sample-annotation.schema.json`): `{"label": int, "boxes": [[x0,y0,x1,y1],..]}`
//! plus optional `width`, `height`, `wnid` and `polygons`; `<key>.mask.png` the optional
//! foreground mask ([`crate::ops::mask`]). Other members are ignored.

pub mod budget;
pub mod tar_reader;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::classes::LabelSpace;
use crate::error::{FatalError, ItemError};
use crate::ops::geometry::BBox;

/// One sample as read from a shard; nothing is parsed or decoded yet.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub shard: Arc<str>,
    pub key: String,
    pub image: Option<Vec<u8>>,
    pub cls: Option<Vec<u8>>,
    pub json: Option<Vec<u8>>,
    /// `<key>.mask.png`: grayscale, nonzero = foreground, the image's size.
    pub mask: Option<Vec<u8>>,
    /// Structural problems found while grouping members (a member given twice, a dotted
    /// or duplicate key, a truncated member).
    pub problem: Option<ItemError>,
    /// The reader's memory budget paid for these bytes; returned when the last clone of
    /// the sample is dropped ([`budget`]).
    pub permit: Option<Arc<budget::Permit>>,
}

/// The `.json` member (and the `.cls` label), validated for shape but not against the image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub label: i64,
    pub boxes: Vec<BBox>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wnid: Option<String>,
    /// Foreground outlines `[x0, y0, x1, y1, …]` in original pixels (COCO's polygon form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polygons: Vec<Vec<f64>>,
    /// Why `bgstream shard` could not convert this sample's mask: the run records it as
    /// `bad_mask` rather than silently falling back to the boxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_error: Option<String>,
    /// What `label` numbers when it is not one of the model's classes: `"in9"` for the
    /// ImageNet-9 labels `bgstream shard --format imagenet9` writes, which a 1,000-class
    /// model is scored against through the `in_to_in9` table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_space: Option<LabelSpace>,
    /// The image is one of a dataset's pre-rendered variants, classified as it is: the
    /// name of ImageNet-9's released folder (`mixed_rand`, …) that `bgstream shard` read
    /// it from. A run writes its `original` row as variant `released:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_variant: Option<String>,
}

/// The variant folders of ImageNet-9's release (`bg_challenge/<variant>/val`), each the
/// test set pre-rendered one way (Xiao et al., table 1), in that table's order.
pub const IN9_RELEASED: [&str; 8] = [
    "original",
    "only_bg_b",
    "only_bg_t",
    "no_fg",
    "only_fg",
    "mixed_same",
    "mixed_rand",
    "mixed_next",
];

/// The `variant` column's prefix for a released image's row ([`Annotation::released_variant`]).
pub const RELEASED_PREFIX: &str = "released:";

/// Whether `name` can be recorded as a released variant: short, lowercase ASCII, digits
/// and `_`, so that it reads the same in a column, a file name and a page.
pub fn valid_released_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[derive(Deserialize)]
struct RawAnnotation {
    label: Option<i64>,
    #[serde(default)]
    boxes: Vec<BBox>,
    width: Option<usize>,
    height: Option<usize>,
    wnid: Option<String>,
    #[serde(default)]
    polygons: Vec<Vec<f64>>,
    mask_error: Option<String>,
    label_space: Option<LabelSpace>,
    released_variant: Option<String>,
}

impl Sample {
    /// Whether the sample's foreground is a mask (a `.mask.png` member or polygons) rather
    /// than its boxes.
    pub fn has_mask(&self, ann: &Annotation) -> bool {
        self.mask.is_some() || !ann.polygons.is_empty() || ann.mask_error.is_some()
    }

    /// The label (from `.cls`, else `.json`) and boxes (from `.json`).
    pub fn annotation(&self) -> Result<Annotation, ItemError> {
        if let Some(p) = &self.problem {
            return Err(p.clone());
        }
        let raw: Option<RawAnnotation> = match &self.json {
            Some(bytes) => Some(
                serde_json::from_slice(bytes)
                    .map_err(|e| ItemError::BadAnnotation(format!("{}.json: {e}", self.key)))?,
            ),
            None => None,
        };
        let cls = match &self.cls {
            Some(bytes) => Some(
                std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or_else(|| {
                        ItemError::BadAnnotation(format!(
                            "{}.cls is not an integer: {:?}",
                            self.key,
                            String::from_utf8_lossy(&bytes[..bytes.len().min(32)])
                        ))
                    })?,
            ),
            None => None,
        };
        let json_label = raw.as_ref().and_then(|r| r.label);
        let label = match (cls, json_label) {
            (Some(a), Some(b)) if a != b => {
                return Err(ItemError::BadAnnotation(format!(
                    "{}.cls says {a} but {}.json says {b}",
                    self.key, self.key
                )))
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(ItemError::MissingLabel),
        };
        if label < 0 {
            return Err(ItemError::BadAnnotation(format!("negative label {label}")));
        }
        let raw = raw.ok_or(if self.mask.is_some() {
            ItemError::BadAnnotation(format!("{}.mask.png without {}.json", self.key, self.key))
        } else {
            ItemError::NoBoxes
        })?;
        if let Some(v) = raw.released_variant.as_deref() {
            if !valid_released_name(v) {
                return Err(ItemError::BadAnnotation(format!(
                    "{}.json: released_variant {:?} is not up to 32 of a-z, 0-9 and _",
                    self.key,
                    v.chars().take(40).collect::<String>()
                )));
            }
        }
        Ok(Annotation {
            label,
            boxes: raw.boxes,
            width: raw.width,
            height: raw.height,
            wnid: raw.wnid,
            polygons: raw.polygons,
            mask_error: raw.mask_error,
            label_space: raw.label_space,
            released_variant: raw.released_variant,
        })
    }
}

/// Expands paths and globs; a pattern that matches nothing is an error.
pub fn expand_shards(patterns: &[String]) -> Result<Vec<PathBuf>, FatalError> {
    let mut out = Vec::new();
    for p in patterns {
        let before = out.len();
        if std::path::Path::new(p).is_file() {
            out.push(PathBuf::from(p));
        } else {
            let paths = glob::glob(p).map_err(|source| FatalError::BadPattern {
                pattern: p.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            out.extend(found);
        }
        if out.len() == before {
            return Err(FatalError::NoShards(p.clone()));
        }
    }
    // Absolute, canonical paths: a shard's identity (manifest, --resume, the `shard`
    // column) must not depend on the working directory or how the path was spelled.
    let mut seen = std::collections::HashSet::new();
    let out = out
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .filter(|p| seen.insert(p.clone()))
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cls: Option<&str>, json: Option<&str>) -> Sample {
        Sample {
            shard: "s.tar".into(),
            key: "k".into(),
            cls: cls.map(|s| s.as_bytes().to_vec()),
            json: json.map(|s| s.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    #[test]
    fn released_variant_is_a_plain_name() {
        let ok = sample(
            Some("1"),
            Some(r#"{"boxes": [], "released_variant": "only_bg_t"}"#),
        );
        let a = ok.annotation().unwrap();
        assert_eq!(a.released_variant.as_deref(), Some("only_bg_t"));
        for name in ["", "Only", "a/b", "<script>", &"x".repeat(33)] {
            let json = serde_json::json!({"boxes": [], "released_variant": name}).to_string();
            let err = sample(Some("1"), Some(&json)).annotation().unwrap_err();
            assert!(
                matches!(err, ItemError::BadAnnotation(_)),
                "{name:?}: {err:?}"
            );
        }
    }

    #[test]
    fn label_sources_and_errors() {
        let a = sample(Some("3\n"), Some(r#"{"boxes": [[0,0,1,1]]}"#))
            .annotation()
            .unwrap();
        assert_eq!((a.label, a.boxes.len()), (3, 1));
        let a = sample(
            None,
            Some(r#"{"label": 4, "boxes": [[0,0,1,1]], "wnid": "n1"}"#),
        );
        assert_eq!(a.annotation().unwrap().label, 4);
        let code = |s: Sample| s.annotation().unwrap_err().code();
        assert_eq!(code(sample(None, None)), "missing_label");
        assert_eq!(code(sample(Some("x"), None)), "bad_annotation");
        assert_eq!(
            code(sample(Some("1"), Some(r#"{"label": 2}"#))),
            "bad_annotation"
        );
        assert_eq!(code(sample(Some("1"), Some("{not json"))), "bad_annotation");
        assert_eq!(code(sample(Some("1"), None)), "no_boxes");
        let a = sample(
            None,
            Some(r#"{"label": 8, "boxes": [], "label_space": "in9"}"#),
        );
        assert_eq!(a.annotation().unwrap().label_space, Some(LabelSpace::In9));
        // A label space bgstream does not know is refused, not read as the model's classes.
        let a = sample(
            None,
            Some(r#"{"label": 8, "boxes": [], "label_space": "in10"}"#),
        );
        assert_eq!(code(a), "bad_annotation");
    }
}
