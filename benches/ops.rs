//! criterion benches of the pure CPU ops on real ImageNet JPEGs: decode, resize + crop,
//! composite (all nine variants), the whole per-sample CPU stage, and what a foreground
//! costs: boxes, a mask PNG, a polygon (each image's box as an ellipse / a 40-point star).

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use bgstream::ops::decode::{decode_into, Limits};
use bgstream::ops::geometry::BBox;
use bgstream::ops::geometry::{Geometry, Interpolation, Preprocess};
use bgstream::ops::mask::{Foreground, SourceMask};
use bgstream::ops::resize::CropResizer;
use bgstream::ops::textures::TextureSet;
use bgstream::ops::variants::{render, RenderCtx, Variant, DEFAULT_VARIANTS};
use bgstream::shard::masks::encode_png;
use bgstream::stage::prepare::{prepare, Scratch};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const P: Preprocess = Preprocess {
    input_size: 224,
    crop_pct: 0.875,
    interpolation: Interpolation::Bicubic,
};

/// The real images, decoded once, with their boxes, mask PNGs and geometries.
struct Inputs {
    entries: Vec<bgstream::shard::Entry>,
    files: Vec<Vec<u8>>,
    decoded: Vec<(usize, usize, Vec<u8>)>,
    sizes: Vec<(usize, usize)>,
    /// Per image, a mask PNG of an ellipse in its first box.
    masks: Vec<Vec<u8>>,
    geos: Vec<Geometry>,
}

impl Inputs {
    fn load() -> Self {
        let entries = common::entries();
        let files: Vec<Vec<u8>> = entries.iter().map(|e| e.image.read().unwrap()).collect();
        let decoded: Vec<(usize, usize, Vec<u8>)> = files
            .iter()
            .map(|f| {
                let mut v = Vec::new();
                let (w, h) = decode_into(f, &mut v, &Limits::default()).unwrap();
                (w, h, v)
            })
            .collect();
        let sizes: Vec<(usize, usize)> = decoded.iter().map(|(w, h, _)| (*w, *h)).collect();
        let masks = (entries.iter().zip(&sizes))
            .map(|(e, &(w, h))| ellipse_png(w, h, &e.annotation.boxes[0]))
            .collect();
        let geos = (sizes.iter())
            .map(|&(w, h)| Geometry::new(w, h, &P).unwrap())
            .collect();
        Inputs {
            entries,
            files,
            decoded,
            sizes,
            masks,
            geos,
        }
    }

    fn n(&self) -> u64 {
        self.files.len() as u64
    }
}

fn benches(c: &mut Criterion) {
    let inputs = Inputs::load();
    let mut g = c.benchmark_group("cpu_ops");
    g.throughput(Throughput::Elements(inputs.n()));
    g.sample_size(10);
    decode_and_resize(&mut g, &inputs);
    composite(&mut g, &inputs);
    cpu_stage(&mut g, &inputs);
    g.finish();
    foreground(c, &inputs);
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn decode_and_resize(g: &mut Group<'_>, inputs: &Inputs) {
    let limits = Limits::default();
    let mut buf = Vec::new();
    g.bench_function("decode", |b| {
        b.iter(|| {
            for f in &inputs.files {
                black_box(decode_into(f, &mut buf, &limits).unwrap());
            }
        })
    });
    let mut resizer = CropResizer::new();
    let mut crop = vec![0u8; 224 * 224 * 3];
    g.bench_function("resize_crop_224_bicubic", |b| {
        b.iter(|| {
            for (w, h, px) in &inputs.decoded {
                let geo = Geometry::new(*w, *h, &P).unwrap();
                resizer
                    .resize_crop(px, &geo, P.interpolation, &mut crop)
                    .unwrap();
            }
        })
    });
}

/// The nine variants composed from a crop (the crop's pixels do not change the cost).
fn composite(g: &mut Group<'_>, inputs: &Inputs) {
    let variants = Variant::parse_list(DEFAULT_VARIANTS).unwrap();
    let mut textures = TextureSet::load(None).unwrap();
    textures.prepare(224, Interpolation::Bicubic).unwrap();
    let tex: Vec<&[u8]> = (0..textures.len())
        .map(|i| textures.get(224, P.interpolation, i).unwrap())
        .collect();
    let crop = vec![0u8; 224 * 224 * 3];
    let mut out = vec![0u8; 224 * 224 * 3];
    g.throughput(Throughput::Elements(inputs.n() * variants.len() as u64));
    g.bench_function("composite_9_variants", |b| {
        b.iter(|| {
            for (e, (w, h, _)) in inputs.entries.iter().zip(&inputs.decoded) {
                let fg = box_foreground(&e.annotation.boxes, &Geometry::new(*w, *h, &P).unwrap());
                let ctx = RenderCtx {
                    key: &e.key,
                    seed: 0,
                    textures: &tex,
                };
                for v in &variants {
                    render(v, &crop, &fg, &ctx, &mut out);
                }
            }
        })
    });
}

/// The whole per-sample CPU stage, with boxes and with a mask PNG per sample.
fn cpu_stage(g: &mut Group<'_>, inputs: &Inputs) {
    let variants = Variant::parse_list(DEFAULT_VARIANTS).unwrap();
    let cfg = common::prepare_config(P, variants);
    let samples = common::samples(&inputs.entries, &inputs.files);
    let mut scratch = Scratch::default();
    g.throughput(Throughput::Elements(inputs.n()));
    g.bench_function("prepare_sample_9_variants", |b| {
        b.iter(|| {
            for s in &samples {
                black_box(prepare(s, &cfg, &mut scratch));
            }
        })
    });
    let masked: Vec<_> = (samples.iter().zip(&inputs.masks))
        .map(|(s, m)| {
            let mut s = s.clone();
            s.mask = Some(m.clone());
            s
        })
        .collect();
    g.bench_function("prepare_sample_9_variants_mask_png", |b| {
        b.iter(|| {
            for s in &masked {
                black_box(prepare(s, &cfg, &mut scratch));
            }
        })
    });
}

/// Per image: the foreground alone (filter area + mapping to the 224 px crop).
fn foreground(c: &mut Criterion, inputs: &Inputs) {
    let mut g = c.benchmark_group("foreground");
    g.throughput(Throughput::Elements(inputs.n()));
    g.sample_size(10);
    let (sizes, geos) = (&inputs.sizes, &inputs.geos);
    g.bench_function("boxes", |b| {
        b.iter(|| {
            for (e, geo) in inputs.entries.iter().zip(geos) {
                black_box(box_foreground(&e.annotation.boxes, geo));
            }
        })
    });
    g.bench_function("mask_png", |b| {
        b.iter(|| {
            for ((m, &(w, h)), geo) in inputs.masks.iter().zip(sizes).zip(geos) {
                let mask = SourceMask::new(Some(m), &[], w, h).unwrap();
                black_box(mask.area_fraction().unwrap());
                black_box(mask.map(geo));
            }
        })
    });
    let stars: Vec<Vec<f64>> = (inputs.entries.iter())
        .map(|e| star(&e.annotation.boxes[0], 20))
        .collect();
    g.bench_function("polygon_40_points", |b| {
        b.iter(|| {
            for ((p, &(w, h)), geo) in stars.iter().zip(sizes).zip(geos) {
                let mask = SourceMask::new(None, std::slice::from_ref(p), w, h).unwrap();
                black_box(mask.area_fraction().unwrap());
                black_box(mask.map(geo));
            }
        })
    });
    g.finish();
}

/// The boxes' foreground in the crop `geo`, as the CPU stage builds it.
fn box_foreground(boxes: &[BBox], geo: &Geometry) -> Foreground {
    let rects: Vec<_> = boxes.iter().map(|bx| geo.map_box(bx)).collect();
    Foreground::from_rects(geo.size, &rects)
}

/// A `w x h` mask PNG of the ellipse inscribed in `b`.
fn ellipse_png(w: usize, h: usize, b: &BBox) -> Vec<u8> {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (rx, ry) = ((b[2] - b[0]) / 2.0, (b[3] - b[1]) / 2.0);
    let flags: Vec<bool> = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
            ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0
        })
        .collect();
    encode_png(w, h, &flags)
}

/// A star with `points` tips inscribed in `b`, as a flat polygon.
fn star(b: &BBox, points: usize) -> Vec<f64> {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (rx, ry) = ((b[2] - b[0]) / 2.0, (b[3] - b[1]) / 2.0);
    (0..points * 2)
        .flat_map(|i| {
            let a = std::f64::consts::PI * i as f64 / points as f64;
            let r = if i % 2 == 0 { 1.0 } else { 0.45 };
            [cx + r * rx * a.sin(), cy - r * ry * a.cos()]
        })
        .collect()
}

criterion_group!(ops, benches);
criterion_main!(ops);
