//! The report's pictures (`aggregate --shards`): a few images in every variant, images the
//! background alone classifies correctly (the paper's figure 3) and the worst backgrounds
//! `worst_bg:K` found, each as a small JPEG with what every model predicted.
//!
//! The pixels are re-rendered from the shards through the run's CPU stage, with the run's
//! identity (`_run.json`: preprocessing, variants, seed) and the backgrounds its rows
//! recorded, so a thumbnail shows what the models were fed (scaled down).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;

use crate::aggregate::load::{rows_for_keys, Loaded, ShownRow, TOP1};
use crate::aggregate::metrics::Aggregate;
use crate::classes::{imagenet, in9, ClassNames, Scoring};
use crate::error::FatalError;
use crate::ops::decode::Limits;
use crate::ops::variants::{is_multi_row, Variant};
use crate::preview::{find_keys, render, thumb, Rendered};
use crate::run::identity::RunIdentity;
use crate::stage::donors::DonorBank;
use crate::stage::prepare::donor_scan::donor_from_sample;
use crate::stage::prepare::{preprocess_groups, PrepareConfig, PrepareSpec, Scratch};

/// The report's defaults: `bg_only` pictures per model, worst cases per `worst_bg:K`
/// variant, thumbnail side and JPEG quality (a 32-model x 15-variant report with every
/// picture stays under 5 MB: tests/data/report_size.rs).
pub const PER_MODEL: usize = 4;
pub const WORST: usize = 3;
pub const THUMB: usize = 112;
pub const QUALITY: u8 = 80;

/// An image the report shows, as a `data:` URI encoded here from bytes the program holds.
/// The report's `<img src>` takes only this type, so no input string (a key, a file name)
/// can become a URL there; the field is private to keep it that way.
#[derive(Debug, Clone, PartialEq)]
pub struct DataUri(String);

impl DataUri {
    /// JPEG bytes (a thumbnail).
    pub fn jpeg(bytes: &[u8]) -> Self {
        Self::encode("image/jpeg", bytes)
    }

    /// SVG bytes (a figure): shown through `<img>`, where an SVG cannot run script.
    pub fn svg(bytes: &[u8]) -> Self {
        Self::encode("image/svg+xml", bytes)
    }

    fn encode(mime: &'static str, bytes: &[u8]) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        DataUri(format!("data:{mime};base64,{b64}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A square RGB frame as a small JPEG `data:` URI of `side` pixels.
pub fn data_uri(frame: &[u8], size: usize, side: usize) -> Option<DataUri> {
    let jpeg = thumb::jpeg_thumb(frame, size, side, QUALITY).ok()?;
    Some(DataUri::jpeg(&jpeg))
}

/// Per slot of an image: its frame (`None`: not shown) and the background it recorded.
type RenderedKey = (Vec<Option<Vec<u8>>>, Vec<Option<String>>);

/// What a model predicted for one picture.
#[derive(Debug, Clone)]
pub struct Caption {
    pub model: String,
    pub predicted: String,
    pub right: bool,
    pub p_true: Option<f32>,
}

/// One thumbnail.
#[derive(Debug, Clone)]
pub struct Pic {
    /// `data:image/jpeg;base64,...`
    pub src: DataUri,
    pub alt: String,
    /// Another image's background or a texture (`image:KEY`, `texture:NAME`).
    pub background: Option<String>,
    pub captions: Vec<Caption>,
}

/// An image and its pictures, one per column (`None`: no pixels, e.g. no donor).
#[derive(Debug, Clone)]
pub struct Shown {
    pub key: String,
    pub class: String,
    pub pics: Vec<Option<Pic>>,
}

#[derive(Debug, Default)]
pub struct Pictures {
    /// The gallery's columns: the variants.
    pub columns: Vec<String>,
    /// The input size of the preprocessing shown (the run's first).
    pub size: usize,
    pub gallery: Vec<Shown>,
    /// Per model: `bg_only` pictures it classifies correctly.
    pub from_background: Vec<(String, Vec<Shown>)>,
    /// Per `worst_bg:K` variant: (original, worst composite) of the baseline's worst cases.
    pub worst: Vec<(String, Vec<Shown>)>,
    /// What could not be shown, and why.
    pub notes: Vec<String>,
}

/// How many pictures of each kind.
#[derive(Debug, Clone)]
pub struct PictureOptions<'a> {
    pub shards: &'a [PathBuf],
    pub textures: Option<&'a Path>,
    pub gallery: usize,
    pub per_model: usize,
    pub worst: usize,
    /// Thumbnail side in pixels.
    pub thumb: usize,
}

/// Up to `n` of `candidates` (in order), distinct labels first.
fn pick(candidates: impl Iterator<Item = u32>, labels: &[i64], n: usize) -> Vec<u32> {
    let all: Vec<u32> = candidates.collect();
    let mut seen = HashSet::new();
    let mut out: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&k| seen.insert(labels.get(k as usize).copied().unwrap_or(-1)))
        .take(n)
        .collect();
    for &k in &all {
        if out.len() >= n {
            break;
        }
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// A row's predicted class as the caption names it, and whether it is the label: through
/// `in_to_in9` for a 1,000-class model on ImageNet-9 labels (as the row was scored).
fn predicted(r: &ShownRow, names: Option<&ClassNames>, label: i64) -> (String, bool) {
    let Some(c) = r.top1 else {
        return ("–".into(), false);
    };
    if r.scoring.as_deref() != Some(Scoring::InToIn9.name()) {
        return (class_name(names, c), c == label);
    }
    match in9::to_in9(c) {
        Some(v) => (class_name(names, v), v == label),
        None => (
            format!(
                "{} (outside IN-9)",
                imagenet::name(c).map_or(format!("class {c}"), str::to_string)
            ),
            false,
        ),
    }
}

fn class_name(names: Option<&ClassNames>, label: i64) -> String {
    match names.and_then(|n| n.name(label)) {
        Some(n) => n.to_string(),
        None => format!("class {label}"),
    }
}

/// Builds the pictures of the report.
pub fn build(
    data: &Loaded,
    agg: &Aggregate,
    identity: &RunIdentity,
    names: Option<&ClassNames>,
    opts: &PictureOptions<'_>,
) -> Result<Pictures, FatalError> {
    let mut out = Pictures {
        columns: agg.variants.clone(),
        ..Default::default()
    };
    let model_id = |m: &str| data.models.iter().position(|x| x == m);
    let variant_id = |v: &str| data.variants.iter().position(|x| x == v);
    let has = |m: usize, v: Option<usize>, k: u32, bit: u8| {
        v.and_then(|v| data.cells.get(&(m, v)))
            .and_then(|l| l.binary_search_by_key(&k, |e| e.0).ok().map(|i| l[i].1))
            .is_some_and(|bits| bits & bit == bit)
    };
    let original = variant_id("original");
    let models: Vec<usize> = agg.models.iter().filter_map(|m| model_id(m)).collect();
    let keys = 0..data.keys.len() as u32;

    // Which images: the gallery's have every model's `original` row.
    let gallery = pick(
        keys.clone()
            .filter(|&k| models.iter().all(|&m| has(m, original, k, 0))),
        &data.labels,
        opts.gallery,
    );
    let bg_only = variant_id("bg_only");
    let from_background: Vec<(usize, Vec<u32>)> = models
        .iter()
        .map(|&m| {
            let ks = keys.clone().filter(|&k| has(m, bg_only, k, TOP1));
            (m, pick(ks, &data.labels, opts.per_model))
        })
        .collect();
    let baseline = model_id(&agg.baseline);
    let mut worst: Vec<(usize, Vec<u32>)> = Vec::new();
    if let Some(b) = baseline {
        for (v, name) in data.variants.iter().enumerate() {
            if !is_multi_row(name) {
                continue;
            }
            let mut cases: Vec<(f32, u32)> = data
                .worst
                .iter()
                .filter(|((m, wv, k), _)| *m == b && *wv == v && has(b, original, *k, TOP1))
                .map(|((_, _, k), w)| (w.p_true, *k))
                .collect();
            cases.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            worst.push((v, cases.iter().take(opts.worst).map(|c| c.1).collect()));
        }
    }
    let mut wanted: HashSet<String> = HashSet::new();
    let all_keys = gallery
        .iter()
        .chain(from_background.iter().flat_map(|f| &f.1))
        .chain(worst.iter().flat_map(|w| &w.1));
    for &k in all_keys {
        wanted.insert(data.keys[k as usize].clone());
    }
    if wanted.is_empty() {
        return Ok(out);
    }
    let rows = rows_for_keys(&data.files, &wanted)?;

    // Key ids of the shown images, looked up per tile.
    let key_id: HashMap<&str, u32> = wanted
        .iter()
        .filter_map(|k| Some((k.as_str(), data.keys.iter().position(|x| x == k)? as u32)))
        .collect();
    // The background each image's multi-row slot shows: the baseline's worst candidate.
    let worst_bg = |key: &str, variant: &str| -> Option<String> {
        let (b, v) = (baseline?, variant_id(variant)?);
        let k = *key_id.get(key)?;
        data.worst.get(&(b, v, k))?.background.clone()
    };
    // Donor images the shown slots took backgrounds from.
    let mut donors: HashSet<String> = HashSet::new();
    for (key, list) in &rows {
        for r in list {
            let shown = if is_multi_row(&r.variant) {
                worst_bg(key, &r.variant)
            } else {
                r.background.clone()
            };
            if let Some(d) = shown.as_deref().and_then(|b| b.strip_prefix("image:")) {
                donors.insert(d.to_string());
            }
        }
    }
    let mut need: HashSet<String> = wanted.union(&donors).cloned().collect();
    // Shards the rows name first (by file name: the run may have read them elsewhere).
    let named: HashSet<String> = rows
        .values()
        .flatten()
        .filter_map(|r| r.shard.as_deref())
        .filter_map(|s| {
            Path::new(s)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .collect();
    let mut shards: Vec<PathBuf> = opts.shards.to_vec();
    shards.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| named.contains(&*n.to_string_lossy()))
    });
    let samples = find_keys(&shards, &need);
    for s in &samples {
        need.remove(&s.key);
    }
    if !need.is_empty() {
        let mut missing: Vec<_> = need.into_iter().collect();
        missing.sort();
        out.notes.push(format!(
            "{} image(s) not found in --shards (not shown, or their donors' slots left empty): {}",
            missing.len(),
            missing.join(", ")
        ));
    }

    let variants = Variant::parse_list(&identity.variants.join(",")).map_err(|e| {
        FatalError::Config(format!(
            "the run's variants do not parse ({e}): an older run?"
        ))
    })?;
    let groups = preprocess_groups(&identity.models);
    out.size = groups.first().map_or(0, |g| g.input_size);
    let mut cfg = PrepareConfig::new(PrepareSpec {
        groups,
        variants,
        textures: opts.textures,
        seed: identity.seed,
        min_fg: identity.min_fg,
        max_fg: identity.max_fg,
        limits: Limits {
            max_pixels: identity.max_pixels,
        },
        num_classes: identity
            .models
            .iter()
            .map(|m| m.num_classes)
            .min()
            .unwrap_or(i64::MAX),
        class_map: None,
    })?;
    let textures_match = identity.textures.content_xxh3.is_empty()
        || identity.textures.content_xxh3 == format!("{:016x}", cfg.textures.content_hash);
    if !textures_match {
        out.notes.push(
            "the textures found are not the run's (content hash differs): texture slots are \
             not shown; pass the run's --textures to aggregate"
                .into(),
        );
    }
    let mut scratch = Scratch::default();
    let by_key: HashMap<&str, &crate::source::Sample> =
        samples.iter().map(|s| (s.key.as_str(), s)).collect();
    let bank: Vec<_> = donors
        .iter()
        .filter_map(|d| by_key.get(d.as_str()))
        .filter_map(|s| donor_from_sample(s, &cfg, &mut scratch))
        .collect();
    cfg.donors = Some(Arc::new(DonorBank::new(bank, &cfg.textures.names)));

    // Render each shown image once, every slot with the background its rows recorded.
    let slots = cfg.slots();
    let slot_names: Vec<String> = slots
        .iter()
        .map(|&(vi, _)| cfg.variants[vi].name())
        .collect();
    let mut rendered: HashMap<String, RenderedKey> = HashMap::new();
    for key in &wanted {
        let Some(sample) = by_key.get(key.as_str()) else {
            continue;
        };
        let empty = Vec::new();
        let list = rows.get(key).unwrap_or(&empty);
        let recorded: Vec<Option<String>> = slots
            .iter()
            .zip(&slot_names)
            .map(|(&(_, c), v)| {
                if is_multi_row(v) {
                    (c == 0).then(|| worst_bg(key, v)).flatten()
                } else {
                    list.iter()
                        .find(|r| &r.variant == v && r.status == "ok")
                        .and_then(|r| r.background.clone())
                }
            })
            .collect();
        let refs: Vec<Option<&str>> = recorded.iter().map(|r| r.as_deref()).collect();
        let frames = match render(sample, &cfg, &mut scratch, Some(&refs)) {
            Rendered::Ready(meta, groups) => (0..slots.len())
                .map(|si| {
                    let texture = recorded[si]
                        .as_deref()
                        .is_some_and(|b| b.starts_with("texture:"))
                        || matches!(cfg.variants[slots[si].0], Variant::FgTexture);
                    let usable = meta.slot_error(si).is_none() && (textures_match || !texture);
                    usable.then(|| groups[0].slot(si).to_vec())
                })
                .collect(),
            Rendered::Filtered(_) | Rendered::Failed(..) => vec![None; slots.len()],
        };
        rendered.insert(key.clone(), (frames, recorded));
    }

    let size = out.size;
    let thumb_of = |key: &str, variant: &str| -> Option<(DataUri, Option<String>)> {
        let (frames, recorded) = rendered.get(key)?;
        let si = slots
            .iter()
            .zip(&slot_names)
            .position(|(&(_, c), v)| v == variant && c == 0)?;
        let frame = frames[si].as_ref()?;
        Some((data_uri(frame, size, opts.thumb)?, recorded[si].clone()))
    };
    let captions = |key: &str, variant: &str, background: Option<&str>, only: Option<&str>| {
        let label = key_id.get(key).map_or(-1, |&k| data.labels[k as usize]);
        let empty = Vec::new();
        rows.get(key)
            .unwrap_or(&empty)
            .iter()
            .filter(|r: &&ShownRow| {
                r.variant == variant
                    && r.status == "ok"
                    && only.is_none_or(|m| r.model == m)
                    && (!is_multi_row(variant) || r.background.as_deref() == background)
            })
            .map(|r| {
                let (predicted, right) = predicted(r, names, label);
                Caption {
                    model: r.model.clone(),
                    predicted,
                    right,
                    p_true: r.p_true,
                }
            })
            .collect::<Vec<_>>()
    };
    let shown = |k: u32, columns: &[String], only: Option<&str>| -> Shown {
        let key = &data.keys[k as usize];
        let label = data.labels.get(k as usize).copied().unwrap_or(-1);
        let pics = columns
            .iter()
            .map(|v| {
                let alt = format!("{key} {v}");
                let (src, background) = thumb_of(key, v)?;
                let mut caps = captions(key, v, background.as_deref(), only);
                // Models in the report's order.
                caps.sort_by_key(|c| agg.models.iter().position(|m| *m == c.model));
                Some(Pic {
                    src,
                    alt,
                    background,
                    captions: caps,
                })
            })
            .collect();
        Shown {
            key: key.clone(),
            class: class_name(names, label),
            pics,
        }
    };
    out.gallery = gallery
        .iter()
        .map(|&k| shown(k, &agg.variants, None))
        .collect();
    out.from_background = from_background
        .iter()
        .map(|(m, ks)| {
            let name = &data.models[*m];
            let cols = ["bg_only".to_string()];
            (
                name.clone(),
                ks.iter().map(|&k| shown(k, &cols, Some(name))).collect(),
            )
        })
        .collect();
    if let Some(b) = baseline {
        let name = &data.models[b];
        out.worst = worst
            .iter()
            .map(|(v, ks)| {
                let cols = ["original".to_string(), data.variants[*v].clone()];
                (
                    data.variants[*v].clone(),
                    ks.iter().map(|&k| shown(k, &cols, Some(name))).collect(),
                )
            })
            .collect();
    }
    Ok(out)
}
