//! **plan**: everything a run needs, loaded and checked, with no side effects on `--out`.
//!
//! A run is plan -> claim -> execute. [`RunPlan::build`] loads and self-checks the models,
//! the textures and the donor bank, builds the CPU stage's config and the run's typed
//! [`RunIdentity`]; only then does [`crate::claim`] touch the output folder (so a typo in a
//! model path can never cost an earlier run its files), and [`crate::pipeline::run`]
//! executes the plan.

pub mod donor_scan;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::config::RunConfig;
use crate::error::FatalError;
use crate::infer::{Model, Precision, Sidecar};
use crate::ops::textures::{texture_dir, TextureSet};
use crate::ops::variants::Variant;
use crate::prepare::PrepareConfig;

/// A run, ready to claim its output folder and execute.
pub struct RunPlan {
    pub cfg: RunConfig,
    /// Models on the first device, grouped by preprocessing.
    pub groups: Vec<Vec<Model>>,
    /// The same models on every further device (`--device cuda:0,cuda:1`): one inference
    /// worker each.
    pub other_devices: Vec<(Device, Vec<Vec<Model>>)>,
    /// The CPU stage's config: textures prepared, donor bank built when a variant needs one.
    pub prepare: Arc<PrepareConfig>,
    pub identity: RunIdentity,
}

impl RunPlan {
    /// Loads the models of `cfg` on its first device and plans the run.
    pub fn build(cfg: RunConfig) -> Result<Self, FatalError> {
        let models = cfg.load_models()?;
        Self::with_models(cfg, models)
    }

    /// Plans the run of already loaded `models` (`bgstream bench` plans one model at a time).
    pub fn with_models(cfg: RunConfig, models: Vec<Model>) -> Result<Self, FatalError> {
        let groups = group_models(models);
        let mut prepare = prepare_config(&cfg, &groups)?;
        if prepare.needs_donors() {
            let classes = prepare.donor_classes().clamp(1, 1 << 20) as usize;
            // `--donors` split evenly, at least 2 a class (an image then always has another
            // of its class to pair with when the class has two).
            let per_class = cfg.donors.div_ceil(classes).max(2);
            let readers = cfg.workers.max(cfg.readers);
            let bank = donor_scan::build_bank(&cfg.donor_shards, &prepare, per_class, readers);
            prepare.donors = Some(Arc::new(bank));
        }
        let identity = RunIdentity::new(&cfg, &groups, &prepare.textures);
        let other_devices = (cfg.devices.iter().skip(1))
            .map(|&d| Ok((d, group_models(cfg.load_models_on(d)?))))
            .collect::<Result<_, FatalError>>()?;
        Ok(RunPlan {
            cfg,
            groups,
            other_devices,
            prepare: Arc::new(prepare),
            identity,
        })
    }

    /// Run metadata stored in every Parquet file under the key `bgstream`: the identity's
    /// fields plus what may differ between ranks or reruns without changing a row.
    pub fn metadata_json(&self, shards: &[std::path::PathBuf]) -> String {
        let cfg = &self.cfg;
        let mut meta = serde_json::to_value(&self.identity).expect("serialisable");
        let extra = serde_json::json!({
            "model_paths": self.groups.iter().flatten()
                .map(|m| m.path.display().to_string()).collect::<Vec<_>>(),
            "filter": {
                "min_fg": cfg.min_fg,
                "max_fg": cfg.max_fg,
                "definition": "area of the union of boxes (x1, y1 exclusive) / image area",
            },
            "devices": cfg.devices.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>(),
            "rank": cfg.rank,
            "shards": shards.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        if let (Some(m), serde_json::Value::Object(e)) = (meta.as_object_mut(), extra) {
            m.extend(e);
        }
        meta.to_string()
    }
}

/// Groups models by preprocessing, keeping first-appearance order.
pub fn group_models(models: Vec<Model>) -> Vec<Vec<Model>> {
    let mut groups: Vec<Vec<Model>> = Vec::new();
    for m in models {
        let key = m.sidecar.preprocess().key();
        match groups
            .iter_mut()
            .find(|g| g[0].sidecar.preprocess().key() == key)
        {
            Some(g) => g.push(m),
            None => groups.push(vec![m]),
        }
    }
    groups
}

/// The CPU stage's config for these model groups (textures loaded when a variant uses
/// them; no donor bank yet).
pub fn prepare_config(cfg: &RunConfig, groups: &[Vec<Model>]) -> Result<PrepareConfig, FatalError> {
    let preprocess: Vec<_> = groups.iter().map(|g| g[0].sidecar.preprocess()).collect();
    let mut textures = TextureSet::default();
    if cfg
        .variants
        .iter()
        .any(|v| matches!(v, Variant::FgTexture | Variant::WorstBg { .. }))
    {
        let dir = texture_dir(cfg.textures.as_deref(), |k| std::env::var_os(k));
        textures = TextureSet::load(dir.as_deref())?;
        for p in &preprocess {
            textures.prepare(p.input_size, p.interpolation)?;
        }
    }
    Ok(PrepareConfig {
        groups: preprocess,
        variants: cfg.variants.clone(),
        textures,
        seed: cfg.seed,
        min_fg: cfg.min_fg,
        max_fg: cfg.max_fg,
        limits: cfg.limits,
        num_classes: groups
            .iter()
            .flatten()
            .map(|m| m.sidecar.num_classes)
            .min()
            .unwrap_or(i64::MAX),
        class_map: cfg.class_map.clone(),
        donors: None,
    })
}

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
    pub fn new(cfg: &RunConfig, groups: &[Vec<Model>], textures: &TextureSet) -> Self {
        let models = groups.iter().flatten().map(|m| m.sidecar.clone()).collect();
        let donors = cfg
            .variants
            .iter()
            .any(Variant::needs_donors)
            .then(|| DonorIdentity {
                bank_size: cfg.donors,
                donor_shards: cfg
                    .donor_shards
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
                class_map: cfg
                    .class_map
                    .as_ref()
                    .map(|m| (m.name.clone(), m.classes.clone())),
            });
        RunIdentity {
            bgstream_version: env!("CARGO_PKG_VERSION").into(),
            models,
            variants: cfg.variants.iter().map(Variant::name).collect(),
            seed: cfg.seed,
            min_fg: cfg.min_fg,
            max_fg: cfg.max_fg,
            max_pixels: cfg.limits.max_pixels,
            precision: cfg.precision,
            tf32: cfg.tf32,
            cudnn_benchmark: cfg.cudnn_benchmark,
            batch_size: cfg.batch_size,
            textures: TextureIdentity {
                names: textures.names.clone(),
                content_xxh3: if textures.names.is_empty() {
                    String::new()
                } else {
                    format!("{:016x}", textures.content_hash)
                },
            },
            donors,
            world_size: cfg.rank.world_size,
        }
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
