//! The report re-renders a run's pixels from the backgrounds its rows recorded, with a bank
//! of just those donors: the frames must equal what the run's own pairing produced.

use std::sync::Arc;

use bgstream::item::Prepared;
use bgstream::ops::decode::Limits;
use bgstream::ops::geometry::{Interpolation, Preprocess};
use bgstream::ops::variants::Variant;
use bgstream::shard::{read_imagenet_csv, write_shards};
use bgstream::source::tar_reader::read_shard;
use bgstream::source::Sample;
use bgstream::stage::donors::DonorBank;
use bgstream::stage::prepare::donor_scan::donor_from_sample;
use bgstream::stage::prepare::{prepare, prepare_recorded, PrepareConfig, PrepareSpec, Scratch};

use crate::common;

fn config() -> PrepareConfig {
    PrepareConfig::new(PrepareSpec {
        groups: vec![
            Preprocess {
                input_size: 224,
                crop_pct: 0.875,
                interpolation: Interpolation::Bicubic,
            },
            Preprocess {
                input_size: 64,
                crop_pct: 1.0,
                interpolation: Interpolation::Bilinear,
            },
        ],
        variants: Variant::parse_list(
            "original,bg_only,fg_texture,fg_gauss,bg_tiled,mixed_same,mixed_rand,mixed_next,worst_bg:4",
        )
        .unwrap(),
        textures: None,
        seed: 7,
        min_fg: 0.05,
        max_fg: 0.7,
        limits: Limits {
            max_pixels: 100_000_000,
        },
        num_classes: 1000,
        class_map: None,
    })
    .unwrap()
}

#[test]
fn recorded_backgrounds_re_render_the_runs_pixels_exactly() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (entries, _) = read_imagenet_csv(
        &data.join("imagenet-val/annotations.csv"),
        &data.join("imagenet-val/images"),
        None,
    )
    .unwrap();
    let shards = write_shards(&entries[..24], tmp.path(), "val", 8, 2)
        .unwrap()
        .shards;
    // The run: the bank from every shard, pairing by the rules.
    let mut run = config();
    run.attach_donors(&shards, 2000, 2);
    let mut samples: Vec<Sample> = Vec::new();
    for s in &shards {
        read_shard(s, |sample| {
            samples.push(sample);
            true
        });
    }
    let by_key = |k: &str| samples.iter().find(|s| s.key == k).unwrap();
    let (mut scratch, mut compared, mut donor_slots) = (Scratch::default(), 0, 0);
    for sample in &samples {
        let Prepared::Ready(meta, fed) = prepare(sample, &run, &mut scratch) else {
            continue;
        };
        // The report: a fresh config whose bank holds only the donors this image's rows name.
        let recorded: Vec<Option<String>> = (0..run.slots().len())
            .map(|i| meta.background(i).map(|b| b.to_string()))
            .collect();
        let mut report = config();
        let donors = recorded
            .iter()
            .flatten()
            .filter_map(|b| b.strip_prefix("image:"))
            .filter_map(|k| donor_from_sample(by_key(k), &report, &mut scratch))
            .collect();
        report.donors = Some(Arc::new(DonorBank::new(donors, &report.textures.names)));
        let refs: Vec<Option<&str>> = recorded.iter().map(|r| r.as_deref()).collect();
        let Prepared::Ready(again, shown) = prepare_recorded(sample, &report, &mut scratch, &refs)
        else {
            panic!("{}: the report could not re-render it", sample.key);
        };
        assert_eq!(again.backgrounds, meta.backgrounds, "{}", sample.key);
        for (g, (a, b)) in fed.iter().zip(&shown).enumerate() {
            let size = run.groups[g].input_size;
            let frame = size * size * 3;
            for (si, (x, y)) in a.chunks(frame).zip(b.chunks(frame)).enumerate() {
                if meta.slot_error(si).is_some() {
                    continue;
                }
                assert!(x == y, "{} slot {si} at {size} px differs", sample.key);
                compared += 1;
                donor_slots += usize::from(
                    recorded[si]
                        .as_deref()
                        .is_some_and(|b| b.starts_with("image:")),
                );
            }
        }
    }
    assert!(compared > 200, "{compared} frames compared");
    assert!(
        donor_slots > 50,
        "{donor_slots} frames with another image's background"
    );
}
