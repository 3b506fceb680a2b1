//! **plan**: everything a run needs, loaded and checked, with no side effects on `--out`.
//!
//! A run is plan -> claim -> execute. [`RunPlan::build`] loads and self-checks the models,
//! the textures and the donor bank, builds the CPU stage's config and the run's typed
//! [`RunIdentity`]; only then does [`crate::run::claim`] touch the output folder (so a typo in a
//! model path can never cost an earlier run its files), and [`crate::pipeline::run`]
//! executes the plan.

pub use crate::run::identity::{DonorIdentity, RunIdentity, TextureIdentity};
pub use crate::stage::prepare::donor_scan;

use std::sync::Arc;

use tch::Device;

use crate::error::FatalError;
use crate::infer::Model;
use crate::ops::textures::TextureSet;
use crate::ops::variants::Variant;
use crate::run::settings::RunConfig;
use crate::stage::prepare::{PrepareConfig, PrepareSpec};

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
        prepare.original_all = cfg.original_all;
        prepare.attach_donors(&cfg.donor_shards, cfg.donors, cfg.workers.max(cfg.readers));
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
    PrepareConfig::new(PrepareSpec {
        groups: groups.iter().map(|g| g[0].sidecar.preprocess()).collect(),
        variants: cfg.variants.clone(),
        textures: cfg.textures.as_deref(),
        seed: cfg.seed,
        min_fg: cfg.min_fg,
        max_fg: cfg.max_fg,
        limits: cfg.limits,
        num_classes: groups
            .iter()
            .flatten()
            .map(|m| m.sidecar.label_classes())
            .min()
            .unwrap_or(i64::MAX),
        class_map: cfg.class_map.clone(),
    })
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
            original_all: cfg.original_all,
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
}
