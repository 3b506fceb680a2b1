//! The CPU stage for one sample: filter -> decode -> resize per preprocessing -> variants.
//! Synchronous and pure apart from its reused scratch buffers.

use std::sync::Arc;

use crate::error::ItemError;
use crate::item::{ItemMeta, Prepared};
use crate::ops::decode::{decode_into, dimensions, Limits};
use crate::ops::geometry::{foreground_fraction, validate_boxes, Geometry, Preprocess};
use crate::ops::resize::CropResizer;
use crate::ops::textures::TextureSet;
use crate::ops::variants::{render, RenderCtx, Variant};
use crate::source::Sample;

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
    /// Labels must be below this (the smallest `num_classes` of the models).
    pub num_classes: i64,
}

/// Per-worker reusable buffers.
#[derive(Default)]
pub struct Scratch {
    decoded: Vec<u8>,
    crop: Vec<u8>,
    resizer: CropResizer,
}

/// Runs the CPU stage on one sample. Never panics on bad input: every problem becomes
/// [`Prepared::Failed`] with what is known of the item.
pub fn prepare(sample: &Sample, cfg: &PrepareConfig, scratch: &mut Scratch) -> Prepared {
    let mut meta = ItemMeta {
        shard: sample.shard.clone(),
        key: sample.key.clone(),
        label: None,
        fg_fraction: None,
        width: None,
        height: None,
    };
    match prepare_inner(sample, cfg, scratch, &mut meta) {
        Ok(Some(groups)) => Prepared::Ready(Arc::new(meta), groups),
        Ok(None) => Prepared::Filtered(meta),
        Err(e) => Prepared::Failed(meta, e),
    }
}

fn prepare_inner(
    sample: &Sample,
    cfg: &PrepareConfig,
    s: &mut Scratch,
    meta: &mut ItemMeta,
) -> Result<Option<Vec<Vec<u8>>>, ItemError> {
    let ann = sample.annotation()?;
    meta.label = Some(ann.label);
    if ann.label >= cfg.num_classes {
        return Err(ItemError::LabelOutOfRange {
            label: ann.label,
            num_classes: cfg.num_classes,
        });
    }
    let bytes = sample.image.as_deref().ok_or(ItemError::MissingImage)?;
    // Headers only: filtered images are never decoded.
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
    validate_boxes(&ann.boxes, w, h)?;
    let fg = foreground_fraction(&ann.boxes, w, h);
    meta.fg_fraction = Some(fg);
    if fg < cfg.min_fg || fg > cfg.max_fg {
        return Ok(None);
    }
    let (dw, dh) = decode_into(bytes, &mut s.decoded, &cfg.limits)?;
    if (dw, dh) != (w, h) {
        return Err(ItemError::Decode(format!(
            "header says {w}x{h}, pixels are {dw}x{dh}"
        )));
    }
    let mut groups = Vec::with_capacity(cfg.groups.len());
    for p in &cfg.groups {
        let g = Geometry::new(w, h, p)?;
        let frame = g.size * g.size * 3;
        s.crop.resize(frame, 0);
        s.resizer
            .resize_crop(&s.decoded, &g, p.interpolation, &mut s.crop)?;
        let rects: Vec<_> = ann.boxes.iter().map(|b| g.map_box(b)).collect();
        let textures: Vec<&[u8]> = (0..cfg.textures.len())
            .filter_map(|i| cfg.textures.get(g.size, p.interpolation, i))
            .collect();
        let ctx = RenderCtx {
            key: &sample.key,
            seed: cfg.seed,
            textures: &textures,
        };
        let mut out = vec![0u8; frame * cfg.variants.len()];
        for (v, dst) in cfg.variants.iter().zip(out.chunks_exact_mut(frame)) {
            render(v, &s.crop, g.size, &rects, &ctx, dst);
        }
        groups.push(out);
    }
    Ok(Some(groups))
}
