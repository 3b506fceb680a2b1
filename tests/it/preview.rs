//! `bgstream preview`: its tiles are the pixels a run feeds the models, byte for byte, and
//! its captions are the run's predictions.

use std::collections::HashMap;
use std::path::Path;

use crate::common::{self, path_str};

/// Every variant kind, two preprocessings (tiny: 64 px; Lite0: 224 px bicubic).
const VARIANTS: &str = "original,bg_only,fg_white,fg_texture,fg_gauss,fg_uniform,fg_color:green,\
                        bg_only_black,bg_tiled,mixed_same,mixed_rand,mixed_next,worst_bg:3";

fn decode_png(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let mut d = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(&bytes));
    d.decode_raw().unwrap()
}

/// Real ImageNet shards of the first `limit` images of ../shared.
fn shards(data: &Path, dir: &Path, limit: usize) {
    common::shared_shards(data, dir, 5, limit);
}

#[test]
fn preview_tiles_are_the_pixels_the_run_feeds_the_models() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let shard_dir = tmp.path().join("shards");
    shards(&data, &shard_dir, 14);
    let glob = format!("{}/val-*.tar", shard_dir.display());
    let (tiny, lite0) = (common::model("tiny"), common::model("efficientnet-lite0"));
    let dump = tmp.path().join("dump");
    let results = tmp.path().join("results");
    let (code, stdout, stderr) = common::bgstream(&[
        "--shards",
        &glob,
        "--model",
        path_str(&tiny),
        "--model",
        path_str(&lite0),
        "--variants",
        VARIANTS,
        "--out",
        path_str(&results),
        "--dump-inputs",
        path_str(&dump),
        "--no-progress",
    ]);
    assert!(code == 0 || code == 3, "{stdout}{stderr}");

    let out = tmp.path().join("preview");
    let (code, stdout, stderr) = common::bgstream(&[
        "preview",
        "--shards",
        &glob,
        "--model",
        path_str(&tiny),
        "--model",
        path_str(&lite0),
        "--variants",
        VARIANTS,
        "--n",
        "4",
        "--out",
        path_str(&out),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("4 image(s)"), "{stdout}");
    for sheet in ["preview-64px.png", "preview-224px.png"] {
        assert!(out.join(sheet).is_file(), "{sheet} missing: {stdout}");
    }
    eprintln!(
        "preview sheet of this test: {}",
        out.join("preview-224px.png").display()
    );

    // Every tile equals the frame the run batched for that key, slot and size.
    let mut compared = 0;
    let mut keys = std::collections::BTreeSet::new();
    for key_dir in std::fs::read_dir(out.join("tiles")).unwrap() {
        let key_dir = key_dir.unwrap().path();
        let key = key_dir.file_name().unwrap().to_str().unwrap().to_string();
        for tile in std::fs::read_dir(&key_dir).unwrap() {
            let tile = tile.unwrap().path();
            let name = tile.file_stem().unwrap().to_str().unwrap().to_string();
            let slot = &name[..2];
            let size = name.rsplit('-').next().unwrap();
            let fed = dump.join(&key).join(format!("{slot}-{size}.rgb"));
            let fed = std::fs::read(&fed)
                .unwrap_or_else(|e| panic!("{}: {e} (the run fed no such frame)", fed.display()));
            assert!(
                decode_png(&tile) == fed,
                "{} differs from what the run fed",
                tile.display()
            );
            compared += 1;
        }
        keys.insert(key);
    }
    assert_eq!(keys.len(), 4);
    // 4 images x 15 slots x 2 sizes (one model each), less the slots the run had no donor
    // for (most classes have one image here, so mixed_same often has none).
    let list: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    let no_donor = common::reference_sql(
        &results,
        &format!(
            "select count(*) from rows where status = 'no_donor' and key in ({})",
            list.join(",")
        ),
    )[0][0]
        .as_i64()
        .unwrap();
    assert_eq!(
        compared as i64 + no_donor,
        4 * 15 * 2,
        "{compared} tiles compared"
    );
    assert!(compared >= 4 * 12 * 2, "{compared} tiles compared");

    // The captions are the run's predictions: the same top-1, p(true) within 1e-4 (batch
    // composition changes last bits on CPU).
    let run: HashMap<(String, String, String), (i64, f64)> = common::reference_sql(
        &results,
        "select key, variant, model, background, top5_classes[1], p_true from rows where status = 'ok'",
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|r| {
        let s = |i: usize| r[i].as_str().unwrap_or("").to_string();
        let variant = if s(1).starts_with("worst_bg") {
            format!("{}@{}", s(1), s(3))
        } else {
            s(1)
        };
        ((s(0), variant, s(2)), (r[4].as_i64().unwrap(), r[5].as_f64().unwrap()))
    })
    .collect();
    let mut index = csv::Reader::from_path(out.join("tiles.csv")).unwrap();
    let header = index.headers().unwrap().clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let mut checked = 0;
    for rec in index.records() {
        let rec = rec.unwrap();
        if rec[col("model")].is_empty() {
            continue;
        }
        let variant = rec[col("variant")].to_string();
        let variant = if variant.starts_with("worst_bg") {
            format!("worst_bg:3@{}", &rec[col("background")])
        } else {
            variant
        };
        let id = (
            rec[col("key")].to_string(),
            variant,
            rec[col("model")].to_string(),
        );
        let (top1, p_true) = run
            .get(&id)
            .unwrap_or_else(|| panic!("no run row for {id:?}"));
        assert_eq!(rec[col("top1")].parse::<i64>().unwrap(), *top1, "{id:?}");
        let p: f64 = rec[col("p_true")].parse().unwrap();
        assert!((p - p_true).abs() < 1e-4, "{id:?}: {p} vs {p_true}");
        checked += 1;
    }
    assert_eq!(checked, compared, "one caption per tile and model");
}

#[test]
fn preview_by_key_decodes_only_those_and_names_what_is_missing() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let shard_dir = tmp.path().join("shards");
    shards(&data, &shard_dir, 10);
    let glob = format!("{}/val-*.tar", shard_dir.display());
    let keys = bgstream::shard::read_imagenet_csv(
        &data.join("imagenet-val/annotations.csv"),
        &data.join("imagenet-val/images"),
        None,
    )
    .unwrap()
    .0
    .into_iter()
    .take(10)
    .map(|e| e.key)
    .collect::<Vec<_>>();
    let pick = format!("{},{}", keys[7], keys[2]);
    let out = tmp.path().join("preview");
    // No model: the default preprocessing (224 px, crop 0.875) and ImageNet class names.
    let (code, stdout, stderr) = common::bgstream(&[
        "preview",
        "--shards",
        &glob,
        "--keys",
        &pick,
        "--variants",
        "original,bg_only",
        "--out",
        path_str(&out),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 image(s), 4 tile(s)"), "{stdout}");
    let index = std::fs::read_to_string(out.join("tiles.csv")).unwrap();
    let first_keys: Vec<&str> = index
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        first_keys,
        [&keys[7], &keys[7], &keys[2], &keys[2]],
        "in --keys order"
    );
    let tile = out.join(format!("tiles/{}/00-original-224px.png", keys[7]));
    assert_eq!(decode_png(&tile).len(), 224 * 224 * 3);

    let (code, _, stderr) = common::bgstream(&[
        "preview",
        "--shards",
        &glob,
        "--keys",
        "no_such_key",
        "--out",
        path_str(&out),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no_such_key"), "{stderr}");
}
