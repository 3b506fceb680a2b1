//! `bgstream preview`: contact sheets of the pixels a run would feed its models, and with
//! `--model` what each model makes of them.

use std::path::{Path, PathBuf};

use tch::Tensor;

use super::sheet::{self, Sheet, SheetRow, Tile};
use super::{find_samples, render, thumb, Rendered, Want};
use crate::classes::{ClassNames, Scoring};
use crate::error::FatalError;
use crate::infer::{Model, Precision};
use crate::item::{file_stem, ItemMeta, Prediction};
use crate::ops::decode::Limits;
use crate::ops::geometry::{Interpolation, Preprocess};
use crate::ops::variants::Variant;
use crate::stage::prepare::{preprocess_groups, PrepareConfig, PrepareSpec, Scratch};

/// Per image, per slot: a model's prediction (`None`: the slot has no pixels).
/// Per (image, slot): the prediction and how it is compared with the label (a row's
/// `scoring`; `None` when the model cannot be scored against this label space).
type Grid = Vec<Vec<Option<(Prediction, Option<Scoring>)>>>;

/// Frames per forward pass of the captioning models.
const CHUNK: usize = 32;

/// What `bgstream preview` wrote.
pub struct PreviewOutput {
    pub sheets: Vec<PathBuf>,
    pub tiles: usize,
    pub images: usize,
    pub index: PathBuf,
}

/// The column label of each slot: the variant, or `worst_bg:K #c` per candidate.
pub fn slot_labels(cfg: &PrepareConfig) -> Vec<String> {
    cfg.slots()
        .into_iter()
        .map(|(vi, c)| {
            let v = &cfg.variants[vi];
            if v.slots() > 1 {
                format!("{} #{}", v.name(), c + 1)
            } else {
                v.name()
            }
        })
        .collect()
}

/// `name (label)`, or the label alone.
pub fn class_text(names: Option<&ClassNames>, label: i64) -> String {
    match names.and_then(|n| n.name(label)) {
        Some(n) => format!("{n} ({label})"),
        None => format!("class {label}"),
    }
}

/// What `bgstream preview` shows, checked by the front end; `device` is already open.
#[derive(Debug, Clone)]
pub struct PreviewConfig {
    pub shards: Vec<PathBuf>,
    /// Models whose preprocessing the tiles follow and whose verdicts caption them.
    pub models: Vec<PathBuf>,
    pub device: tch::Device,
    pub variants: Vec<Variant>,
    pub want: Want,
    pub out: PathBuf,
    /// Without a model: the tiles' input size and centre-crop fraction.
    pub input_size: usize,
    pub crop_pct: f64,
    pub class_names: Option<PathBuf>,
    pub textures: Option<PathBuf>,
    pub class_map: Option<PathBuf>,
    pub donor_shards: Vec<PathBuf>,
    pub donors: usize,
    pub seed: u64,
    pub min_fg: f64,
    pub max_fg: f64,
    pub limits: Limits,
}

/// Everything a sheet is drawn from.
struct Shown<'a> {
    cfg: &'a PrepareConfig,
    rendered: &'a [Rendered],
    labels: &'a [String],
    names: Option<&'a ClassNames>,
    /// Per group, per model of that group: a prediction per (image, slot) shown.
    predictions: &'a [Vec<(String, Grid)>],
    out: &'a Path,
}

pub fn run(p: &PreviewConfig) -> Result<PreviewOutput, FatalError> {
    let models = (p.models.iter())
        .map(|m| Model::load(m, p.device, Precision::Fp32))
        .collect::<Result<Vec<_>, _>>()?;
    let label_classes: Vec<i64> = models.iter().map(|m| m.sidecar.label_classes()).collect();
    let cfg = prepare_config(p, &models, &label_classes)?;
    let names = ClassNames::for_models(p.class_names.as_deref(), &label_classes)?;
    let samples = find_samples(&p.shards, &p.want, &cfg)?;
    if samples.is_empty() {
        return Err(FatalError::Config(
            "no image in the shards passes the checks and the foreground filter".into(),
        ));
    }
    let mut scratch = Scratch::default();
    let rendered: Vec<Rendered> = (samples.iter())
        .map(|s| render(s, &cfg, &mut scratch, None))
        .collect();
    let labels = slot_labels(&cfg);
    let mut predictions: Vec<Vec<(String, Grid)>> = Vec::new();
    for (gi, group) in cfg.groups.iter().enumerate() {
        let mut per_model = Vec::new();
        for m in (models.iter()).filter(|m| m.sidecar.preprocess().key() == group.key()) {
            let grid = predict(m, gi, &rendered, labels.len())?;
            per_model.push((m.name().to_string(), grid));
        }
        predictions.push(per_model);
    }
    std::fs::create_dir_all(&p.out).map_err(|e| FatalError::output(&p.out, e))?;
    let shown = Shown {
        cfg: &cfg,
        rendered: &rendered,
        labels: &labels,
        names: names.as_ref(),
        predictions: &predictions,
        out: &p.out,
    };
    let mut index = Index::new();
    let (mut sheets, mut tiles, mut stems) = (Vec::new(), 0, super::StemSet::default());
    for gi in 0..cfg.groups.len() {
        let mut rows = Vec::new();
        for ii in 0..rendered.len() {
            rows.push(shown.image_row(gi, ii, &mut index, &mut stems, &mut tiles)?);
        }
        sheets.push(shown.write_sheet(gi, rows)?);
    }
    let index_path = p.out.join("tiles.csv");
    crate::atomic::write_file(&index_path, &index.finish(&index_path)?)?;
    Ok(PreviewOutput {
        sheets,
        tiles,
        images: rendered.len(),
        index: index_path,
    })
}

/// The run's CPU stage for the preview: the models' preprocessing groups (or the flags'
/// size and crop without a model), variants, textures and donor bank.
fn prepare_config(
    p: &PreviewConfig,
    models: &[Model],
    num_classes: &[i64],
) -> Result<PrepareConfig, FatalError> {
    let groups = if models.is_empty() {
        if !(0.0..=1.0).contains(&p.crop_pct) || p.crop_pct == 0.0 {
            return Err(FatalError::Config("--crop-pct must be in (0, 1]".into()));
        }
        vec![Preprocess {
            input_size: p.input_size.clamp(8, 4096),
            crop_pct: p.crop_pct,
            interpolation: Interpolation::Bicubic,
        }]
    } else {
        preprocess_groups(models.iter().map(|m| &m.sidecar))
    };
    let class_map = (p.class_map.as_deref())
        .map(crate::classes::ClassMap::read)
        .transpose()?;
    let mut cfg = PrepareConfig::new(PrepareSpec {
        groups,
        variants: p.variants.clone(),
        textures: p.textures.as_deref(),
        seed: p.seed,
        min_fg: p.min_fg,
        max_fg: p.max_fg,
        limits: p.limits,
        num_classes: num_classes.iter().copied().min().unwrap_or(i64::MAX),
        class_map,
    })?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    cfg.attach_donors(&p.donor_shards, p.donors, threads);
    Ok(cfg)
}

/// What every `tiles.csv` line of one tile repeats.
struct TileId<'a> {
    key: &'a str,
    label: String,
    class: String,
    slot: String,
    variant: &'a str,
    size: String,
}

/// `tiles.csv`: one line per tile and model.
struct Index(csv::Writer<Vec<u8>>);

impl Index {
    const HEADER: [&'static str; 14] = [
        "key",
        "label",
        "class",
        "slot",
        "variant",
        "size",
        "file",
        "background",
        "model",
        "top1",
        "top1_class",
        "top1_prob",
        "p_true",
        "error",
    ];

    fn new() -> Self {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing into memory cannot fail.
        let _ = w.write_record(Self::HEADER);
        Index(w)
    }

    /// One line for tile `t`: its file, background, a model's prediction, an error.
    fn line(&mut self, t: &TileId<'_>, file: &str, bg: &str, pred: [&str; 5], error: &str) {
        let [model, top1, top1_class, top1_prob, p_true] = pred;
        let _ = self.0.write_record([
            t.key, &t.label, &t.class, &t.slot, t.variant, &t.size, file, bg, model, top1,
            top1_class, top1_prob, p_true, error,
        ]);
    }

    fn finish(self, path: &Path) -> Result<Vec<u8>, FatalError> {
        (self.0.into_inner()).map_err(|e| FatalError::output(path, e.to_string()))
    }
}

impl Shown<'_> {
    /// One image's row of group `gi`'s sheet; its tiles are written and indexed.
    fn image_row(
        &self,
        gi: usize,
        ii: usize,
        index: &mut Index,
        stems: &mut super::StemSet,
        tiles: &mut usize,
    ) -> Result<SheetRow<'_>, FatalError> {
        let r = &self.rendered[ii];
        let (meta, note) = match r {
            Rendered::Ready(meta, _) => (&**meta, None),
            Rendered::Filtered(meta) => (
                meta,
                Some(format!(
                    "filtered out: foreground fraction {:.3} outside [{}, {}] (a run records no rows)",
                    meta.fg_fraction.unwrap_or(f64::NAN),
                    self.cfg.min_fg,
                    self.cfg.max_fg
                )),
            ),
            Rendered::Failed(meta, e) => (meta, Some(format!("{}: {e}", e.code()))),
        };
        let label = meta.label.unwrap_or(-1);
        let mut title = vec![meta.key.clone(), class_text(self.names, label)];
        if let Some(fg) = meta.fg_fraction {
            title.push(format!("foreground {:.0}%", 100.0 * fg));
        }
        let mut row = SheetRow {
            title,
            tiles: Vec::new(),
            note,
        };
        if let Rendered::Ready(meta, groups) = r {
            let dir = self.out.join("tiles").join(stems.stem(&meta.key)?);
            std::fs::create_dir_all(&dir).map_err(|e| FatalError::output(&dir, e))?;
            for si in 0..self.labels.len() {
                let tile = self.tile(gi, ii, si, (meta, &groups[gi]), &dir, index)?;
                *tiles += usize::from(tile.is_some());
                row.tiles.push(tile);
            }
        }
        Ok(row)
    }

    /// Slot `si` of image `ii` in group `gi`: its PNG, its index lines, its captions (`None`
    /// when the slot has no pixels).
    fn tile<'a>(
        &'a self,
        gi: usize,
        ii: usize,
        si: usize,
        (meta, g): (&ItemMeta, &'a super::GroupPixels),
        dir: &Path,
        index: &mut Index,
    ) -> Result<Option<Tile<'a>>, FatalError> {
        let size = self.cfg.groups[gi].input_size;
        let label = meta.label.unwrap_or(-1);
        let id = TileId {
            key: &meta.key,
            label: label.to_string(),
            class: class_text(self.names, label),
            slot: si.to_string(),
            variant: &self.labels[si],
            size: size.to_string(),
        };
        if let Some(err) = meta.slot_error(si) {
            let error = format!("{}: {}", err.code, err.message);
            index.line(&id, "", "", [""; 5], &error);
            return Ok(None);
        }
        let file = dir.join(format!("{:02}-{}-{size}px.png", si, file_stem(id.variant)));
        thumb::write_png(&file, g.slot(si), size, size)?;
        let rel = file
            .strip_prefix(self.out)
            .unwrap_or(&file)
            .display()
            .to_string();
        let background = (meta.background(si))
            .map(|b| b.to_string())
            .unwrap_or_default();
        let mut captions = Vec::new();
        if !background.is_empty() {
            captions.push(format!("bg {background}"));
        }
        if self.predictions[gi].is_empty() {
            index.line(&id, &rel, &background, [""; 5], "");
        }
        for (model, preds) in &self.predictions[gi] {
            let Some((pr, scoring)) = preds[ii][si] else {
                continue;
            };
            let top = pr.top5[0];
            let top_name =
                (self.names.and_then(|n| n.name(top))).map_or(top.to_string(), str::to_string);
            let mark = match scoring.map(|s| s.hits(&pr.top5[..1], label).0) {
                Some(true) => "right",
                Some(false) => "wrong",
                None => "not scored (label space)",
            };
            captions.push(format!("{model}: {top_name}"));
            captions.push(format!("  {mark}, p(true) {:.3}", pr.p_true));
            let (top, prob, p_true) = (
                top.to_string(),
                pr.top5_prob[0].to_string(),
                pr.p_true.to_string(),
            );
            let pred = [model.as_str(), &top, &top_name, &prob, &p_true];
            index.line(&id, &rel, &background, pred, "");
        }
        // Boxes and mask outlines are drawn on the original only.
        let original = self.cfg.variants[self.cfg.slots()[si].0] == Variant::Original;
        Ok(Some(Tile {
            pixels: g.slot(si),
            size,
            boxes: if original { &g.boxes } else { &[] },
            outline: if original { &g.outline } else { &[] },
            captions,
        }))
    }

    /// Draws group `gi`'s sheet and writes it as PNG.
    fn write_sheet(&self, gi: usize, rows: Vec<SheetRow<'_>>) -> Result<PathBuf, FatalError> {
        let p = &self.cfg.groups[gi];
        let size = p.input_size;
        let models_here: Vec<&str> = (self.predictions[gi].iter())
            .map(|(m, _)| m.as_str())
            .collect();
        let title = format!(
            "{size} px, crop {:.3}, {:?}{}; boxes and mask outlines in red on original; seed {}",
            p.crop_pct,
            p.interpolation,
            if models_here.is_empty() {
                String::new()
            } else {
                format!("; captions: {}", models_here.join(", "))
            },
            self.cfg.seed
        )
        .to_lowercase();
        let (rgb, w, h) = sheet::draw(&Sheet {
            title,
            columns: self.labels.to_vec(),
            rows,
        })
        .map_err(|e| FatalError::output(self.out, e))?;
        let path = if self.cfg.groups.len() == 1 {
            self.out.join("preview.png")
        } else {
            self.out.join(format!("preview-{size}px.png"))
        };
        thumb::write_png(&path, &rgb, w, h)?;
        Ok(path)
    }
}

/// `m`'s prediction for every (image, slot) of group `gi` that has pixels.
fn predict(m: &Model, gi: usize, rendered: &[Rendered], slots: usize) -> Result<Grid, FatalError> {
    let size = m.sidecar.input_size as i64;
    let mut frames: Vec<(usize, usize, &[u8], i64, &ItemMeta)> = Vec::new();
    for (ii, r) in rendered.iter().enumerate() {
        if let Rendered::Ready(meta, groups) = r {
            for si in 0..slots {
                if meta.slot_error(si).is_none() {
                    frames.push((
                        ii,
                        si,
                        groups[gi].slot(si),
                        meta.label.unwrap_or(0),
                        &**meta,
                    ));
                }
            }
        }
    }
    let mut out = vec![vec![None; slots]; rendered.len()];
    for chunk in frames.chunks(CHUNK) {
        let pixels: Vec<u8> = chunk.iter().flat_map(|f| f.2.iter().copied()).collect();
        let n = chunk.len() as i64;
        let x = Tensor::from_slice(&pixels)
            .view([n, size, size, 3])
            .to_device(m.device());
        let labels: Vec<i64> = chunk.iter().map(|f| f.3).collect();
        let labels = Tensor::from_slice(&labels).to_device(m.device());
        let got = m.launch(&x, &labels)?.collect(m.name())?;
        for (i, f) in chunk.iter().take(got.predictions.len()).enumerate() {
            // Scored as the run's rows are; unscorable: the raw prediction, no verdict.
            out[f.0][f.1] = Some(match m.score(&got, i, Some(f.3), f.4.label_space) {
                Ok((p, s)) => (p, Some(s)),
                Err(_) => (got.predictions[i], None),
            });
        }
    }
    Ok(out)
}
