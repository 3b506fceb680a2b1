//! `bgstream challenge`: ImageNet-9's challenge accuracy as MadryLab/backgrounds_challenge's
//! `challenge_eval.py` defines it — a foreground is *vulnerable* to a model when some
//! background of the test set, the foreground pasted onto it, flips the model's top-1; the
//! challenge accuracy is the share of foregrounds that no background flips.
//!
//! Per foreground, every background is tried in order until one flips the model
//! (`challenge_eval.py` stops there too), so the cost is between one batch and N forwards
//! per foreground and model: N² for N images when the backgrounds are the test set's own.
//! `worst_bg:K` in a run is the cheap bound beside it (K candidates per image, an upper
//! bound on this accuracy).
//!
//! - Foregrounds: the samples of `--shards` that pass the checks and the foreground filter
//!   (by default every foreground size, as `challenge_eval.py` takes every mask), each
//!   resized and centre-cropped as the model's sidecar says, with its mask (else boxes)
//!   mapped to the crop.
//! - Backgrounds: the images of `--backgrounds` shards as they are (ImageNet-9's released
//!   `only_bg_t/val`, sharded by `bgstream shard --format imagenet9`), or by default
//!   bgstream's own `bg_tiled` rendering of every foreground image (its own included, as the
//!   released folder holds every image's).
//! - The composite is `where(mask, foreground, background)` on the model's device, in the
//!   crop's uint8 pixels: `challenge_eval.py`'s `bg * (1 - mask) + mask * fg` for a binary
//!   mask. The backgrounds are uploaded once per model; `N * size² * 3` bytes (4,050
//!   images at 224 px: 610 MB).
//! - A verdict is the model's top-1 scored as a run scores it ([`Scoring`](crate::classes::Scoring)): through
//!   `in_to_in9` for a 1,000-class model on ImageNet-9 labels.

mod output;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::classes::LabelSpace;
use crate::error::{FatalError, ItemError};
use crate::infer::{guarded, Model, Precision};
use crate::item::{Prepared, RowError};
use crate::ops::decode::Limits;
use crate::ops::variants::Variant;
use crate::source::budget::ReadLimits;
use crate::source::tar_reader::read_shard_with;
use crate::source::Sample;
use crate::stage::prepare::{prepare, PrepareConfig, PrepareSpec, Scratch};

pub use output::{write_outputs, ChallengeRow, ModelSummary};

/// What `bgstream challenge` was asked to do, validated.
pub struct ChallengeConfig {
    pub shards: Vec<PathBuf>,
    /// `None`: the `bg_tiled` rendering of every foreground image.
    pub backgrounds: Option<Vec<PathBuf>>,
    pub models: Vec<PathBuf>,
    pub device: Device,
    pub precision: Precision,
    pub batch: usize,
    pub min_fg: f64,
    pub max_fg: f64,
    pub limits: Limits,
    pub read: ReadLimits,
    pub out: PathBuf,
    /// Where every foreground crop, its mask and every background are written as raw
    /// bytes (tests compare with `challenge_eval.py`'s arithmetic from these).
    pub dump: Option<PathBuf>,
}

/// One foreground, prepared for one model.
struct Fg {
    shard: Arc<str>,
    key: String,
    label: Option<i64>,
    space: Option<LabelSpace>,
    /// `size*size*3` RGB crop and `size*size` 0/1 mask; empty when `status` is an error.
    pixels: Vec<u8>,
    mask: Vec<u8>,
    status: Result<(), RowError>,
}

/// Backgrounds of one model's crop size, in order, with their keys.
#[derive(Default)]
struct Backgrounds {
    keys: Vec<String>,
    pixels: Vec<u8>,
    /// Background images that could not be used, as `(key, error)`.
    failed: Vec<(String, String)>,
}

/// Runs the challenge for every model; writes `challenge.parquet` and `challenge.json`
/// under `cfg.out` and returns the per-model summaries.
pub fn run(cfg: &ChallengeConfig) -> Result<Vec<ModelSummary>, FatalError> {
    std::fs::create_dir_all(&cfg.out).map_err(FatalError::writing(&cfg.out))?;
    let (mut rows, mut summaries) = (Vec::new(), Vec::new());
    for path in &cfg.models {
        let model = Model::load(path, cfg.device, cfg.precision)?;
        let (model_rows, summary) = run_model(&model, cfg)?;
        rows.extend(model_rows);
        summaries.push(summary);
    }
    write_outputs(&cfg.out, &rows, &summaries)?;
    Ok(summaries)
}

/// The CPU stage for one model's crops: `variants`, foreground sizes in `fg`.
fn prepare_config(
    model: &Model,
    cfg: &ChallengeConfig,
    variants: Vec<Variant>,
    (min_fg, max_fg): (f64, f64),
) -> Result<PrepareConfig, FatalError> {
    PrepareConfig::new(PrepareSpec {
        groups: vec![model.sidecar.preprocess()],
        variants,
        textures: None,
        seed: 0,
        min_fg,
        max_fg,
        limits: cfg.limits,
        num_classes: model.sidecar.num_classes,
        class_map: None,
    })
}

/// One model over every foreground: its rows and its summary.
fn run_model(
    model: &Model,
    cfg: &ChallengeConfig,
) -> Result<(Vec<ChallengeRow>, ModelSummary), FatalError> {
    let started = Instant::now();
    let fg_cfg = prepare_config(
        model,
        cfg,
        vec![Variant::Original, Variant::BgTiled],
        (cfg.min_fg, cfg.max_fg),
    )?;
    let (fgs, own) = read_foregrounds(&cfg.shards, &fg_cfg, &cfg.read)?;
    let bgs = match &cfg.backgrounds {
        Some(paths) => {
            // A background is used whole: no foreground filter applies.
            let bg_cfg = prepare_config(model, cfg, vec![Variant::Original], (0.0, 1.0))?;
            read_backgrounds(paths, &bg_cfg, &cfg.read)?
        }
        None => own,
    };
    let size = model.sidecar.input_size as i64;
    let n = bgs.keys.len() as i64;
    if let Some(dir) = &cfg.dump {
        dump(dir, model.name(), &fgs, &bgs)?;
    }
    let ok = fgs.iter().filter(|f| f.status.is_ok()).count();
    tracing::info!(
        model = model.name(),
        "challenge: {ok} foregrounds x {n} backgrounds: at most {} forwards (every \
         background is tried until one flips the model)",
        ok as u64 * n as u64
    );
    let bank = guarded(model.name(), || {
        Tensor::f_from_slice(&bgs.pixels)?
            .f_view([n, size, size, 3])?
            .f_to_device(model.device())
    })?;
    let mut rows = Vec::with_capacity(fgs.len());
    let mut forwards = 0u64;
    for fg in &fgs {
        let row = attack(model, fg, &bank, &bgs.keys, cfg.batch, &mut forwards)?;
        rows.push(row);
    }
    let summary = ModelSummary::new(model, &rows, &bgs, forwards, started.elapsed(), cfg);
    Ok((rows, summary))
}

/// Reads every foreground shard through the CPU stage: the crops and masks, and each
/// image's `bg_tiled` rendering as a background.
fn read_foregrounds(
    shards: &[PathBuf],
    cfg: &PrepareConfig,
    read: &ReadLimits,
) -> Result<(Vec<Fg>, Backgrounds), FatalError> {
    let mut scratch = Scratch::default();
    let mut fgs = Vec::new();
    let mut own = Backgrounds::default();
    for_each_sample(shards, read, |sample| {
        let fg = foreground(&sample, cfg, &mut scratch, &mut own);
        fgs.push(fg);
    })?;
    Ok((fgs, own))
}

/// One foreground sample: its crop and mask, its `bg_tiled` frame into `own`.
fn foreground(sample: &Sample, cfg: &PrepareConfig, s: &mut Scratch, own: &mut Backgrounds) -> Fg {
    let prepared = prepare(sample, cfg, s);
    let meta = match &prepared {
        Prepared::Ready(m, _) => m.as_ref().clone(),
        Prepared::Filtered(m) | Prepared::Failed(m, _) => m.clone(),
    };
    let mut fg = Fg {
        shard: sample.shard.clone(),
        key: sample.key.clone(),
        label: meta.label,
        space: meta.label_space,
        pixels: Vec::new(),
        mask: Vec::new(),
        status: Ok(()),
    };
    fg.status = match prepared {
        Prepared::Failed(_, e) => Err(RowError::from(&e)),
        Prepared::Filtered(_) => Err(RowError {
            code: "filtered",
            message: format!(
                "foreground fraction {:.4} outside [{}, {}]",
                meta.fg_fraction.unwrap_or(f64::NAN),
                cfg.min_fg,
                cfg.max_fg
            ),
        }),
        Prepared::Ready(..) if meta.released.is_some() => Err(RowError {
            code: "released",
            message: "a released pre-rendered image has no foreground: give the foreground \
                      shards (fg_mask + original) as --shards and released backgrounds as \
                      --backgrounds"
                .into(),
        }),
        Prepared::Ready(_, frames) => {
            let frame = frames.first().map(Vec::as_slice).unwrap_or(&[]);
            let half = frame.len() / 2;
            fg.pixels = frame[..half].to_vec();
            own.keys.push(sample.key.clone());
            own.pixels.extend_from_slice(&frame[half..]);
            let crop = &s.crops[0];
            fg.mask = crop.fg.flags().into_iter().map(u8::from).collect();
            Ok(())
        }
    };
    fg
}

/// Reads every background shard: each image resized and cropped as it is.
fn read_backgrounds(
    shards: &[PathBuf],
    cfg: &PrepareConfig,
    read: &ReadLimits,
) -> Result<Backgrounds, FatalError> {
    let mut scratch = Scratch::default();
    let mut out = Backgrounds::default();
    for_each_sample(shards, read, |sample| {
        match prepare(&sample, cfg, &mut scratch) {
            Prepared::Ready(_, frames) => {
                out.keys.push(sample.key.clone());
                out.pixels.extend_from_slice(&frames[0]);
            }
            Prepared::Failed(_, e) => out.failed.push((sample.key.clone(), e.to_string())),
            Prepared::Filtered(_) => out
                .failed
                .push((sample.key.clone(), ItemError::NoBoxes.to_string())),
        }
    })?;
    if out.keys.is_empty() {
        return Err(FatalError::Data(format!(
            "no usable background in --backgrounds ({} failed)",
            out.failed.len()
        )));
    }
    Ok(out)
}

/// Calls `each` for every sample of every shard, in order; a shard that cannot be read to
/// its end is an error (a challenge over part of the test set is another number).
fn for_each_sample(
    shards: &[PathBuf],
    read: &ReadLimits,
    mut each: impl FnMut(Sample),
) -> Result<(), FatalError> {
    for path in shards {
        let report = read_shard_with(path, read, &|| false, |sample| {
            each(sample);
            true
        });
        if let Some(e) = report.error {
            return Err(FatalError::Data(format!("{}: {e}", path.display())));
        }
    }
    Ok(())
}

/// Tries the backgrounds on one foreground until one flips the model. The next batch is
/// launched before the previous one is read back, so the device is not idle meanwhile.
fn attack(
    model: &Model,
    fg: &Fg,
    bank: &Tensor,
    keys: &[String],
    batch: usize,
    forwards: &mut u64,
) -> Result<ChallengeRow, FatalError> {
    let mut row = ChallengeRow::of(model, fg);
    if row.status.is_err() {
        return Ok(row);
    }
    let scoring = match model.sidecar.scoring(fg.space, fg.label) {
        Ok(s) => s,
        Err(message) => {
            row.status = Err(RowError {
                code: "label_space",
                message,
            });
            return Ok(row);
        }
    };
    row.scoring = Some(scoring);
    let label = fg.label.unwrap_or(-1);
    let size = model.sidecar.input_size as i64;
    let n = keys.len() as i64;
    let (fg_t, mask) = guarded(model.name(), || {
        let fg_t = Tensor::f_from_slice(&fg.pixels)?
            .f_view([1, size, size, 3])?
            .f_to_device(model.device())?;
        let mask = Tensor::f_from_slice(&fg.mask)?
            .f_view([1, size, size, 1])?
            .f_to_device(model.device())?
            .f_ne(0)?;
        Ok((fg_t, mask))
    })?;
    let mut launch = |start: i64| {
        let len = (batch as i64).min(n - start);
        *forwards += len as u64; // the cost: a batch launched is computed, read or not
        guarded(model.name(), || {
            let x = fg_t.f_where_self(&mask, &bank.f_narrow(0, start, len)?)?;
            model.logits(&x)?.f_argmax(-1, false)
        })
    };
    let mut pending: Option<(i64, Tensor)> = None;
    let mut start = 0i64;
    loop {
        let launched = if start < n {
            Some((start, launch(start)?))
        } else {
            None
        };
        if let Some((first, top1)) = pending.take() {
            let classes = guarded(model.name(), || {
                Vec::<i64>::try_from(top1.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?)
            })?;
            if let Some(i) = classes.iter().position(|&c| !scoring.hits(&[c], label).0) {
                let at = first as usize + i;
                row.fooled_by = keys.get(at).cloned();
                row.fooled_class = Some(classes[i]);
                row.tried = Some(at as u64 + 1);
                row.vulnerable = Some(true);
                return Ok(row);
            }
        }
        match launched {
            Some((s, t)) => {
                start = s + (batch as i64).min(n - s);
                pending = Some((s, t));
            }
            None => break,
        }
    }
    row.tried = Some(n as u64);
    row.vulnerable = Some(false);
    Ok(row)
}

/// `DIR/<model>/fg-<n>.rgb`, `fg-<n>.mask` (0/1 bytes), `bg-<n>.rgb` and `index.json`
/// (keys, labels, size, background keys).
fn dump(
    dir: &std::path::Path,
    model: &str,
    fgs: &[Fg],
    bgs: &Backgrounds,
) -> Result<(), FatalError> {
    let dir = dir.join(crate::item::file_stem(model));
    std::fs::create_dir_all(&dir).map_err(FatalError::writing(&dir))?;
    let write = |name: String, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(FatalError::writing(&p))
    };
    let mut index = Vec::new();
    for (i, f) in fgs.iter().enumerate().filter(|(_, f)| f.status.is_ok()) {
        write(format!("fg-{i}.rgb"), &f.pixels)?;
        write(format!("fg-{i}.mask"), &f.mask)?;
        index.push(serde_json::json!({"n": i, "key": f.key, "label": f.label}));
    }
    let frame = bgs.pixels.len() / bgs.keys.len().max(1);
    for (i, px) in bgs.pixels.chunks(frame.max(1)).enumerate() {
        write(format!("bg-{i}.rgb"), px)?;
    }
    let json = serde_json::json!({"foregrounds": index, "backgrounds": bgs.keys});
    write("index.json".into(), json.to_string().as_bytes())
}
