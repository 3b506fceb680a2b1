//! A model's JSON sidecar (`schemas/model-sidecar.schema.json`): what a run, a preview and
//! the report need to know of a model without loading it (so no libtorch here).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{BoxError, FatalError};
use crate::ops::geometry::{Interpolation, Preprocess};
use crate::precision::Precision;

/// The sidecar `NAME.json` next to `NAME.pt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub name: String,
    /// Which weights: a file tag, a timm tag, or `random`.
    pub weights: String,
    pub input_size: usize,
    pub crop_pct: f64,
    pub interpolation: Interpolation,
    /// Per-channel mean and std on the 0..1 scale (timm's convention).
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub num_classes: i64,
    /// Set by examples/freeze_model.py: the weights are constants in this precision, so the
    /// model runs only with the same `--precision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_precision: Option<Precision>,
    /// Parameters in millions (export_models.py writes it; `results.csv` reports it as
    /// timm's validate.py does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_count: Option<f64>,
    /// Whether the model's convolutions read cuDNN's settings when they run (what
    /// export_models.py writes) or carry the flags torch.jit.trace baked in; a run refuses
    /// baked flags unless the sidecar says so (`crate::infer::graph`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv_flags: Option<ConvFlags>,
}

/// [`Sidecar::conv_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvFlags {
    /// `aten::convolution` / `convNd`: `--cudnn-benchmark` and the TF32 policy apply.
    Runtime,
    /// `aten::_convolution` with the tracer's constants, run as they are.
    Baked,
}

impl Sidecar {
    /// The sidecar path for a model path: `m.pt` -> `m.json`.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_extension("json")
    }

    pub fn read(model: &Path) -> Result<Self, FatalError> {
        let path = Self::path_for(model);
        let bad = |what: String, source: BoxError| FatalError::ModelFrom {
            path: model.to_path_buf(),
            what,
            source,
        };
        let text = std::fs::read(&path)
            .map_err(|e| bad(format!("sidecar {} not readable", path.display()), e.into()))?;
        let s: Sidecar = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("sidecar {}", path.display()), e.into()))?;
        s.validate().map_err(|reason| FatalError::Model {
            path: model.to_path_buf(),
            reason,
        })?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("sidecar name is empty".into());
        }
        if !(8..=4096).contains(&self.input_size) {
            return Err(format!("input_size {} outside 8..=4096", self.input_size));
        }
        if !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return Err(format!("crop_pct {} outside (0, 1]", self.crop_pct));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err("std must be > 0 and mean finite".into());
        }
        // Class ids travel back from the device as f32 (one readback per batch).
        if !(1..=1 << 24).contains(&self.num_classes) {
            return Err(format!("num_classes {} outside 1..=2^24", self.num_classes));
        }
        Ok(())
    }

    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            input_size: self.input_size,
            crop_pct: self.crop_pct,
            interpolation: self.interpolation,
        }
    }
}
