//! The typed identity of a run (`_run.json`): everything that can change a row. A resume or
//! another rank must match it; the report states it; the gallery re-renders from it.

use serde::{Deserialize, Serialize};

use crate::precision::Precision;
use crate::sidecar::Sidecar;

/// What must not change between a run and its `--resume` (or between the ranks of a split
/// run): everything that can change a row. Stored as `_run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunIdentity {
    pub bgstream_version: String,
    /// Every model's sidecar: name, weights tag, preprocessing, classes, frozen precision.
    pub models: Vec<Sidecar>,
    pub variants: Vec<String>,
    pub seed: u64,
    pub min_fg: f64,
    pub max_fg: f64,
    /// `--original-all` (absent before 0.3: false).
    #[serde(default)]
    pub original_all: bool,
    pub max_pixels: u64,
    pub precision: Precision,
    /// TF32 and cuDNN autotuning change the last bits of GPU outputs (absent in runs
    /// written before they were recorded: false).
    #[serde(default)]
    pub tf32: bool,
    #[serde(default)]
    pub cudnn_benchmark: bool,
    /// Batch composition changes the last bits of some outputs.
    pub batch_size: usize,
    pub textures: TextureIdentity,
    pub donors: Option<DonorIdentity>,
    pub world_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextureIdentity {
    pub names: Vec<String>,
    /// [`TextureSet::content_hash`] in hex; empty when no variant uses textures.
    pub content_xxh3: String,
}

/// What decides the donor pairing, when a variant uses donors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DonorIdentity {
    pub bank_size: usize,
    pub donor_shards: Vec<String>,
    pub class_map: Option<(String, Vec<String>)>,
}

impl RunIdentity {
    /// The bytes of `_run.json`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("serialisable")
    }

    /// SHA-256 of [`to_json`](Self::to_json) in hex: what every Parquet file records in
    /// place of the identity itself, so a file's metadata does not grow with the run, and
    /// `sha256sum _run.json` tells which run a file belongs to.
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.to_json());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The fields that differ from `before`, each as `field: before -> now`.
    pub fn differences(&self, before: &RunIdentity) -> Vec<String> {
        let (now, was) = (
            serde_json::to_value(self).expect("serialisable"),
            serde_json::to_value(before).expect("serialisable"),
        );
        let (Some(now), Some(was)) = (now.as_object(), was.as_object()) else {
            return Vec::new();
        };
        now.iter()
            .filter(|(k, v)| was.get(*k) != Some(*v))
            .map(|(k, v)| {
                let show = |v: &serde_json::Value| {
                    let text = v.to_string();
                    if text.len() > 160 {
                        format!("{}…", &text[..text.floor_char_boundary(160)])
                    } else {
                        text
                    }
                };
                format!("{k}: {} -> {}", show(&was[k]), show(v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> RunIdentity {
        RunIdentity {
            bgstream_version: "0.1.0".into(),
            models: vec![],
            variants: vec!["original".into()],
            seed: 0,
            min_fg: 0.05,
            max_fg: 0.7,
            original_all: false,
            max_pixels: 100,
            precision: Precision::Fp32,
            tf32: false,
            cudnn_benchmark: false,
            batch_size: 64,
            textures: TextureIdentity {
                names: vec![],
                content_xxh3: String::new(),
            },
            donors: None,
            world_size: 1,
        }
    }

    #[test]
    fn differences_name_each_field() {
        let a = identity();
        assert!(a.differences(&a).is_empty());
        let b = RunIdentity {
            precision: Precision::Bf16,
            batch_size: 32,
            ..identity()
        };
        assert_eq!(
            b.differences(&a),
            ["batch_size: 64 -> 32", "precision: \"fp32\" -> \"bf16\""]
        );
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<RunIdentity>(&text).unwrap(), a);
        // A run written before TF32 and autotuning were recorded ran without either.
        let mut older = serde_json::to_value(&a).unwrap();
        let fields = older.as_object_mut().unwrap();
        fields.remove("tf32");
        fields.remove("cudnn_benchmark");
        assert_eq!(serde_json::from_value::<RunIdentity>(older).unwrap(), a);
        // An identity file of another shape (an older bgstream) does not parse.
        assert!(serde_json::from_str::<RunIdentity>(r#"{"models": []}"#).is_err());
    }
}
