//! A TorchScript classifier plus its JSON sidecar (`schemas/model-sidecar.schema.json`).

use std::path::{Path, PathBuf};

use tch::{CModule, Device, Kind, Tensor};

use super::Precision;
use crate::classes::{in9, LabelSpace, Scoring};
use crate::error::{panic_message, FatalError};
pub use crate::item::Prediction;
pub use crate::sidecar::Sidecar;

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
    /// For a 1,000-class model, `[1000, 9]`: row c is one-hot at ImageNet-9's class of c
    /// (all zero outside the nine), so `probs @ in9` are the IN-9 class probabilities.
    in9: Option<Tensor>,
    /// With a class map, `[1002]` int64: entry `l + 1` is the output that covers
    /// ImageNet-1k label `l` (0 where none: those rows' `p_true` is replaced by NaN), so
    /// the label's probability is gathered on the device like any other model's.
    label_outputs: Option<Tensor>,
}

/// The device tensor of a launched batch, read back later (so the GPU works meanwhile):
/// per row, top-k probabilities, top-k class ids (exact in f32 below 2^24 classes) and the
/// true label's probability, packed so that a batch costs one device-to-host copy.
pub struct PendingOutput {
    packed: Tensor,
    k: usize,
    /// Whether each row ends with [`Prediction`]'s IN-9 probability of the label.
    in9: bool,
    /// The raw logits as f32, when asked for (`--dump-logits`).
    pub logits: Option<Tensor>,
    /// Pinned host memory the packed results are being copied into (see
    /// [`PendingOutput::queue_readback`]).
    host: Option<Tensor>,
}

/// A batch read back: per row the prediction, and for a 1,000-class model the probability
/// of the label's ImageNet-9 class (the label read as an IN-9 class, 0..=8).
pub struct Collected {
    pub predictions: Vec<Prediction>,
    pub p_in9: Option<Vec<f32>>,
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
        check_conv_flags(path, &sidecar)?;
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
        let in9 = (sidecar.num_classes == 1000).then(|| in9_matrix().to_device(device));
        let label_outputs = (sidecar.class_map.as_ref()).map(|m| {
            let mut table = vec![0i64; m.outputs().len() + 2];
            for (l, &o) in m.outputs().iter().enumerate() {
                table[l + 1] = o.max(0);
            }
            Tensor::from_slice(&table).to_device(device)
        });
        let model = Model {
            path: path.to_path_buf(),
            sidecar,
            module,
            device,
            kind,
            scale,
            bias,
            in9,
            label_outputs,
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
    /// memory is channels-last, which cuDNN runs fastest. Normalisation is one pass on the
    /// device: `bias + x * scale` computed in f32 per element and stored in the model's
    /// precision (a fused multiply-add where the hardware has one).
    pub fn logits(&self, nhwc_u8: &Tensor) -> Result<Tensor, tch::TchError> {
        let nchw = nhwc_u8.f_permute([0, 3, 1, 2])?;
        let x = Tensor::f_empty(nhwc_u8.size(), (self.kind, self.device))?;
        let x = x.f_permute([0, 3, 1, 2])?;
        let x = match self.bias.f_addcmul_out(&x, &nchw, &self.scale) {
            Ok(_) => x,
            Err(e) => {
                // Not seen on CPU; should a device's build lack the mixed-type kernel, the
                // run goes on with separate passes (same formula, no fused multiply-add).
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    tracing::warn!("fused normalisation failed ({e}); separate passes")
                });
                let x = (nchw.f_to_kind(Kind::Float)?)
                    .f_mul(&self.scale)?
                    .f_add(&self.bias)?;
                x.f_to_kind(self.kind)?
            }
        };
        self.module.forward_ts(&[x])
    }

    /// Launches the forward pass and the top-5 / true-label reductions without waiting.
    pub fn launch(&self, nhwc_u8: &Tensor, labels: &Tensor) -> Result<PendingOutput, FatalError> {
        self.launch_keeping(nhwc_u8, labels, false)
    }

    /// [`launch`](Self::launch), keeping the raw logits too when `keep_logits`.
    pub fn launch_keeping(
        &self,
        nhwc_u8: &Tensor,
        labels: &Tensor,
        keep_logits: bool,
    ) -> Result<PendingOutput, FatalError> {
        guarded(self.name(), || {
            let logits = self.logits(nhwc_u8)?.f_to_kind(Kind::Float)?;
            let probs = logits.f_softmax(-1, Kind::Float)?;
            let k = self.sidecar.num_classes.min(5);
            let (top_p, top_i) = probs.f_topk(k, -1, true, true)?;
            let outputs;
            let labels = match &self.label_outputs {
                Some(table) => {
                    let last = table.size()[0] - 2;
                    outputs = table.f_index_select(0, &(labels.f_clamp(-1, last)? + 1))?;
                    &outputs
                }
                None => labels,
            };
            let p_true = probs.f_gather(1, &labels.f_unsqueeze(1)?, false)?;
            let mut parts = vec![top_p, top_i.f_to_kind(Kind::Float)?, p_true];
            if let Some(m) = &self.in9 {
                // Every row gets it; only rows with an ImageNet-9 label (0..=8) use it.
                let coarse = probs.f_matmul(m)?;
                let l = labels.f_clamp(0, in9::NAMES.len() as i64 - 1)?;
                parts.push(coarse.f_gather(1, &l.f_unsqueeze(1)?, false)?);
            }
            Ok(PendingOutput {
                packed: Tensor::f_cat(&parts, 1)?,
                k: k as usize,
                in9: self.in9.is_some(),
                logits: keep_logits.then_some(logits),
                host: None,
            })
        })
    }

    /// Runs `iters` batches of the full shape `batch` and waits for them, so that what is
    /// chosen or compiled per input shape (cuDNN autotuning, the TorchScript profiling
    /// executor) is settled before the first real batch, not during it.
    pub fn warm_up(&self, batch: usize, iters: usize) -> Result<(), FatalError> {
        let s = self.sidecar.input_size as i64;
        let input = Tensor::zeros([batch as i64, s, s, 3], (Kind::Uint8, self.device));
        let labels = Tensor::zeros([batch as i64], (Kind::Int64, self.device));
        for _ in 0..iters {
            self.launch(&input, &labels)?.collect(self.name())?;
        }
        Ok(())
    }
}

/// Runs a libtorch call for `model`: a `TchError` or a panic inside tch (some of its calls
/// panic rather than return errors) becomes an inference error that names the model.
pub fn guarded<T>(
    model: &str,
    run: impl FnOnce() -> Result<T, tch::TchError>,
) -> Result<T, FatalError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| FatalError::Inference {
        model: model.to_string(),
        source,
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tch::no_grad(run))) {
        Ok(result) => result.map_err(|e| failed(e.into())),
        Err(panic) => Err(failed(
            format!("panicked: {}", panic_message(&*panic)).into(),
        )),
    }
}

impl PendingOutput {
    /// Queues the copy of the results into pinned host memory without waiting (on the
    /// current stream, after the forward). The caller records an event after it and waits
    /// on that event before [`collect`](Self::collect), which then copies nothing. On CPU
    /// there is nothing to copy.
    pub fn queue_readback(&mut self, model: &str) -> Result<(), FatalError> {
        let device = self.packed.device();
        if !device.is_cuda() {
            return Ok(());
        }
        let host = guarded(model, || {
            let host = Tensor::f_empty(self.packed.size(), (Kind::Float, Device::Cpu))?
                .f_internal_pin_memory(device)?;
            // Returns `host` itself; the copy is only queued.
            let _ = self.packed.f_internal_copy_from(&host, true)?;
            Ok(host)
        })?;
        self.host = Some(host);
        Ok(())
    }

    /// Reads the batch back: from the pinned copy when one was queued (its event waited
    /// for), else with one blocking copy that waits for the device.
    pub fn collect(self, model: &str) -> Result<Collected, FatalError> {
        let k = self.k;
        let source = self.host.unwrap_or(self.packed);
        let host = guarded(model, || {
            Vec::<f32>::try_from(source.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)
        })?;
        let width = 2 * k + 1 + usize::from(self.in9);
        let p_in9 = (self.in9).then(|| host.chunks_exact(width).map(|r| r[width - 1]).collect());
        let predictions = host
            .chunks_exact(width)
            .map(|r| {
                let mut p = Prediction {
                    top5: [-1; 5],
                    top5_prob: [0.0; 5],
                    p_true: r[2 * k],
                };
                p.top5_prob[..k].copy_from_slice(&r[..k]);
                for (id, &f) in p.top5[..k].iter_mut().zip(&r[k..2 * k]) {
                    *id = f as i64;
                }
                p
            })
            .collect();
        Ok(Collected { predictions, p_in9 })
    }
}

impl Model {
    /// Row `i` of `got` scored for a sample of label `label` in label space `space`
    /// ([`Sidecar::scoring`]); with `in_to_in9`, `p_true` is the probability of the label's
    /// IN-9 class. `Err`: this model cannot be scored against that label space.
    pub fn score(
        &self,
        got: &Collected,
        i: usize,
        label: Option<i64>,
        space: Option<LabelSpace>,
    ) -> Result<(Prediction, Scoring), String> {
        let scoring = self.sidecar.scoring(space, label)?;
        let mut p = got.predictions[i];
        match scoring {
            Scoring::ClassMap(Some(_)) => {}
            // The device gathered the covering output's probability: there is none for an
            // uncovered label, nor for an ImageNet-9 one (its table reads ImageNet-1k labels).
            _ if self.sidecar.class_map.is_some() => p.p_true = f32::NAN,
            Scoring::InToIn9 => {
                let p_in9 = got.p_in9.as_ref().and_then(|v| v.get(i).copied());
                p.p_true = p_in9.unwrap_or(f32::NAN);
            }
            _ => {}
        }
        Ok((p, scoring))
    }
}

/// Refuses a model whose convolutions carry the cuDNN flags torch.jit.trace baked in
/// (`--cudnn-benchmark` and the TF32 policy would silently not apply), unless its sidecar
/// says `"conv_flags": "baked"`; then it runs, with a warning.
fn check_conv_flags(path: &Path, sidecar: &Sidecar) -> Result<(), FatalError> {
    let sites = super::graph::conv_sites(path)?;
    if sites.baked == 0 {
        return Ok(());
    }
    if sidecar.conv_flags == Some(crate::sidecar::ConvFlags::Baked) {
        tracing::warn!(
            "{}: {} convolution sites keep torch.jit.trace's cuDNN flags (sidecar: \
             conv_flags baked); --cudnn-benchmark and the TF32 policy do not reach them",
            path.display(),
            sites.baked
        );
        return Ok(());
    }
    Err(FatalError::Model {
        path: path.to_path_buf(),
        reason: format!(
            "{} convolution sites carry cuDNN flags baked in by torch.jit.trace, so \
             --cudnn-benchmark and the TF32 policy would not reach them: rewrite it with \
             `python examples/runtime_conv.py {}` (same numbers), or set \
             \"conv_flags\": \"baked\" in its sidecar to run it as it is",
            sites.baked,
            path.display()
        ),
    })
}

/// The `[1000, 9]` one-hot matrix of the `in_to_in9` table (see [`Model`]'s `in9`).
fn in9_matrix() -> Tensor {
    let mut m = vec![0f32; 1000 * in9::NAMES.len()];
    for (c, &v) in in9::table().iter().enumerate() {
        if let Ok(v) = usize::try_from(v) {
            m[c * in9::NAMES.len() + v] = 1.0;
        }
    }
    Tensor::from_slice(&m).view([1000, in9::NAMES.len() as i64])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tch_errors_and_panics_become_errors_naming_the_model() {
        let err = guarded("resnet50", || -> Result<(), tch::TchError> {
            panic!("shape mismatch in tch")
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("resnet50"), "{err}");
        let err = guarded("lite0", || {
            Tensor::f_zeros([2], (Kind::Float, Device::Cpu))?.f_view([3])
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("lite0"), "{err}");
        assert!(guarded("m", || Ok(1)).is_ok());
    }
}
