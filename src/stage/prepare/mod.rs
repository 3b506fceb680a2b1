//! The CPU stage for one sample: filter -> decode -> resize per preprocessing -> variants.
//! Synchronous and pure apart from its reused scratch buffers.

pub mod donor_scan;

use std::sync::Arc;

use crate::classes::{in9, ClassMap, LabelSpace};
use crate::error::{FatalError, ItemError};
use crate::item::{ItemMeta, Prepared, RowError};
use crate::sidecar::Sidecar;
use crate::stage::donors::{DonorBank, Pairing, SlotSource};

use crate::ops::background::paste_foreground;
use crate::ops::decode::{decode_into, dimensions, Limits};
use crate::ops::geometry::{foreground_fraction, validate_boxes, BBox, Geometry, Preprocess, Rect};
use crate::ops::mask::{Foreground, SourceMask};
use crate::ops::resize::CropResizer;
use crate::ops::textures::{texture_dir, TextureSet};
use crate::ops::variants::{render, RenderCtx, Variant};
use crate::source::{Annotation, Sample, RELEASED_PREFIX};

/// Images with a side below this are recorded as `too_small`: upsampling a few pixels to a
/// model's input says nothing about backgrounds.
pub const MIN_SIDE: usize = 8;

/// Everything the CPU stage needs, shared read-only by all workers.
#[derive(Debug)]
pub struct PrepareConfig {
    pub groups: Vec<Preprocess>,
    pub variants: Vec<Variant>,
    pub textures: TextureSet,
    pub seed: u64,
    pub min_fg: f64,
    pub max_fg: f64,
    pub limits: Limits,
    /// Labels must be below this (the smallest of the models' label ranges:
    /// `Sidecar::label_classes`).
    pub num_classes: i64,
    /// Coarse classes for donor choice (`--class-map`); fine labels without it.
    pub class_map: Option<ClassMap>,
    /// Backgrounds of other images, for `mixed_*` and `worst_bg:K` (built before the run).
    pub donors: Option<std::sync::Arc<DonorBank>>,
    /// `--original-all`: an image the filter drops is still classified on `original`.
    pub original_all: bool,
}

impl PrepareConfig {
    /// One entry per output image of a sample: (variant index, candidate number).
    /// `worst_bg:K` gives K entries; every other variant one.
    pub fn slots(&self) -> Vec<(usize, usize)> {
        self.variants
            .iter()
            .enumerate()
            .flat_map(|(vi, v)| (0..v.slots()).map(move |c| (vi, c)))
            .collect()
    }

    /// Whether any variant takes other images' backgrounds.
    pub fn needs_donors(&self) -> bool {
        self.variants.iter().any(Variant::needs_donors)
    }

    /// The class donors are grouped by: an ImageNet-9 label as it is (already one of the
    /// nine coarse classes, whatever the models' class count), else the coarse class with
    /// `--class-map`, else the label.
    pub fn donor_class(&self, label: i64, space: Option<LabelSpace>) -> Option<i64> {
        match (space, &self.class_map) {
            (Some(LabelSpace::In9), _) => Some(label),
            (None, Some(m)) => m.coarse(label).map(|c| c as i64),
            (None, None) => Some(label),
        }
    }

    /// How many donor classes there are (for `mixed_next`'s wrap-around: ImageNet-9's
    /// Mixed-Next takes class `(c + 1) mod 9`, and the bank's share per class).
    pub fn donor_classes(&self, space: Option<LabelSpace>) -> i64 {
        match space {
            Some(LabelSpace::In9) => in9::NAMES.len() as i64,
            None => self
                .class_map
                .as_ref()
                .map_or(self.num_classes, |m| m.len() as i64),
        }
    }
}

/// What a run, a preview or the report's gallery renders: the parts of a
/// [`PrepareConfig`] that come from the command line (or a run's identity) and the models'
/// sidecars.
pub struct PrepareSpec<'a> {
    /// One preprocessing per model group, in the run's order.
    pub groups: Vec<Preprocess>,
    pub variants: Vec<Variant>,
    /// `--textures` (default: `$BGSTREAM_TEXTURES`, else the built-in photos).
    pub textures: Option<&'a std::path::Path>,
    pub seed: u64,
    pub min_fg: f64,
    pub max_fg: f64,
    pub limits: Limits,
    pub num_classes: i64,
    pub class_map: Option<ClassMap>,
}

impl PrepareConfig {
    /// The config for `spec`, textures loaded and resampled when a variant uses them; no
    /// donor bank yet ([`PrepareConfig::attach_donors`]).
    pub fn new(spec: PrepareSpec<'_>) -> Result<Self, FatalError> {
        let mut textures = TextureSet::default();
        if spec
            .variants
            .iter()
            .any(|v| matches!(v, Variant::FgTexture | Variant::WorstBg { .. }))
        {
            let dir = texture_dir(spec.textures, |k| std::env::var_os(k));
            textures = TextureSet::load(dir.as_deref())?;
            for p in &spec.groups {
                textures.prepare(p.input_size, p.interpolation)?;
            }
        }
        Ok(PrepareConfig {
            groups: spec.groups,
            variants: spec.variants,
            textures,
            seed: spec.seed,
            min_fg: spec.min_fg,
            max_fg: spec.max_fg,
            limits: spec.limits,
            num_classes: spec.num_classes,
            class_map: spec.class_map,
            donors: None,
            original_all: false,
        })
    }

    /// Builds the donor bank from `shards` when a variant needs one: `bank_size` split
    /// evenly over the donor classes, at least 2 a class (an image then always has another
    /// of its class to pair with when the class has two).
    pub fn attach_donors(
        &mut self,
        shards: &[std::path::PathBuf],
        bank_size: usize,
        readers: usize,
    ) {
        if !self.needs_donors() {
            return;
        }
        // The shards' label space (their first sample's) decides how many classes share the
        // bank: nine for ImageNet-9 labels, even with a 1,000-class model.
        let space = donor_scan::label_space(shards);
        let classes = self.donor_classes(space).clamp(1, 1 << 20) as usize;
        let per_class = bank_size.div_ceil(classes).max(2);
        let bank = donor_scan::build_bank(shards, self, per_class, readers);
        self.donors = Some(Arc::new(bank));
    }
}

/// One preprocessing per distinct sidecar preprocessing, in first-appearance order (the
/// run's model groups).
pub fn preprocess_groups<'a>(sidecars: impl IntoIterator<Item = &'a Sidecar>) -> Vec<Preprocess> {
    let mut out: Vec<Preprocess> = Vec::new();
    for s in sidecars {
        let p = s.preprocess();
        if !out.iter().any(|q| q.key() == p.key()) {
            out.push(p);
        }
    }
    out
}

/// Per-worker reusable buffers.
#[derive(Default)]
pub struct Scratch {
    decoded: Vec<u8>,
    /// Per preprocessing group: the crop, its boxes and its foreground.
    pub crops: Vec<Crop>,
    resizer: CropResizer,
}

/// One preprocessing group's crop of a sample.
#[derive(Debug, Default)]
pub struct Crop {
    /// `size*size*3` RGB.
    pub pixels: Vec<u8>,
    /// The boxes in output pixels (drawn by previews; the variants use `fg`).
    pub rects: Vec<Rect>,
    /// The mask's foreground when the sample has one, else the union of `rects`.
    pub fg: Foreground,
}

/// What [`admit`] lets through: the annotation and, when the sample has one, its mask.
#[derive(Debug)]
pub struct Admitted {
    pub ann: Annotation,
    pub mask: Option<SourceMask>,
}

/// `fg_source` of samples whose foreground is their boxes / their mask.
pub const FG_BOXES: &str = "boxes";
pub const FG_MASK: &str = "mask";

/// The sample's mask (`None` when its foreground is its boxes), checked against the image
/// size: the `.mask.png` member and the annotation's polygons, or the error `shard` recorded.
pub fn source_mask(
    mask_png: Option<&[u8]>,
    ann: &Annotation,
    width: usize,
    height: usize,
) -> Result<Option<SourceMask>, ItemError> {
    if let Some(reason) = &ann.mask_error {
        return Err(ItemError::BadMask(reason.clone()));
    }
    if mask_png.is_none() && ann.polygons.is_empty() {
        return Ok(None);
    }
    SourceMask::new(mask_png, &ann.polygons, width, height).map(Some)
}

/// Runs the CPU stage on one sample. Never panics on bad input: every problem becomes
/// [`Prepared::Failed`] with what is known of the item.
pub fn prepare(sample: &Sample, cfg: &PrepareConfig, scratch: &mut Scratch) -> Prepared {
    prepare_from(sample, cfg, scratch, None)
}

/// [`prepare`] with the background of every slot given (`image:KEY`, `texture:NAME` or
/// `None` for the image's own), as a run recorded them in its `background` column,
/// instead of paired through the bank: the report's gallery re-renders a run's pixels from
/// a bank of just the donors it shows. A donor missing from `cfg`'s bank is `no_donor`.
pub fn prepare_recorded(
    sample: &Sample,
    cfg: &PrepareConfig,
    scratch: &mut Scratch,
    backgrounds: &[Option<&str>],
) -> Prepared {
    prepare_from(sample, cfg, scratch, Some(backgrounds))
}

fn prepare_from(
    sample: &Sample,
    cfg: &PrepareConfig,
    scratch: &mut Scratch,
    recorded: Option<&[Option<&str>]>,
) -> Prepared {
    let mut meta = ItemMeta::new(sample.shard.clone(), sample.key.clone());
    match prepare_inner(sample, cfg, scratch, &mut meta, recorded) {
        Ok(Some(groups)) => Prepared::Ready(Arc::new(meta), groups),
        Ok(None) => Prepared::Filtered(meta),
        Err(e) => Prepared::Failed(meta, e),
    }
}

/// The header-only half of the stage: annotation, label range, image size, boxes or mask
/// and the foreground filter. `Ok(None)` when the filter drops the image. Never decodes
/// the image's pixels (a mask PNG is decoded: its area is the filter's input).
pub fn admit(
    sample: &Sample,
    cfg: &PrepareConfig,
    meta: &mut ItemMeta,
) -> Result<Option<Admitted>, ItemError> {
    let adm = check(sample, cfg, meta)?;
    Ok(adm.filter(|_| meta.in_filter == Some(true)))
}

/// [`admit`] whatever the filter says (it is in `meta.in_filter`).
fn check(
    sample: &Sample,
    cfg: &PrepareConfig,
    meta: &mut ItemMeta,
) -> Result<Option<Admitted>, ItemError> {
    let ann = sample.annotation()?;
    meta.label = Some(ann.label);
    meta.label_space = ann.label_space;
    // An ImageNet-9 label is one of the nine, whatever the models' class count.
    let classes = match ann.label_space {
        Some(LabelSpace::In9) => in9::NAMES.len() as i64,
        None => cfg.num_classes,
    };
    if ann.label >= classes {
        return Err(ItemError::LabelOutOfRange {
            label: ann.label,
            num_classes: classes,
        });
    }
    let bytes = sample.image.as_deref().ok_or(ItemError::MissingImage)?;
    let (w, h) = dimensions(bytes, &cfg.limits)?;
    meta.width = Some(w);
    meta.height = Some(h);
    if w < MIN_SIDE || h < MIN_SIDE {
        return Err(ItemError::TooSmall {
            width: w,
            height: h,
        });
    }
    if let (Some(aw), Some(ah)) = (ann.width, ann.height) {
        if (aw, ah) != (w, h) {
            return Err(ItemError::SizeMismatch {
                found: format!("{w}x{h}"),
                expected: format!("{aw}x{ah}"),
            });
        }
    }
    if let Some(v) = &ann.released_variant {
        // Pre-rendered by the dataset: no foreground to filter on or to replace.
        meta.released = Some(format!("{RELEASED_PREFIX}{v}").into());
        return Ok(Some(Admitted { ann, mask: None }));
    }
    let mask = if sample.has_mask(&ann) {
        meta.fg_source = Some(FG_MASK);
        if !ann.boxes.is_empty() {
            validate_boxes(&ann.boxes, w, h)?;
        }
        source_mask(sample.mask.as_deref(), &ann, w, h)?
    } else {
        meta.fg_source = Some(FG_BOXES);
        validate_boxes(&ann.boxes, w, h)?;
        None
    };
    let fg = match &mask {
        Some(m) => m.area_fraction()?,
        None => foreground_fraction(&ann.boxes, w, h),
    };
    meta.fg_fraction = Some(fg);
    meta.in_filter = Some((cfg.min_fg..=cfg.max_fg).contains(&fg));
    Ok(Some(Admitted { ann, mask }))
}

/// Decodes `bytes` and resamples it once per preprocessing group into `s.crops`, with the
/// boxes and the foreground mapped to each crop's pixels. `header` is the size [`admit`]
/// read from the image header; pixels of another size are a decode error, found before
/// any resampling.
pub fn crop_groups(
    bytes: &[u8],
    header: (usize, usize),
    boxes: &[BBox],
    mask: Option<&SourceMask>,
    cfg: &PrepareConfig,
    s: &mut Scratch,
) -> Result<(), ItemError> {
    let (w, h) = decode_into(bytes, &mut s.decoded, &cfg.limits)?;
    if (w, h) != header {
        let (hw, hh) = header;
        return Err(ItemError::Decode(format!(
            "header says {hw}x{hh}, pixels are {w}x{h}"
        )));
    }
    s.crops.resize_with(cfg.groups.len(), Default::default);
    for (p, c) in cfg.groups.iter().zip(&mut s.crops) {
        let g = Geometry::new(w, h, p)?;
        c.pixels.resize(g.size * g.size * 3, 0);
        s.resizer
            .resize_crop(&s.decoded, &g, p.interpolation, &mut c.pixels)?;
        c.rects.clear();
        c.rects.extend(boxes.iter().map(|b| g.map_box(b)));
        c.fg = match mask {
            Some(m) => m.map(&g),
            None => Foreground::from_rects(g.size, &c.rects),
        };
    }
    Ok(())
}

fn prepare_inner(
    sample: &Sample,
    cfg: &PrepareConfig,
    s: &mut Scratch,
    meta: &mut ItemMeta,
    recorded: Option<&[Option<&str>]>,
) -> Result<Option<Vec<Vec<u8>>>, ItemError> {
    let Some(adm) = check(sample, cfg, meta)? else {
        return Ok(None);
    };
    let outside = meta.in_filter == Some(false);
    if outside && !cfg.original_all {
        return Ok(None);
    }
    let bytes = sample.image.as_deref().ok_or(ItemError::MissingImage)?;
    let header = (meta.width.unwrap_or(0), meta.height.unwrap_or(0));
    crop_groups(bytes, header, &adm.ann.boxes, adm.mask.as_ref(), cfg, s)?;
    if outside || meta.released.is_some() {
        only_original(cfg, meta);
        return Ok(Some(render_slots(sample, cfg, s, meta, &[])));
    }
    let ann = &adm.ann;
    let sources = match (&cfg.donors, recorded) {
        (Some(bank), Some(recorded)) => {
            let sources: Vec<SlotSource> = recorded.iter().map(|b| bank.source_of(*b)).collect();
            meta.backgrounds = sources.iter().map(|s| bank.source_label(s)).collect();
            meta.slot_errors = sources.iter().map(SlotSource::error).collect();
            sources
        }
        (Some(bank), None) => {
            let pairing = Pairing {
                class: cfg.donor_class(ann.label, ann.label_space),
                classes: cfg.donor_classes(ann.label_space),
                seed: cfg.seed,
                variants: &cfg.variants,
            };
            let sources = bank.plan(&sample.key, ann.label, &pairing);
            meta.backgrounds = sources.iter().map(|s| bank.source_label(s)).collect();
            meta.slot_errors = sources.iter().map(SlotSource::error).collect();
            sources
        }
        (None, _) => Vec::new(),
    };
    let slots = cfg.slots();
    if adm.mask.is_none() && cfg.variants.iter().any(Variant::needs_mask) {
        meta.slot_errors.resize(slots.len(), None);
        for (e, &(vi, _)) in meta.slot_errors.iter_mut().zip(&slots) {
            let v = &cfg.variants[vi];
            if v.needs_mask() {
                *e = Some(RowError {
                    code: "no_mask",
                    message: format!(
                        "{} needs a foreground mask; this sample has boxes only",
                        v.name()
                    ),
                });
            }
        }
    }
    Ok(Some(render_slots(sample, cfg, s, meta, &sources)))
}

/// An image classified on `original` alone: every other slot is an error row, never sent
/// to a model — `released` for a dataset's pre-rendered image (classified as it is), else
/// `filtered` (`--original-all` for an image the filter drops).
fn only_original(cfg: &PrepareConfig, meta: &mut ItemMeta) {
    let error = match &meta.released {
        Some(name) => RowError {
            code: "released",
            message: format!(
                "a pre-rendered image, classified as it is (variant {name}); no variant is \
                 rendered from it"
            ),
        },
        None => RowError {
            code: "filtered",
            message: format!(
                "foreground fraction {:.4} outside [{}, {}]: only original is classified \
                 (--original-all)",
                meta.fg_fraction.unwrap_or(f64::NAN),
                cfg.min_fg,
                cfg.max_fg
            ),
        },
    };
    meta.slot_errors = (cfg.slots().iter())
        .map(|&(vi, _)| (cfg.variants[vi] != Variant::Original).then(|| error.clone()))
        .collect();
}

/// Every slot's frame, per preprocessing group (slots with an error stay zeros).
fn render_slots(
    sample: &Sample,
    cfg: &PrepareConfig,
    s: &Scratch,
    meta: &ItemMeta,
    sources: &[SlotSource],
) -> Vec<Vec<u8>> {
    let slots = cfg.slots();
    let mut groups = Vec::with_capacity(cfg.groups.len());
    for (gi, (p, c)) in cfg.groups.iter().zip(&s.crops).enumerate() {
        let size = p.input_size;
        let frame = size * size * 3;
        let textures: Vec<&[u8]> = (0..cfg.textures.len())
            .filter_map(|i| cfg.textures.get(size, p.interpolation, i))
            .collect();
        let ctx = RenderCtx {
            key: &sample.key,
            seed: cfg.seed,
            textures: &textures,
        };
        let mut out = vec![0u8; frame * slots.len()];
        for (si, (&(vi, _), dst)) in slots.iter().zip(out.chunks_exact_mut(frame)).enumerate() {
            // An error slot keeps zeros; the batcher never sends it to a model.
            if meta.slot_error(si).is_some() {
                continue;
            }
            let background = match sources.get(si) {
                Some(SlotSource::Donor(d)) => {
                    cfg.donors.as_ref().and_then(|b| b.background(*d, gi))
                }
                Some(SlotSource::Texture(t)) => textures.get(*t).copied(),
                Some(SlotSource::Missing(_)) => continue,
                Some(SlotSource::Own) | None => None,
            };
            match background {
                Some(bg) => paste_foreground(&c.pixels, &c.fg, bg, dst),
                None => render(&cfg.variants[vi], &c.pixels, &c.fg, &ctx, dst),
            }
        }
        groups.push(out);
    }
    groups
}
