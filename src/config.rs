//! Validated run configuration built from the CLI (ripgrep's LowArgs -> HiArgs). Building
//! it reads nothing but the shard list and touches no output: see [`crate::plan`] and
//! [`crate::claim`] for what follows.

use std::path::PathBuf;

use tch::Device;

use crate::classes::ClassMap;
use crate::cli::RunArgs;
use crate::error::FatalError;
use crate::infer::{resolve_devices, Model, Precision};
use crate::ops::decode::Limits;
use crate::ops::variants::Variant;
use crate::precision::Autotune;
use crate::ranks::Rank;
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
}

pub use crate::source::expand_shards;

impl RunConfig {
    pub fn from_args(a: &RunArgs) -> Result<Self, FatalError> {
        let cfg_err = |m: &str| FatalError::Usage(m.to_string());
        if a.shards.is_empty() {
            return Err(cfg_err(
                "--shards is required (paths or globs of tar shards)",
            ));
        }
        if a.models.is_empty() {
            return Err(cfg_err("at least one --model PATH.pt is required"));
        }
        let out = a
            .out
            .clone()
            .ok_or_else(|| cfg_err("--out DIR is required"))?;
        if a.max_pixels == 0 {
            return Err(cfg_err("--max-pixels must be at least 1"));
        }
        if a.rows_per_file == 0 {
            return Err(cfg_err("--rows-per-file must be at least 1"));
        }
        if !(0.0..=1.0).contains(&a.min_fg)
            || !(0.0..=1.0).contains(&a.max_fg)
            || a.min_fg > a.max_fg
        {
            return Err(cfg_err("need 0 <= --min-fg <= --max-fg <= 1"));
        }
        let variants = Variant::parse_list(&a.variants).map_err(FatalError::Config)?;
        if a.original_all && !variants.contains(&Variant::Original) {
            return Err(cfg_err(
                "--original-all classifies filtered images on the original variant: add \
                 original to --variants",
            ));
        }
        let rank = Rank::from_env(a.rank, a.world_size)?;
        let shards = expand_shards(&a.shards)?;
        let precision = a.precision;
        if a.allow_tf32 && precision != Precision::Fp32 {
            return Err(cfg_err("--allow-tf32 applies to --precision fp32 only"));
        }
        // Before the first CUDA call: cuBLAS and cuDNN read it when they start.
        if precision == Precision::Fp32 && !a.allow_tf32 {
            crate::infer::device::forbid_tf32().map_err(FatalError::Config)?;
        }
        let devices = resolve_devices(&a.device, rank.local_rank)?;
        let device = devices[0];
        precision.check(device)?;
        let cuda = device.is_cuda();
        let autotune = if a.no_cudnn_benchmark {
            Autotune::Off
        } else {
            a.cudnn_benchmark
        };
        let cudnn_benchmark = cuda && autotune.enabled(precision);
        if cuda {
            tch::Cuda::cudnn_set_benchmark(cudnn_benchmark);
        }
        let batch_size = a.batch_size.unwrap_or(if cuda { 256 } else { 64 });
        // Batches are allocated (and pinned on CUDA) at full size: bound it up front.
        if !(1..=MAX_BATCH).contains(&batch_size) {
            return Err(FatalError::Usage(format!(
                "--batch-size must be in 1..={MAX_BATCH}"
            )));
        }
        if a.resume && a.overwrite {
            return Err(cfg_err("--resume and --overwrite contradict each other"));
        }
        let class_map = a.class_map.as_deref().map(ClassMap::read).transpose()?;
        let donor_shards = if a.donor_shards.is_empty() {
            shards.clone()
        } else {
            expand_shards(&a.donor_shards)?
        };
        if a.donors == 0 {
            return Err(cfg_err("--donors must be at least 1"));
        }
        let rank_shards = rank.assign(&shards);
        // Absolute model paths: the run's metadata must not depend on the working directory.
        let models = a
            .models
            .iter()
            .map(|p| p.canonicalize().map_err(|e| FatalError::io(p, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RunConfig {
            shards,
            models,
            out,
            device,
            devices,
            precision,
            cudnn_benchmark,
            tf32: cuda && a.allow_tf32,
            batch_size,
            variants,
            textures: a.textures.clone(),
            seed: a.seed,
            min_fg: a.min_fg,
            max_fg: a.max_fg,
            original_all: a.original_all,
            workers: a.workers.map(|w| w as usize).unwrap_or_else(|| {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
                // On a GPU, one core is left to the inference thread and the writer.
                if cuda {
                    cores.saturating_sub(1).max(1)
                } else {
                    cores
                }
            }),
            readers: a.readers as usize,
            read_limits: ReadLimits::for_readers(
                a.readers as usize,
                a.max_sample_mib << 20,
                a.max_buffered_mib << 20,
            ),
            rows_per_file: a.rows_per_file,
            limits: Limits {
                max_pixels: a.max_pixels,
            },
            fail_fast: a.fail_fast,
            overwrite: a.overwrite,
            resume: a.resume,
            class_map,
            class_map_path: a.class_map.clone(),
            donor_shards,
            donors: a.donors,
            rank,
            rank_shards,
            dump_inputs: a.dump_inputs.clone(),
        })
    }

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
