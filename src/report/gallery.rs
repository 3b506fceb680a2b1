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
use crate::sidecar::OutputMap;
use crate::source::Sample;
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

/// A class-mapped model's top-1 output, named by its class map, and whether it covers the
/// ImageNet label (as the row was scored).
fn mapped(r: &ShownRow, map: &OutputMap, label: i64) -> (String, bool) {
    let Some(class) = r
        .top1
        .and_then(|c| map.classes.get(usize::try_from(c).ok()?))
    else {
        return ("–".into(), false);
    };
    let wnid = usize::try_from(label)
        .ok()
        .and_then(|l| imagenet::classes().get(l));
    let right = wnid.is_some_and(|(w, _)| class.wnids.iter().any(|x| x == w));
    (class.name.clone(), right)
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
    let picks = Picks::choose(data, agg, opts);
    let wanted = picks.wanted(data);
    if wanted.is_empty() {
        return Ok(out);
    }
    let ctx = Context::new(data, picks.baseline, &wanted)?;
    let donors = ctx.donors();
    let samples = ctx.find_samples(&wanted, &donors, opts.shards, &mut out.notes);
    let by_key: HashMap<&str, &Sample> = samples.iter().map(|s| (s.key.as_str(), s)).collect();
    let mut scratch = Scratch::default();
    let (cfg, textures_match) = prepare_config(
        identity,
        opts.textures,
        &donors,
        &by_key,
        &mut scratch,
        &mut out,
    )?;
    let frames = Frames::render(&ctx, &wanted, &by_key, &cfg, &mut scratch, textures_match);
    let shows = Shows {
        ctx: &ctx,
        agg,
        names,
        maps: (identity.models.iter())
            .filter_map(|m| Some((m.name.as_str(), m.class_map.as_ref()?)))
            .collect(),
        frames: &frames,
        size: out.size,
        thumb: opts.thumb,
    };
    shows.fill(&picks, &mut out);
    Ok(out)
}

/// Where `name` is in `list` (a model or variant id).
fn position(list: &[String], name: &str) -> Option<usize> {
    list.iter().position(|x| x == name)
}

/// Whether model `m` has a row of key `k` on variant `v` with all of `bit` set.
fn has(data: &Loaded, m: usize, v: Option<usize>, k: u32, bit: u8) -> bool {
    v.and_then(|v| data.cells.get(&(m, v)))
        .and_then(|l| l.binary_search_by_key(&k, |e| e.0).ok().map(|i| l[i].1))
        .is_some_and(|bits| bits & bit == bit)
}

/// The images each part of the report shows, as key ids.
struct Picks {
    gallery: Vec<u32>,
    /// Per model id.
    from_background: Vec<(usize, Vec<u32>)>,
    /// Per `worst_bg:K` variant id: the baseline's worst cases.
    worst: Vec<(usize, Vec<u32>)>,
    /// The baseline's model id.
    baseline: Option<usize>,
}

impl Picks {
    fn choose(data: &Loaded, agg: &Aggregate, opts: &PictureOptions<'_>) -> Picks {
        let original = position(&data.variants, "original");
        let models: Vec<usize> = agg
            .models
            .iter()
            .filter_map(|m| position(&data.models, m))
            .collect();
        let keys = 0..data.keys.len() as u32;

        // Which images: the gallery's have every model's `original` row.
        let gallery = pick(
            keys.clone()
                .filter(|&k| models.iter().all(|&m| has(data, m, original, k, 0))),
            &data.labels,
            opts.gallery,
        );
        let bg_only = position(&data.variants, "bg_only");
        let from_background = models
            .iter()
            .map(|&m| {
                let ks = keys.clone().filter(|&k| has(data, m, bg_only, k, TOP1));
                (m, pick(ks, &data.labels, opts.per_model))
            })
            .collect();
        let baseline = position(&data.models, &agg.baseline);
        let mut worst: Vec<(usize, Vec<u32>)> = Vec::new();
        if let Some(b) = baseline {
            for (v, name) in data.variants.iter().enumerate() {
                if !is_multi_row(name) {
                    continue;
                }
                let mut cases: Vec<(f32, u32)> = data
                    .worst
                    .iter()
                    .filter(|((m, wv, k), _)| {
                        *m == b && *wv == v && has(data, b, original, *k, TOP1)
                    })
                    .map(|((_, _, k), w)| (w.p_true, *k))
                    .collect();
                cases.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                worst.push((v, cases.iter().take(opts.worst).map(|c| c.1).collect()));
            }
        }
        Picks {
            gallery,
            from_background,
            worst,
            baseline,
        }
    }

    /// The keys of every picked image.
    fn wanted(&self, data: &Loaded) -> HashSet<String> {
        let all_keys = self
            .gallery
            .iter()
            .chain(self.from_background.iter().flat_map(|f| &f.1))
            .chain(self.worst.iter().flat_map(|w| &w.1));
        all_keys.map(|&k| data.keys[k as usize].clone()).collect()
    }
}

/// The rows of the shown images and the lookups the later steps share.
struct Context<'a> {
    data: &'a Loaded,
    baseline: Option<usize>,
    rows: HashMap<String, Vec<ShownRow>>,
    /// Key ids of the shown images, looked up per tile.
    key_id: HashMap<&'a str, u32>,
}

impl<'a> Context<'a> {
    fn new(
        data: &'a Loaded,
        baseline: Option<usize>,
        wanted: &HashSet<String>,
    ) -> Result<Self, FatalError> {
        let rows = rows_for_keys(&data.files, wanted)?;
        let key_id = wanted
            .iter()
            .filter_map(|k| {
                let i = position(&data.keys, k)?;
                Some((data.keys[i].as_str(), i as u32))
            })
            .collect();
        Ok(Context {
            data,
            baseline,
            rows,
            key_id,
        })
    }

    fn rows_of(&self, key: &str) -> &[ShownRow] {
        self.rows.get(key).map_or(&[], Vec::as_slice)
    }

    /// The background each image's multi-row slot shows: the baseline's worst candidate.
    fn worst_bg(&self, key: &str, variant: &str) -> Option<String> {
        let (b, v) = (self.baseline?, position(&self.data.variants, variant)?);
        let k = *self.key_id.get(key)?;
        self.data.worst.get(&(b, v, k))?.background.clone()
    }

    /// Donor images the shown slots took backgrounds from.
    fn donors(&self) -> HashSet<String> {
        let mut donors: HashSet<String> = HashSet::new();
        for (key, list) in &self.rows {
            for r in list {
                let shown = if is_multi_row(&r.variant) {
                    self.worst_bg(key, &r.variant)
                } else {
                    r.background.clone()
                };
                if let Some(d) = shown.as_deref().and_then(|b| b.strip_prefix("image:")) {
                    donors.insert(d.to_string());
                }
            }
        }
        donors
    }

    /// The shown images and their donors as read from `shards`; a note names those missing.
    fn find_samples(
        &self,
        wanted: &HashSet<String>,
        donors: &HashSet<String>,
        shards: &[PathBuf],
        notes: &mut Vec<String>,
    ) -> Vec<Sample> {
        let mut need: HashSet<String> = wanted.union(donors).cloned().collect();
        // Shards the rows name first (by file name: the run may have read them elsewhere).
        let named: HashSet<String> = self
            .rows
            .values()
            .flatten()
            .filter_map(|r| r.shard.as_deref())
            .filter_map(|s| {
                Path::new(s)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .collect();
        let mut shards: Vec<PathBuf> = shards.to_vec();
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
            notes.push(format!(
                "{} image(s) not found in --shards (not shown, or their donors' slots left empty): {}",
                missing.len(),
                missing.join(", ")
            ));
        }
        samples
    }
}

/// The run's CPU stage from its identity (`out.size`: its first input size), with the
/// `donors` found among `samples` in its bank; and whether the textures found are the run's
/// (a note in `out` when not).
fn prepare_config(
    identity: &RunIdentity,
    textures: Option<&Path>,
    donors: &HashSet<String>,
    samples: &HashMap<&str, &Sample>,
    scratch: &mut Scratch,
    out: &mut Pictures,
) -> Result<(PrepareConfig, bool), FatalError> {
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
        textures,
        seed: identity.seed,
        min_fg: identity.min_fg,
        max_fg: identity.max_fg,
        limits: Limits {
            max_pixels: identity.max_pixels,
        },
        num_classes: identity
            .models
            .iter()
            .map(|m| m.label_classes())
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
    let bank: Vec<_> = donors
        .iter()
        .filter_map(|d| samples.get(d.as_str()))
        .filter_map(|s| donor_from_sample(s, &cfg, scratch))
        .collect();
    cfg.donors = Some(Arc::new(DonorBank::new(bank, &cfg.textures.names)));
    Ok((cfg, textures_match))
}

/// Each shown image rendered once: per key, every slot's frame and recorded background.
struct Frames {
    slots: Vec<(usize, usize)>,
    /// The variant name of each slot.
    slot_names: Vec<String>,
    by_key: HashMap<String, RenderedKey>,
}

impl Frames {
    /// Renders each shown image once, every slot with the background its rows recorded;
    /// a texture slot stays empty when the textures are not the run's.
    fn render(
        ctx: &Context<'_>,
        wanted: &HashSet<String>,
        samples: &HashMap<&str, &Sample>,
        cfg: &PrepareConfig,
        scratch: &mut Scratch,
        textures_match: bool,
    ) -> Frames {
        let slots = cfg.slots();
        let slot_names = slots
            .iter()
            .map(|&(vi, _)| cfg.variants[vi].name())
            .collect();
        let mut out = Frames {
            slots,
            slot_names,
            by_key: HashMap::new(),
        };
        for key in wanted {
            let Some(sample) = samples.get(key.as_str()) else {
                continue;
            };
            let recorded = out.recorded(ctx, key);
            let refs: Vec<Option<&str>> = recorded.iter().map(|r| r.as_deref()).collect();
            let slots = &out.slots;
            let frames = match render(sample, cfg, scratch, Some(&refs)) {
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
            out.by_key.insert(key.clone(), (frames, recorded));
        }
        out
    }

    /// The background each slot of `key` takes: its variant's ok row's, or for a
    /// `worst_bg:K` variant the baseline's worst candidate (in the first slot).
    fn recorded(&self, ctx: &Context<'_>, key: &str) -> Vec<Option<String>> {
        let list = ctx.rows_of(key);
        self.slots
            .iter()
            .zip(&self.slot_names)
            .map(|(&(_, c), v)| {
                if is_multi_row(v) {
                    (c == 0).then(|| ctx.worst_bg(key, v)).flatten()
                } else {
                    list.iter()
                        .find(|r| &r.variant == v && r.status == "ok")
                        .and_then(|r| r.background.clone())
                }
            })
            .collect()
    }

    /// The thumbnail of `key`'s (first) `variant` slot, `side` pixels from frames of
    /// `size`, and the background it shows.
    fn thumb(
        &self,
        key: &str,
        variant: &str,
        size: usize,
        side: usize,
    ) -> Option<(DataUri, Option<String>)> {
        let (frames, recorded) = self.by_key.get(key)?;
        let si = self
            .slots
            .iter()
            .zip(&self.slot_names)
            .position(|(&(_, c), v)| v == variant && c == 0)?;
        let frame = frames[si].as_ref()?;
        Some((data_uri(frame, size, side)?, recorded[si].clone()))
    }
}

/// Turns key ids into the report's rows: a thumbnail per column with the models' captions.
struct Shows<'a> {
    ctx: &'a Context<'a>,
    agg: &'a Aggregate,
    names: Option<&'a ClassNames>,
    /// The class maps of the models that have one: their outputs are named by it.
    maps: HashMap<&'a str, &'a OutputMap>,
    frames: &'a Frames,
    /// The frames' side, and the thumbnails'.
    size: usize,
    thumb: usize,
}

impl Shows<'_> {
    /// What each model (or `only` one) predicted for `key` on `variant`; for a multi-row
    /// variant, on the row of the `background` shown.
    fn captions(
        &self,
        key: &str,
        variant: &str,
        background: Option<&str>,
        only: Option<&str>,
    ) -> Vec<Caption> {
        let data = self.ctx.data;
        let label = self
            .ctx
            .key_id
            .get(key)
            .map_or(-1, |&k| data.labels[k as usize]);
        self.ctx
            .rows_of(key)
            .iter()
            .filter(|r| {
                r.variant == variant
                    && r.status == "ok"
                    && only.is_none_or(|m| r.model == m)
                    && (!is_multi_row(variant) || r.background.as_deref() == background)
            })
            .map(|r| {
                let (predicted, right) = match self.maps.get(r.model.as_str()) {
                    Some(map) => mapped(r, map, label),
                    None => predicted(r, self.names, label),
                };
                Caption {
                    model: r.model.clone(),
                    predicted,
                    right,
                    p_true: r.p_true,
                }
            })
            .collect()
    }

    fn shown(&self, k: u32, columns: &[String], only: Option<&str>) -> Shown {
        let data = self.ctx.data;
        let key = &data.keys[k as usize];
        let label = data.labels.get(k as usize).copied().unwrap_or(-1);
        let pics = columns
            .iter()
            .map(|v| {
                let alt = format!("{key} {v}");
                let (src, background) = self.frames.thumb(key, v, self.size, self.thumb)?;
                let mut caps = self.captions(key, v, background.as_deref(), only);
                // Models in the report's order.
                caps.sort_by_key(|c| self.agg.models.iter().position(|m| *m == c.model));
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
            class: class_name(self.names, label),
            pics,
        }
    }

    /// The gallery, the `bg_only` pictures and the worst cases of `picks`, into `out`.
    fn fill(&self, picks: &Picks, out: &mut Pictures) {
        let data = self.ctx.data;
        out.gallery = picks
            .gallery
            .iter()
            .map(|&k| self.shown(k, &self.agg.variants, None))
            .collect();
        out.from_background = picks
            .from_background
            .iter()
            .map(|(m, ks)| {
                let name = &data.models[*m];
                let cols = ["bg_only".to_string()];
                (
                    name.clone(),
                    ks.iter()
                        .map(|&k| self.shown(k, &cols, Some(name)))
                        .collect(),
                )
            })
            .collect();
        if let Some(b) = picks.baseline {
            let name = &data.models[b];
            out.worst = picks
                .worst
                .iter()
                .map(|(v, ks)| {
                    let cols = ["original".to_string(), data.variants[*v].clone()];
                    (
                        data.variants[*v].clone(),
                        ks.iter()
                            .map(|&k| self.shown(k, &cols, Some(name)))
                            .collect(),
                    )
                })
                .collect();
        }
    }
}
