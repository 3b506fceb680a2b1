//! Validated run configuration built from the CLI (ripgrep's LowArgs -> HiArgs).

use std::path::PathBuf;

use tch::Device;

use crate::cli::RunArgs;
use crate::error::FatalError;
use crate::infer::{resolve_device, Model, Precision};
use crate::ops::decode::Limits;
use crate::ops::textures::{default_dir, TextureSet};
use crate::ops::variants::Variant;
use crate::prepare::PrepareConfig;

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub shards: Vec<PathBuf>,
    pub models: Vec<PathBuf>,
    pub out: PathBuf,
    pub file_prefix: String,
    pub device: Device,
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
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
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
        let device = resolve_device(&a.device)?;
        a.precision.check(device)?;
        prepare_out_dir(&out, a.overwrite)?;
        Ok(RunConfig {
            shards,
            models: a.models.clone(),
            out,
            file_prefix: "part".into(),
            device,
            precision: a.precision,
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
        })
    }

    /// Loads every model (fatal errors before any image is read).
    pub fn load_models(&self) -> Result<Vec<Model>, FatalError> {
        let models = self
            .models
            .iter()
            .map(|p| Model::load(p, self.device, self.precision))
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
        if self.variants.contains(&Variant::FgTexture) {
            let dir = self.textures.clone().or_else(default_dir);
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
        })
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
            "filter": {
                "min_fg": self.min_fg,
                "max_fg": self.max_fg,
                "definition": "area of the union of boxes (x1, y1 exclusive) / image area",
            },
            "device": format!("{:?}", self.device),
            "precision": self.precision,
            "batch_size": self.batch_size,
            "shards": self.shards.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

/// Creates `out`; refuses to mix runs unless `overwrite`, which removes old Parquet files.
fn prepare_out_dir(out: &std::path::Path, overwrite: bool) -> Result<(), FatalError> {
    std::fs::create_dir_all(out).map_err(|e| FatalError::output(out, e))?;
    let existing: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| FatalError::output(out, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet" || x == "tmp"))
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    if !overwrite {
        return Err(FatalError::Config(format!(
            "{} already holds {} Parquet file(s); pass --overwrite to replace them or choose another --out",
            out.display(),
            existing.len()
        )));
    }
    for p in existing {
        std::fs::remove_file(&p).map_err(|e| FatalError::output(&p, e))?;
    }
    Ok(())
}
