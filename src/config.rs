//! Validated run configuration built from the CLI (ripgrep's LowArgs -> HiArgs).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tch::Device;

use crate::classes::ClassMap;
use crate::cli::RunArgs;
use crate::error::FatalError;
use crate::infer::{resolve_devices, Model, Precision};
use crate::ops::decode::Limits;
use crate::ops::textures::{texture_dir, TextureSet};
use crate::ops::variants::Variant;
use crate::prepare::PrepareConfig;
use crate::ranks::{Plan, Rank};
use crate::sink::manifest::{self, ShardEntry};
use crate::sink::writer::shard_file_stem;

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub shards: Vec<PathBuf>,
    pub models: Vec<PathBuf>,
    pub out: PathBuf,
    /// The first of `devices` (where `bench` measures).
    pub device: Device,
    /// One inference worker per device (`--device cuda:0,cuda:1`, `cuda:all`).
    pub devices: Vec<Device>,
    pub precision: Precision,
    pub batch_size: usize,
    pub variants: Vec<Variant>,
    pub textures: Option<PathBuf>,
    pub seed: u64,
    pub min_fg: f64,
    pub max_fg: f64,
    pub workers: usize,
    pub readers: usize,
    pub rows_per_file: usize,
    pub limits: Limits,
    pub fail_fast: bool,
    pub overwrite: bool,
    /// Shards an earlier run completed (`--resume`); not read again.
    pub completed: Vec<ShardEntry>,
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
    let mut seen = HashSet::new();
    let out = out
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .filter(|p| seen.insert(p.clone()))
        .collect();
    Ok(out)
}

impl RunConfig {
    pub fn from_args(a: &RunArgs) -> Result<Self, FatalError> {
        let cfg_err = |m: &str| FatalError::Config(m.to_string());
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
        if a.batch_size == 0 {
            return Err(cfg_err("--batch-size must be at least 1"));
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
        let shards = expand_shards(&a.shards)?;
        let rank = Rank::from_env(a.rank, a.world_size)?;
        let devices = resolve_devices(&a.device, rank.local_rank)?;
        let device = devices[0];
        let precision = a.precision;
        precision.check(device)?;
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(!a.no_cudnn_benchmark);
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
        let completed = prepare_out_dir(&out, a.overwrite, a.resume, &rank, &rank_shards)?;
        Plan::write(&out, &rank, &rank_shards)?;
        let done: HashSet<&str> = completed.iter().map(|e| e.shard.as_str()).collect();
        let shards: Vec<PathBuf> = rank_shards
            .iter()
            .filter(|p| !done.contains(p.display().to_string().as_str()))
            .cloned()
            .collect();
        Ok(RunConfig {
            shards,
            models: a.models.clone(),
            out,
            device,
            devices,
            precision,
            batch_size: a.batch_size,
            variants,
            textures: a.textures.clone(),
            seed: a.seed,
            min_fg: a.min_fg,
            max_fg: a.max_fg,
            workers: a
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            readers: a.readers,
            rows_per_file: a.rows_per_file,
            limits: Limits {
                max_pixels: a.max_pixels,
            },
            fail_fast: a.fail_fast,
            overwrite: a.overwrite,
            completed,
            class_map,
            class_map_path: a.class_map.clone(),
            donor_shards,
            donors: a.donors,
            rank,
            rank_shards,
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

    /// The CPU stage's shared config for these model groups.
    pub fn prepare_config(&self, groups: &[Vec<Model>]) -> Result<PrepareConfig, FatalError> {
        let preprocess: Vec<_> = groups.iter().map(|g| g[0].sidecar.preprocess()).collect();
        let mut textures = TextureSet::default();
        if self
            .variants
            .iter()
            .any(|v| matches!(v, Variant::FgTexture | Variant::WorstBg { .. }))
        {
            let dir = texture_dir(self.textures.as_deref(), |k| std::env::var_os(k));
            textures = TextureSet::load(dir.as_deref())?;
            for p in &preprocess {
                textures.prepare(p.input_size, p.interpolation)?;
            }
        }
        Ok(PrepareConfig {
            groups: preprocess,
            variants: self.variants.clone(),
            textures,
            seed: self.seed,
            min_fg: self.min_fg,
            max_fg: self.max_fg,
            limits: self.limits,
            num_classes: groups
                .iter()
                .flatten()
                .map(|m| m.sidecar.num_classes)
                .min()
                .unwrap_or(i64::MAX),
            class_map: self.class_map.clone(),
            donors: None,
        })
    }

    /// Donors per class for the bank: `--donors` split evenly, at least 2 (so an image
    /// always has another of its class to pair with when the class has two).
    pub fn donors_per_class(&self, prep: &PrepareConfig) -> usize {
        let classes = prep.donor_classes().clamp(1, 1 << 20) as usize;
        self.donors.div_ceil(classes).max(2)
    }

    /// What must not change between a run and its `--resume`.
    pub fn identity(&self, groups: &[Vec<Model>], textures: &[String]) -> serde_json::Value {
        serde_json::json!({
            "models": groups.iter().flatten().map(|m| (m.name(), &m.sidecar.weights)).collect::<Vec<_>>(),
            "variants": self.variants.iter().map(Variant::name).collect::<Vec<_>>(),
            "seed": self.seed,
            "min_fg": self.min_fg,
            "max_fg": self.max_fg,
            "max_pixels": self.limits.max_pixels,
            "textures": textures,
            "donors": self.donor_identity(),
            "world_size": (self.rank.world_size > 1).then_some(self.rank.world_size),
        })
    }

    /// What decides the donor pairing, when a variant uses donors.
    fn donor_identity(&self) -> serde_json::Value {
        if !self.variants.iter().any(Variant::needs_donors) {
            return serde_json::Value::Null;
        }
        serde_json::json!({
            "bank_size": self.donors,
            "donor_shards": self.donor_shards.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "class_map": self.class_map.as_ref().map(|m| (&m.name, &m.classes)),
        })
    }

    /// Records the run's identity in `--out`, or checks it against the run being resumed.
    pub fn check_identity(&self, identity: &serde_json::Value) -> Result<(), FatalError> {
        let path = self.out.join(manifest::RUN);
        // Ranks share `_run.json`: each writes the same identity through its own temporary.
        let tmp = self.out.join(format!("_run.{}.json.tmp", self.rank.tag()));
        let write = || {
            std::fs::write(&tmp, serde_json::to_vec_pretty(identity).expect("json"))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| FatalError::output(&path, e))
        };
        if self.overwrite && self.rank.world_size > 1 {
            // A split run's --overwrite replaces this rank's files, never the others'; the
            // shared identity is simply rewritten.
            return write();
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                let before: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| FatalError::Input {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if &before != identity {
                    return Err(FatalError::Config(format!(
                        "this run differs from the one in {} (models, variants, seed, filter, textures, donors or world size); pass --overwrite to replace it; was {before}, now {identity}",
                        self.out.display()
                    )));
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write(),
            Err(e) => Err(FatalError::io(&path, e)),
        }
    }

    /// Run metadata stored in every Parquet file under the key `bgstream`.
    pub fn metadata_json(&self, groups: &[Vec<Model>], textures: &[String]) -> String {
        let models: Vec<_> = groups
            .iter()
            .flatten()
            .map(|m| {
                serde_json::json!({
                    "name": m.name(),
                    "weights": m.sidecar.weights,
                    "path": m.path.display().to_string(),
                    "input_size": m.sidecar.input_size,
                    "crop_pct": m.sidecar.crop_pct,
                    "interpolation": m.sidecar.interpolation,
                    "mean": m.sidecar.mean,
                    "std": m.sidecar.std,
                })
            })
            .collect();
        serde_json::json!({
            "bgstream_version": env!("CARGO_PKG_VERSION"),
            "models": models,
            "variants": self.variants.iter().map(Variant::name).collect::<Vec<_>>(),
            "seed": self.seed,
            "textures": textures,
            "donors": self.donor_identity(),
            "filter": {
                "min_fg": self.min_fg,
                "max_fg": self.max_fg,
                "definition": "area of the union of boxes (x1, y1 exclusive) / image area",
            },
            "device": format!("{:?}", self.device),
            "devices": self.devices.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>(),
            "precision": self.precision,
            "batch_size": self.batch_size,
            "rank": self.rank,
            "shards": self.shards.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

/// Creates `out` and settles what an earlier run left there. Returns the shards the
/// manifest records as complete (only with `resume`).
///
/// - `overwrite`: removes earlier predictions, temporary files and the manifest.
/// - `resume`: keeps the files of complete shards, deletes everything else an interrupted
///   run left (files of incomplete shards, `*.tmp`), and drops torn manifest lines.
/// - neither: refuses a folder that already holds a run.
///
/// A rank of a split run (`W > 1`) only looks at its own files — the part files of its
/// shards, its manifest and plan — since the other ranks write beside it at the same time.
fn prepare_out_dir(
    out: &Path,
    overwrite: bool,
    resume: bool,
    rank: &Rank,
    shards: &[PathBuf],
) -> Result<Vec<ShardEntry>, FatalError> {
    std::fs::create_dir_all(out).map_err(|e| FatalError::output(out, e))?;
    let manifest_name = rank.manifest_name();
    let split = rank.world_size > 1;
    let stems: Vec<String> = shards
        .iter()
        .map(|p| format!("{}-", shard_file_stem(&p.display().to_string())))
        .collect();
    let mine = |name: &str| -> bool {
        let own_meta = name == manifest_name
            || name == format!("{manifest_name}.tmp")
            || name == rank.plan_name()
            || name == format!("{}.tmp", rank.plan_name());
        if split {
            own_meta
                || ((name.ends_with(".parquet") || name.ends_with(".parquet.tmp"))
                    && stems.iter().any(|s| name.starts_with(s.as_str())))
        } else {
            own_meta
                || name.ends_with(".parquet")
                || name.ends_with(".tmp")
                || name == manifest::RUN
        }
    };
    let leftovers: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| FatalError::output(out, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| mine(p.file_name().and_then(|n| n.to_str()).unwrap_or("")))
        .collect();
    let remove = |p: &Path| std::fs::remove_file(p).map_err(|e| FatalError::output(p, e));
    if resume {
        let entries = manifest::read(out, &manifest_name)?;
        let keep: HashSet<&str> = entries
            .iter()
            .flat_map(|e| e.files.iter().map(String::as_str))
            .collect();
        for p in &leftovers {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if (name.ends_with(".parquet") && !keep.contains(name)) || name.ends_with(".tmp") {
                remove(p)?;
            }
        }
        manifest::compact(out, &manifest_name, &entries)?;
        return Ok(entries);
    }
    // A plan alone (a rank that started and wrote nothing yet) is not a run to protect.
    let holds_run = leftovers.iter().any(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n != rank.plan_name())
    });
    if !holds_run {
        return Ok(Vec::new());
    }
    if !overwrite {
        return Err(FatalError::Config(format!(
            "{} already holds a run ({} file(s){}); pass --resume to finish it, --overwrite to replace it, or choose another --out",
            out.display(),
            leftovers.len(),
            if split { format!(" of rank {}", rank.rank) } else { String::new() }
        )));
    }
    for p in &leftovers {
        remove(p)?;
    }
    Ok(Vec::new())
}
