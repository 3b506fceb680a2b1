//! The report's size at paper scale: 32 models x 15 variants with every picture the
//! report can hold (the gallery, `bg_only` pictures for every model, worst backgrounds),
//! thumbnails made from real ImageNet images exactly as the report makes them.

use std::path::Path;
use std::sync::Arc;

use bgstream::aggregate::AggregateConfig;
use bgstream::item::{ItemMeta, Prediction, Row};
use bgstream::ops::decode::Limits;
use bgstream::ops::geometry::{Interpolation, Preprocess};
use bgstream::ops::variants::Variant;
use bgstream::preview::{render, Rendered};
use bgstream::report::gallery::{self, Caption, Pic, Pictures, Shown};
use bgstream::report::html as report;
use bgstream::shard::{read_imagenet_csv, ImageRef};
use bgstream::source::Sample;
use bgstream::stage::prepare::{PrepareConfig, PrepareSpec, Scratch};

use crate::common;

const VARIANTS: [&str; 15] = [
    "original",
    "bg_only",
    "fg_white",
    "fg_texture",
    "fg_gauss",
    "fg_uniform",
    "fg_color:green",
    "fg_color:yellow",
    "fg_color:grey",
    "bg_only_black",
    "bg_tiled",
    "mixed_same",
    "mixed_rand",
    "mixed_next",
    "worst_bg:5",
];

/// A long name, as timm's are.
fn model(i: usize) -> String {
    format!("timm/convnext_xxlarge.clip_laion2b_soup_ft_in1k_{i:02}")
}

fn write_predictions(dir: &Path, keys: usize) {
    let mut rows = Vec::new();
    for k in 0..keys {
        let meta = Arc::new(ItemMeta {
            label: Some((k * 37 % 1000) as i64),
            fg_fraction: Some(0.3),
            ..ItemMeta::new("s.tar".into(), format!("ILSVRC2012_val_{k:08}"))
        });
        for m in 0..32 {
            for (v, variant) in VARIANTS.iter().enumerate() {
                let right = (k + m + v) % 3 != 0;
                let label = meta.label.unwrap();
                rows.push(Row {
                    meta: meta.clone(),
                    slot: v,
                    variant: (*variant).into(),
                    model: model(m).into(),
                    background: None,
                    scoring: None,
                    outcome: Ok(Prediction {
                        top5: [if right { label } else { label + 1 }, 1, 2, 3, 4],
                        top5_prob: [0.5, 0.2, 0.1, 0.1, 0.1],
                        p_true: if right { 0.5 } else { 0.01 },
                    }),
                });
            }
        }
    }
    let batch = bgstream::sink::rows_to_batch(&rows);
    let file = std::fs::File::create(dir.join("p.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_32_model_15_variant_report_with_every_picture_stays_under_5_mb() {
    let Some(data) = common::shared_data() else {
        return;
    };
    // Real frames: the CPU stage on real images at 224 px. Donor variants need a bank;
    // they reuse fg_gauss's frames, noise being what JPEG compresses worst.
    let cfg = PrepareConfig::new(PrepareSpec {
        groups: vec![Preprocess {
            input_size: 224,
            crop_pct: 0.875,
            interpolation: Interpolation::Bicubic,
        }],
        variants: Variant::parse_list(&VARIANTS[..11].join(",")).unwrap(),
        textures: None,
        seed: 0,
        min_fg: 0.0,
        max_fg: 1.0,
        limits: Limits {
            max_pixels: 100_000_000,
        },
        num_classes: 1000,
        class_map: None,
    })
    .unwrap();
    let (entries, _) = read_imagenet_csv(
        &data.join("imagenet-val/annotations.csv"),
        &data.join("imagenet-val/images"),
        None,
    )
    .unwrap();
    let mut scratch = Scratch::default();
    let frames: Vec<Vec<Vec<u8>>> = entries
        .iter()
        .filter_map(|e| {
            let ImageRef::File(path) = &e.image else {
                return None;
            };
            let sample = Sample {
                shard: "s.tar".into(),
                key: e.key.clone(),
                image: Some(std::fs::read(path).unwrap()),
                json: Some(serde_json::to_vec(&e.annotation).unwrap()),
                ..Default::default()
            };
            match render(&sample, &cfg, &mut scratch, None) {
                Rendered::Ready(_, groups) => {
                    let g = &groups[0];
                    let mut slots: Vec<Vec<u8>> = (0..11).map(|i| g.slot(i).to_vec()).collect();
                    for _ in 11..15 {
                        slots.push(g.slot(4).to_vec());
                    }
                    Some(slots)
                }
                _ => None,
            }
        })
        .take(40)
        .collect();
    assert!(frames.len() >= 32, "{} images rendered", frames.len());
    let uri = |f: &[u8]| gallery::data_uri(f, 224, gallery::THUMB).unwrap();
    let captions: Vec<Caption> = (0..32)
        .map(|m| Caption {
            model: model(m),
            predicted: "American Staffordshire terrier".into(),
            right: m % 2 == 0,
            p_true: Some(0.123),
        })
        .collect();
    let pic = |f: &[u8], caps: &[Caption]| Pic {
        src: uri(f),
        alt: "ILSVRC2012_val_00000001 fg_color:yellow".into(),
        background: Some("image:ILSVRC2012_val_00012345".into()),
        captions: caps.to_vec(),
    };
    let shown = |pics: Vec<Option<Pic>>| Shown {
        key: "ILSVRC2012_val_00000001".into(),
        class: "American Staffordshire terrier".into(),
        pics,
    };
    let pictures = Pictures {
        columns: VARIANTS.map(String::from).to_vec(),
        size: 224,
        gallery: frames[..4]
            .iter()
            .map(|f| shown(f.iter().map(|s| Some(pic(s, &captions))).collect()))
            .collect(),
        from_background: (0..32)
            .map(|m| {
                let own = (0..gallery::PER_MODEL)
                    .map(|i| {
                        let f = &frames[(m + i * 7) % frames.len()][1];
                        shown(vec![Some(pic(f, &captions[m..m + 1]))])
                    })
                    .collect();
                (model(m), own)
            })
            .collect(),
        worst: vec![(
            "worst_bg:5".into(),
            (0..gallery::WORST)
                .map(|i| {
                    let f = &frames[i];
                    shown(vec![
                        Some(pic(&f[0], &captions[..1])),
                        Some(pic(&f[14], &captions[..1])),
                    ])
                })
                .collect(),
        )],
        notes: vec![],
    };

    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("pred");
    std::fs::create_dir_all(&input).unwrap();
    write_predictions(&input, 200);
    let out = tmp.path().join("agg");
    let result = bgstream::report::aggregate(&AggregateConfig {
        input: input.clone(),
        baseline: None,
        out: out.clone(),
        parquet: false,
        csv: false,
        report: Some(tmp.path().join("plain.html")),
        figures: true,
        examples: 5,
        class_map: None,
        class_names: None,
        shards: Vec::new(),
        textures: None,
        gallery: 4,
        group_seeds: false,
        allow_changed_shards: false,
    })
    .unwrap();
    assert_eq!(result.aggregate.models.len(), 32);
    assert_eq!(result.aggregate.variants.len(), 15);
    let svgs: Vec<_> = ["fig2_bg_only", "fig4_switched_top1", "fig5_switched_top5"]
        .iter()
        .map(|f| out.join(format!("{f}.svg")))
        .collect();
    let facts = bgstream::aggregate::completeness::facts(&input);
    let best = Vec::new();
    let html = report::render(&report::ReportInput {
        aggregate: &result.aggregate,
        data: &result.data,
        svgs: &svgs,
        warnings: &[],
        best_classes: &best,
        facts: &facts,
        pictures: Some(&pictures),
        input: &input,
        seed_groups: &[],
    });
    // The figures are images too (SVG data: URIs); the thumbnails are the JPEGs.
    let thumbs = html.matches("src=\"data:image/jpeg;").count();
    assert_eq!(
        thumbs,
        4 * 15 + 32 * gallery::PER_MODEL + gallery::WORST * 2
    );
    eprintln!(
        "32 models x 15 variants, {thumbs} thumbnails: report {:.2} MB (plain, no pictures: {:.2} MB)",
        html.len() as f64 / 1e6,
        result.report_bytes.unwrap() as f64 / 1e6
    );
    assert!(html.len() < 5_000_000, "report is {} bytes", html.len());
}
