//! A TorchScript classifier plus its JSON sidecar (`schemas/model-sidecar.schema.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{CModule, Device, Kind, Tensor};

use super::Precision;
use crate::error::FatalError;
pub use crate::item::Prediction;
use crate::ops::geometry::{Interpolation, Preprocess};

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
}

impl Sidecar {
    /// The sidecar path for a model path: `m.pt` -> `m.json`.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_extension("json")
    }

    pub fn read(model: &Path) -> Result<Self, FatalError> {
        let path = Self::path_for(model);
        let bad = |reason: String| FatalError::Model {
            path: model.to_path_buf(),
            reason,
        };
        let text = std::fs::read(&path)
            .map_err(|e| bad(format!("sidecar {} not readable: {e}", path.display())))?;
        let s: Sidecar = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("sidecar {}: {e}", path.display())))?;
        s.validate().map_err(bad)?;
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
        if self.num_classes < 1 {
            return Err(format!("num_classes {} < 1", self.num_classes));
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

/// A loaded model, ready on its device.
pub struct Model {
    pub path: PathBuf,
    pub sidecar: Sidecar,
    module: CModule,
    device: Device,
    kind: Kind,
    /// `x_u8 * scale + bias` == `(x / 255 - mean) / std`, shape `[1, 3, 1, 1]`, f32.
    scale: Tensor,
    bias: Tensor,
}

/// Device tensors of a launched batch, read back later (so the GPU works meanwhile).
pub struct PendingOutput {
    top_p: Tensor,
    top_i: Tensor,
    p_true: Tensor,
}

impl Model {
    /// Loads `path` and its sidecar, moves it to `device` in `precision`, and checks it with
    /// one forward pass (output must be `[1, num_classes]`) before any image is read.
    pub fn load(path: &Path, device: Device, precision: Precision) -> Result<Self, FatalError> {
        let sidecar = Sidecar::read(path)?;
        if !path.is_file() {
            return Err(FatalError::Model {
                path: path.to_path_buf(),
                reason: "model file not found".into(),
            });
        }
        if let Some(frozen) = sidecar.frozen_precision {
            if frozen != precision {
                return Err(FatalError::Model {
                    path: path.to_path_buf(),
                    reason: format!(
                        "frozen in {0}; run it with --precision {0} (this run: {1})",
                        frozen.name(),
                        precision.name()
                    ),
                });
            }
        }
        let mut module =
            CModule::load_on_device(path, device).map_err(|source| FatalError::ModelLoad {
                path: path.to_path_buf(),
                source: source.into(),
            })?;
        module.set_eval();
        let kind = precision.kind();
        if kind != Kind::Float {
            module.to(device, kind, false);
        }
        let per_channel = |v: [f64; 3]| {
            Tensor::from_slice(&v.map(|x| x as f32))
                .view([1, 3, 1, 1])
                .to_device(device)
        };
        let scale = per_channel(sidecar.std.map(|s| 1.0 / (255.0 * s)));
        let bias = per_channel([0, 1, 2].map(|c| -sidecar.mean[c] / sidecar.std[c]));
        let model = Model {
            path: path.to_path_buf(),
            sidecar,
            module,
            device,
            kind,
            scale,
            bias,
        };
        model.self_check()?;
        Ok(model)
    }

    fn self_check(&self) -> Result<(), FatalError> {
        let s = self.sidecar.input_size as i64;
        let probe = Tensor::zeros([1, s, s, 3], (Kind::Uint8, self.device));
        let out = tch::no_grad(|| self.logits(&probe)).map_err(|source| FatalError::ModelLoad {
            path: self.path.clone(),
            source: source.into(),
        })?;
        let want = [1, self.sidecar.num_classes];
        if out.size() != want {
            return Err(FatalError::Model {
                path: self.path.clone(),
                reason: format!(
                    "output shape {:?} for a {s}x{s} input, but the sidecar says num_classes {}",
                    out.size(),
                    self.sidecar.num_classes
                ),
            });
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.sidecar.name
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Logits for a uint8 NHWC batch already on the model's device. The NCHW view of NHWC
    /// memory is channels-last, which cuDNN runs fastest; normalisation happens here, on
    /// the device, in f32 before the cast to the model's precision.
    pub fn logits(&self, nhwc_u8: &Tensor) -> Result<Tensor, tch::TchError> {
        let x = nhwc_u8
            .permute([0, 3, 1, 2])
            .f_to_kind(Kind::Float)?
            .f_mul(&self.scale)?
            .f_add(&self.bias)?;
        let x = if self.kind == Kind::Float {
            x
        } else {
            x.f_to_kind(self.kind)?
        };
        self.module.forward_ts(&[x])
    }

    /// Launches the forward pass and the top-5 / true-label reductions without waiting.
    pub fn launch(&self, nhwc_u8: &Tensor, labels: &Tensor) -> Result<PendingOutput, FatalError> {
        let run = || -> Result<PendingOutput, tch::TchError> {
            let probs = self
                .logits(nhwc_u8)?
                .f_to_kind(Kind::Float)?
                .f_softmax(-1, Kind::Float)?;
            let k = self.sidecar.num_classes.min(5);
            let (top_p, top_i) = probs.f_topk(k, -1, true, true)?;
            let p_true = probs
                .f_gather(1, &labels.f_unsqueeze(1)?, false)?
                .f_squeeze_dim(1)?;
            Ok(PendingOutput {
                top_p,
                top_i,
                p_true,
            })
        };
        tch::no_grad(run).map_err(|source| FatalError::Inference {
            model: self.name().to_string(),
            source: source.into(),
        })
    }
}

impl PendingOutput {
    /// Waits for the device and reads the batch back.
    pub fn collect(self, model: &str) -> Result<Vec<Prediction>, FatalError> {
        let read = || -> Result<Vec<Prediction>, tch::TchError> {
            let n = self.p_true.size()[0] as usize;
            let k = self.top_i.size()[1] as usize;
            let top_i =
                Vec::<i64>::try_from(self.top_i.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
            let top_p =
                Vec::<f32>::try_from(self.top_p.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
            let p_true = Vec::<f32>::try_from(self.p_true.f_to_device(Device::Cpu)?)?;
            Ok((0..n)
                .map(|r| {
                    let mut p = Prediction {
                        top5: [-1; 5],
                        top5_prob: [0.0; 5],
                        p_true: p_true[r],
                    };
                    p.top5[..k].copy_from_slice(&top_i[r * k..(r + 1) * k]);
                    p.top5_prob[..k].copy_from_slice(&top_p[r * k..(r + 1) * k]);
                    p
                })
                .collect())
        };
        read().map_err(|source| FatalError::Inference {
            model: model.to_string(),
            source: source.into(),
        })
    }
}
