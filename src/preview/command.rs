//! `bgstream preview`: contact sheets of the pixels a run would feed its models, and with
//! `--model` what each model makes of them.

use std::path::PathBuf;

use tch::Tensor;

use super::sheet::{self, Sheet, SheetRow, Tile};
use super::{file_stem, find_samples, render, thumb, Rendered, Want};
use crate::classes::{ClassNames, Scoring};
use crate::cli::PreviewArgs;
use crate::error::FatalError;
use crate::infer::{resolve_device, Model, Precision};
use crate::item::{ItemMeta, Prediction};
use crate::ops::decode::Limits;
use crate::ops::geometry::{Interpolation, Preprocess};
use crate::ops::variants::Variant;
use crate::prepare::{preprocess_groups, PrepareConfig, PrepareSpec, Scratch};
use crate::source::expand_shards;

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

pub fn run(a: &PreviewArgs) -> Result<PreviewOutput, FatalError> {
    let cfg_err = |m: String| FatalError::Config(m);
    if a.keys.is_empty() && a.n == 0 {
        return Err(cfg_err("--n must be at least 1".into()));
    }
    let variants = Variant::parse_list(&a.variants).map_err(FatalError::Config)?;
    let shards = expand_shards(&a.shards)?;
    let device = resolve_device(&a.device, None)?;
    if device.is_cuda() {
        // fp32 means fp32, as in a run (before CUDA starts).
        crate::infer::device::forbid_tf32().map_err(FatalError::Config)?;
    }
    let models = a
        .models
        .iter()
        .map(|p| Model::load(p, device, Precision::Fp32))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = if models.is_empty() {
        if !(0.0..=1.0).contains(&a.crop_pct) || a.crop_pct == 0.0 {
            return Err(cfg_err("--crop-pct must be in (0, 1]".into()));
        }
        vec![Preprocess {
            input_size: a.input_size.clamp(8, 4096),
            crop_pct: a.crop_pct,
            interpolation: Interpolation::Bicubic,
        }]
    } else {
        preprocess_groups(models.iter().map(|m| &m.sidecar))
    };
    let num_classes: Vec<i64> = models.iter().map(|m| m.sidecar.num_classes).collect();
    let class_map = a
        .class_map
        .as_deref()
        .map(crate::classes::ClassMap::read)
        .transpose()?;
    let mut cfg = PrepareConfig::new(PrepareSpec {
        groups,
        variants,
        textures: a.textures.as_deref(),
        seed: a.seed,
        min_fg: a.min_fg,
        max_fg: a.max_fg,
        limits: Limits {
            max_pixels: a.max_pixels,
        },
        num_classes: num_classes.iter().copied().min().unwrap_or(i64::MAX),
        class_map,
    })?;
    let donor_shards = if a.donor_shards.is_empty() {
        shards.clone()
    } else {
        expand_shards(&a.donor_shards)?
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    cfg.attach_donors(&donor_shards, a.donors, threads);
    let names = ClassNames::for_models(a.class_names.as_deref(), &num_classes)?;

    let want = if a.keys.is_empty() {
        Want::First(a.n)
    } else {
        Want::Keys(a.keys.clone())
    };
    let samples = find_samples(&shards, &want, &cfg)?;
    if samples.is_empty() {
        return Err(cfg_err(
            "no image in the shards passes the checks and the foreground filter".into(),
        ));
    }
    let mut scratch = Scratch::default();
    let rendered: Vec<Rendered> = samples
        .iter()
        .map(|s| render(s, &cfg, &mut scratch, None))
        .collect();
    let labels = slot_labels(&cfg);
    let slots = cfg.slots();

    // Per group, per model of that group: a prediction per (image, slot) shown.
    let mut predictions: Vec<Vec<(String, Grid)>> = Vec::new();
    for (gi, p) in cfg.groups.iter().enumerate() {
        let mut per_model = Vec::new();
        for m in models
            .iter()
            .filter(|m| m.sidecar.preprocess().key() == p.key())
        {
            per_model.push((
                m.name().to_string(),
                predict(m, gi, &rendered, labels.len())?,
            ));
        }
        predictions.push(per_model);
    }

    std::fs::create_dir_all(&a.out).map_err(|e| FatalError::output(&a.out, e))?;
    let mut index = csv::Writer::from_writer(Vec::new());
    let _ = index.write_record([
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
    ]);
    let mut sheets = Vec::new();
    let mut tiles = 0;
    let mut stems = super::StemSet::default();
    for (gi, p) in cfg.groups.iter().enumerate() {
        let size = p.input_size;
        let mut rows = Vec::new();
        for (ii, r) in rendered.iter().enumerate() {
            let (meta, note) = match r {
                Rendered::Ready(meta, _) => (&**meta, None),
                Rendered::Filtered(meta) => (
                    meta,
                    Some(format!(
                        "filtered out: foreground fraction {:.3} outside [{}, {}] (a run records no rows)",
                        meta.fg_fraction.unwrap_or(f64::NAN),
                        cfg.min_fg,
                        cfg.max_fg
                    )),
                ),
                Rendered::Failed(meta, e) => (meta, Some(format!("{}: {e}", e.code()))),
            };
            let label = meta.label.unwrap_or(-1);
            let mut title = vec![meta.key.clone(), class_text(names.as_ref(), label)];
            if let Some(fg) = meta.fg_fraction {
                title.push(format!("foreground {:.0}%", 100.0 * fg));
            }
            let mut row = SheetRow {
                title,
                tiles: Vec::new(),
                note,
            };
            if let Rendered::Ready(meta, groups) = r {
                let g = &groups[gi];
                let dir = a.out.join("tiles").join(stems.stem(&meta.key)?);
                std::fs::create_dir_all(&dir).map_err(|e| FatalError::output(&dir, e))?;
                let class = class_text(names.as_ref(), label);
                let mut record =
                    |si: usize, col: &str, file: &str, bg: &str, pred: [&str; 5], error: &str| {
                        let (si, size, label) =
                            (si.to_string(), size.to_string(), label.to_string());
                        let _ = index.write_record([
                            meta.key.as_str(),
                            &label,
                            &class,
                            &si,
                            col,
                            &size,
                            file,
                            bg,
                            pred[0],
                            pred[1],
                            pred[2],
                            pred[3],
                            pred[4],
                            error,
                        ]);
                    };
                for (si, col) in labels.iter().enumerate() {
                    if let Some(err) = meta.slot_error(si) {
                        let error = format!("{}: {}", err.code, err.message);
                        record(si, col, "", "", [""; 5], &error);
                        row.tiles.push(None);
                        continue;
                    }
                    let file = dir.join(format!("{:02}-{}-{size}px.png", si, file_stem(col)));
                    thumb::write_png(&file, g.slot(si), size, size)?;
                    tiles += 1;
                    let rel = file
                        .strip_prefix(&a.out)
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    let background = meta
                        .background(si)
                        .map(|b| b.to_string())
                        .unwrap_or_default();
                    let mut captions = Vec::new();
                    if !background.is_empty() {
                        captions.push(format!("bg {background}"));
                    }
                    if predictions[gi].is_empty() {
                        record(si, col, &rel, &background, [""; 5], "");
                    }
                    for (model, preds) in &predictions[gi] {
                        let Some((pr, scoring)) = preds[ii][si] else {
                            continue;
                        };
                        let top = pr.top5[0];
                        let top_name = names
                            .as_ref()
                            .and_then(|n| n.name(top))
                            .map_or(top.to_string(), str::to_string);
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
                        record(
                            si,
                            col,
                            &rel,
                            &background,
                            [model, &top, &top_name, &prob, &p_true],
                            "",
                        );
                    }
                    row.tiles.push(Some(Tile {
                        pixels: g.slot(si),
                        size,
                        boxes: if cfg.variants[slots[si].0] == Variant::Original {
                            &g.boxes
                        } else {
                            &[]
                        },
                        outline: if cfg.variants[slots[si].0] == Variant::Original {
                            &g.outline
                        } else {
                            &[]
                        },
                        captions,
                    }));
                }
            }
            rows.push(row);
        }
        let models_here: Vec<&str> = predictions[gi].iter().map(|(m, _)| m.as_str()).collect();
        let title = format!(
            "{size} px, crop {:.3}, {:?}{}; boxes and mask outlines in red on original; seed {}",
            p.crop_pct,
            p.interpolation,
            if models_here.is_empty() {
                String::new()
            } else {
                format!("; captions: {}", models_here.join(", "))
            },
            cfg.seed
        )
        .to_lowercase();
        let (rgb, w, h) = sheet::draw(&Sheet {
            title,
            columns: labels.clone(),
            rows,
        })
        .map_err(|e| FatalError::output(&a.out, e))?;
        let path = if cfg.groups.len() == 1 {
            a.out.join("preview.png")
        } else {
            a.out.join(format!("preview-{size}px.png"))
        };
        thumb::write_png(&path, &rgb, w, h)?;
        sheets.push(path);
    }
    let index_path = a.out.join("tiles.csv");
    let bytes = index
        .into_inner()
        .map_err(|e| FatalError::output(&index_path, e.to_string()))?;
    crate::atomic::write_file(&index_path, &bytes)?;
    Ok(PreviewOutput {
        sheets,
        tiles,
        images: rendered.len(),
        index: index_path,
    })
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
            out[f.0][f.1] = Some(
                match got.scored(i, f.4.label_space, m.sidecar.num_classes) {
                    Ok((p, s)) => (p, Some(s)),
                    Err(_) => (got.predictions[i], None),
                },
            );
        }
    }
    Ok(out)
}
