//! A model's JSON sidecar (`schemas/model-sidecar.schema.json`): what a run, a preview and
//! the report need to know of a model without loading it (so no libtorch here).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classes::{LabelSpace, Scoring};
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
    /// The outputs as ImageNet-1k classes (`bgstream export --class-map`): output `i` is
    /// `classes[i]`, and the model is scored against ImageNet labels through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_map: Option<OutputMap>,
}

/// [`Sidecar::class_map`]: the model's classes, each a set of ImageNet-1k classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputMap {
    pub name: String,
    pub classes: Vec<OutputClass>,
    /// ImageNet-1k class -> output, `-1` where no output covers it; built by
    /// [`OutputMap::index`] (empty until then).
    #[serde(skip)]
    outputs: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputClass {
    pub name: String,
    pub wnids: Vec<String>,
}

impl OutputMap {
    /// Checks the map against the model's `num_classes` and builds the label lookup.
    fn index(&mut self, num_classes: i64) -> Result<(), String> {
        if self.classes.len() as i64 != num_classes {
            return Err(format!(
                "class_map {:?} has {} classes, the model {num_classes} outputs",
                self.name,
                self.classes.len()
            ));
        }
        let imagenet = crate::classes::imagenet::classes().len();
        let mut outputs = vec![-1i64; imagenet];
        for (o, class) in self.classes.iter().enumerate() {
            for wnid in &class.wnids {
                let i = crate::classes::imagenet::index(wnid).ok_or_else(|| {
                    format!(
                        "class_map: {wnid:?} (class {:?}) is not an ImageNet-1k wnid",
                        class.name
                    )
                })?;
                if outputs[i] >= 0 && outputs[i] != o as i64 {
                    return Err(format!("class_map: {wnid} is in two classes"));
                }
                outputs[i] = o as i64;
            }
        }
        self.outputs = outputs;
        Ok(())
    }

    /// The output that covers ImageNet-1k class `label`, if any.
    pub fn output_of(&self, label: i64) -> Option<i64> {
        let o = *self.outputs.get(usize::try_from(label).ok()?)?;
        (o >= 0).then_some(o)
    }

    /// ImageNet-1k class -> output (`-1`: none), one entry per class.
    pub fn outputs(&self) -> &[i64] {
        &self.outputs
    }
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
        let text = std::fs::File::open(&path)
            .and_then(|f| crate::shard::limits::read_all(f, crate::shard::limits::SIDECAR_FILE))
            .map_err(|e| bad(format!("sidecar {} not readable", path.display()), e.into()))?;
        let mut s: Sidecar = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("sidecar {}", path.display()), e.into()))?;
        let invalid = |reason| FatalError::Model {
            path: model.to_path_buf(),
            reason,
        };
        s.validate().map_err(invalid)?;
        if let Some(map) = s.class_map.as_mut() {
            // Built once here: scoring looks every row's label up in it.
            map.index(s.num_classes).map_err(invalid)?;
        }
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

    /// Labels a sample may carry for this model: its own classes, or ImageNet-1k's when it
    /// has a class map.
    pub fn label_classes(&self) -> i64 {
        match &self.class_map {
            Some(_) => crate::classes::imagenet::classes().len() as i64,
            None => self.num_classes,
        }
    }

    /// How a row of label `label` in label space `space` is scored for this model
    /// ([`Scoring::for_model`], and through the class map when there is one).
    pub fn scoring(
        &self,
        space: Option<LabelSpace>,
        label: Option<i64>,
    ) -> Result<Scoring, String> {
        match (&self.class_map, space) {
            (Some(map), None) => Ok(Scoring::ClassMap(label.and_then(|l| map.output_of(l)))),
            _ => Scoring::for_model(space, self.num_classes),
        }
    }

    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            input_size: self.input_size,
            crop_pct: self.crop_pct,
            interpolation: self.interpolation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &serde_json::Value) -> PathBuf {
        let pt = dir.join("m.pt");
        std::fs::write(dir.join("m.json"), serde_json::to_vec(json).unwrap()).unwrap();
        pt
    }

    fn base(num_classes: i64, classes: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "name": "m", "weights": "random", "input_size": 224, "crop_pct": 0.875,
            "interpolation": "bicubic", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "num_classes": num_classes, "class_map": {"name": "two", "classes": classes}
        })
    }

    #[test]
    fn a_class_map_is_checked_and_scores_imagenet_labels() {
        let dir = tempfile::tempdir().unwrap();
        let two = serde_json::json!([
            {"name": "fish", "wnids": ["n01440764", "n01443537"]},
            {"name": "shark", "wnids": ["n01484850"]}
        ]);
        let s = Sidecar::read(&write(dir.path(), &base(2, two.clone()))).unwrap();
        assert_eq!(s.label_classes(), 1000);
        let rule = |label| s.scoring(None, Some(label)).unwrap();
        assert_eq!(
            (rule(0), rule(1), rule(2), rule(3), rule(-1), rule(5000)),
            (
                Scoring::ClassMap(Some(0)),
                Scoring::ClassMap(Some(0)),
                Scoring::ClassMap(Some(1)),
                Scoring::ClassMap(None),
                Scoring::ClassMap(None),
                Scoring::ClassMap(None)
            )
        );
        let refused = |json: serde_json::Value| {
            Sidecar::read(&write(dir.path(), &json))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(base(3, two)).contains("has 2 classes, the model 3 outputs"));
        let unknown = serde_json::json!([{"name": "x", "wnids": ["n00000000"]}]);
        assert!(refused(base(1, unknown)).contains("not an ImageNet-1k wnid"));
        let twice = serde_json::json!([
            {"name": "a", "wnids": ["n01440764"]}, {"name": "b", "wnids": ["n01440764"]}
        ]);
        assert!(refused(base(2, twice)).contains("in two classes"));
    }

    #[test]
    fn an_oversized_sidecar_is_refused_by_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let pt = dir.path().join("m.pt");
        let f = std::fs::File::create(dir.path().join("m.json")).unwrap();
        f.set_len(crate::shard::limits::SIDECAR_FILE.max + 1)
            .unwrap();
        let err = format!("{:#}", anyhow::Error::from(Sidecar::read(&pt).unwrap_err()));
        assert!(err.contains("SIDECAR_FILE_LIMIT"), "{err}");
    }
}
