//! A run's validated configuration (ripgrep's LowArgs -> HiArgs): the front end checks the
//! arguments, opens the device ([`crate::infer::device::open`], the one step that changes
//! process settings) and fills this in. It reads nothing but the shard list and touches no
//! output: see [`crate::run::plan`] and [`crate::run::claim`] for what follows.

use std::path::PathBuf;

use tch::Device;

use crate::classes::ClassMap;
use crate::error::FatalError;
use crate::infer::{Model, Precision};
use crate::ops::decode::Limits;
use crate::ops::variants::Variant;
use crate::run::ranks::Rank;
use crate::source::budget::ReadLimits;

/// Largest `--batch-size`: a batch of 4,096 images at 224 px is 600 MB of uint8 per buffer.
pub const MAX_BATCH: usize = 4096;

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Every shard of the run (all ranks), canonical and sorted per pattern.
    pub shards: Vec<PathBuf>,
    pub models: Vec<PathBuf>,
    pub out: PathBuf,
    /// The first of `devices` (where `bench` measures).
    pub device: Device,
    /// One inference worker per device (`--device cuda:0,cuda:1`, `cuda:all`).
    pub devices: Vec<Device>,
    pub precision: Precision,
    /// cuDNN autotuning is on (CUDA only; `--cudnn-benchmark`).
    pub cudnn_benchmark: bool,
    /// fp32 may run as TF32 (CUDA only; `--allow-tf32`).
    pub tf32: bool,
    pub batch_size: usize,
    pub variants: Vec<Variant>,
    pub textures: Option<PathBuf>,
    pub seed: u64,
    pub min_fg: f64,
    pub max_fg: f64,
    /// `--original-all`: filtered images are classified on `original` too.
    pub original_all: bool,
    pub workers: usize,
    pub readers: usize,
    /// Per-sample byte limit and the readers' shared memory budget.
    pub read_limits: ReadLimits,
    pub rows_per_file: usize,
    pub limits: Limits,
    pub fail_fast: bool,
    pub overwrite: bool,
    pub resume: bool,
    /// Coarse classes for donor choice (`--class-map`).
    pub class_map: Option<ClassMap>,
    pub class_map_path: Option<PathBuf>,
    /// Shards the donor bank is drawn from: `--donor-shards`, else every shard of the run
    /// (finished ones too, so a resumed run pairs images exactly as the first one did).
    pub donor_shards: Vec<PathBuf>,
    /// Donor bank size (split evenly over the donor classes, at least 2 each).
    pub donors: usize,
    /// This process's place in a split run (`--rank`, torchrun, Slurm).
    pub rank: Rank,
    /// The shards `rank` was given (before `--resume` drops the finished ones).
    pub rank_shards: Vec<PathBuf>,
    /// `--dump-inputs`: where the batcher writes every frame it batches (tests).
    pub dump_inputs: Option<PathBuf>,
    /// `--dump-logits`: where the batcher writes every batch's logits (gpu-check).
    pub dump_logits: Option<PathBuf>,
}

pub use crate::source::expand_shards;

impl RunConfig {
    /// Loads every model on the first device (fatal errors before any image is read).
    pub fn load_models(&self) -> Result<Vec<Model>, FatalError> {
        self.load_models_on(self.device)
    }

    /// Loads every model on `device`.
    pub fn load_models_on(&self, device: Device) -> Result<Vec<Model>, FatalError> {
        let models = self
            .models
            .iter()
            .map(|p| Model::load(p, device, self.precision))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names: Vec<&str> = models.iter().map(Model::name).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(FatalError::Config(format!(
                "two models are named {:?}: names identify rows, make them unique in the sidecars",
                w[0]
            )));
        }
        Ok(models)
    }
}
