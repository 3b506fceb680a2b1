//! criterion benches of the pure CPU ops on real ImageNet JPEGs: decode, resize + crop,
//! composite (all nine variants), and the whole per-sample CPU stage.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use bgstream::ops::decode::{decode_into, Limits};
use bgstream::ops::geometry::{Geometry, Interpolation, Preprocess};
use bgstream::ops::mask::Foreground;
use bgstream::ops::resize::CropResizer;
use bgstream::ops::textures::TextureSet;
use bgstream::ops::variants::{render, RenderCtx, Variant, DEFAULT_VARIANTS};
use bgstream::prepare::{prepare, Scratch};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const P: Preprocess = Preprocess {
    input_size: 224,
    crop_pct: 0.875,
    interpolation: Interpolation::Bicubic,
};

fn benches(c: &mut Criterion) {
    let entries = common::entries();
    let files: Vec<Vec<u8>> = entries.iter().map(|e| e.image.read().unwrap()).collect();
    let limits = Limits::default();
    let n = files.len() as u64;

    let mut g = c.benchmark_group("cpu_ops");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    let mut buf = Vec::new();
    g.bench_function("decode", |b| {
        b.iter(|| {
            for f in &files {
                black_box(decode_into(f, &mut buf, &limits).unwrap());
            }
        })
    });
    let decoded: Vec<(usize, usize, Vec<u8>)> = files
        .iter()
        .map(|f| {
            let mut v = Vec::new();
            let (w, h) = decode_into(f, &mut v, &limits).unwrap();
            (w, h, v)
        })
        .collect();
    let mut resizer = CropResizer::new();
    let mut crop = vec![0u8; 224 * 224 * 3];
    g.bench_function("resize_crop_224_bicubic", |b| {
        b.iter(|| {
            for (w, h, px) in &decoded {
                let geo = Geometry::new(*w, *h, &P).unwrap();
                resizer
                    .resize_crop(px, &geo, P.interpolation, &mut crop)
                    .unwrap();
            }
        })
    });
    let variants = Variant::parse_list(DEFAULT_VARIANTS).unwrap();
    let mut textures = TextureSet::load(None).unwrap();
    textures.prepare(224, Interpolation::Bicubic).unwrap();
    let tex: Vec<&[u8]> = (0..textures.len())
        .map(|i| textures.get(224, P.interpolation, i).unwrap())
        .collect();
    let mut out = vec![0u8; 224 * 224 * 3];
    g.throughput(Throughput::Elements(n * variants.len() as u64));
    g.bench_function("composite_9_variants", |b| {
        b.iter(|| {
            for (e, (w, h, _)) in entries.iter().zip(&decoded) {
                let geo = Geometry::new(*w, *h, &P).unwrap();
                let rects: Vec<_> = e
                    .annotation
                    .boxes
                    .iter()
                    .map(|bx| geo.map_box(bx))
                    .collect();
                let fg = Foreground::from_rects(224, &rects);
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
    let cfg = common::prepare_config(P, variants);
    let samples = common::samples(&entries, &files);
    let mut scratch = Scratch::default();
    g.throughput(Throughput::Elements(n));
    g.bench_function("prepare_sample_9_variants", |b| {
        b.iter(|| {
            for s in &samples {
                black_box(prepare(s, &cfg, &mut scratch));
            }
        })
    });
    g.finish();
}

criterion_group!(ops, benches);
criterion_main!(ops);
