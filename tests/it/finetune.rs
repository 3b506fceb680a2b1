//! `examples/finetune.py`: fine-tunes a timm model on the `original` images of shards and
//! exports a TorchScript model + sidecar that bgstream runs with the model's own class
//! count (two here, not ImageNet's 1000).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::common::{self, path_str};

/// Images per class; the last `TEST_PER_CLASS` of each class are the test set.
const PER_CLASS: usize = 20;
const TEST_PER_CLASS: usize = 4;

/// Writes `train.csv` and `test.csv` (box CSVs, `path,label,x0,y0,x1,y1`) under `dir` for
/// the first 40 real ImageNet photos: label 0 for the first 20, 1 for the next 20, with
/// their real ImageNet boxes (inclusive in annotations.csv, exclusive in a box CSV).
/// Returns (label, in the test set) of every image key.
fn box_csvs(data: &Path, dir: &Path) -> HashMap<String, (i64, bool)> {
    let mut boxes: HashMap<u64, String> = HashMap::new();
    let mut table = csv::Reader::from_path(data.join("imagenet-val/annotations.csv")).unwrap();
    for rec in table.records() {
        let rec = rec.unwrap();
        boxes.insert(rec[0].parse().unwrap(), rec[4].to_string());
    }
    let mut images: Vec<String> = std::fs::read_dir(data.join("imagenet-val/images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".JPEG"))
        .collect();
    images.sort();
    assert!(images.len() >= 2 * PER_CLASS, "{} images", images.len());
    let header = "path,label,x0,y0,x1,y1\n".to_string();
    let (mut train, mut test) = (header.clone(), header);
    let mut labels = HashMap::new();
    for (i, name) in images.iter().take(2 * PER_CLASS).enumerate() {
        let label = (i / PER_CLASS) as i64;
        let stem = name.strip_suffix(".JPEG").unwrap();
        let index: u64 = stem.rsplit('_').next().unwrap().parse().unwrap();
        let is_test = i % PER_CLASS >= PER_CLASS - TEST_PER_CLASS;
        let rows = if is_test { &mut test } else { &mut train };
        for b in boxes[&index].split(';') {
            let v: Vec<f64> = b.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(v.len(), 4, "box {b:?} of {name}");
            rows.push_str(&format!(
                "{name},{label},{},{},{},{}\n",
                v[0],
                v[1],
                v[2] + 1.0,
                v[3] + 1.0
            ));
        }
        labels.insert(stem.to_string(), (label, is_test));
    }
    std::fs::write(dir.join("train.csv"), train).unwrap();
    std::fs::write(dir.join("test.csv"), test).unwrap();
    labels
}

/// `bgstream shard` of one box CSV into `dir/SPLIT/SPLIT-*.tar`; returns the shard count.
fn shard(data: &Path, dir: &Path, split: &str) -> usize {
    let out = dir.join(split);
    let (code, stdout, stderr) = common::bgstream(&[
        "shard",
        "--images",
        path_str(&data.join("imagenet-val/images")),
        "--annotations",
        path_str(&dir.join(format!("{split}.csv"))),
        "--out",
        path_str(&out),
        "--prefix",
        split,
        "--shard-size",
        "10",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "tar")
        })
        .count()
}

#[test]
fn finetune_exports_a_model_bgstream_runs_with_its_class_count() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let labels = box_csvs(&data, dir);
    let train_images = 2 * (PER_CLASS - TEST_PER_CLASS);
    let test_images = 2 * TEST_PER_CLASS;
    assert_eq!(shard(&data, dir, "train"), train_images.div_ceil(10));
    assert_eq!(shard(&data, dir, "test"), 1);

    // Fine-tune (random init: no network here), one tiny epoch on CPU.
    let models = dir.join("models");
    let start = Instant::now();
    let out = Command::new(common::python())
        .arg(common::root().join("examples/finetune.py"))
        .args([
            "--shards",
            &format!("{}/train/*.tar", dir.display()),
            "--out",
            path_str(&models),
            "--name",
            "r18-two",
            "--model",
            "resnet18",
            "--random-init",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--input-size",
            "64",
            "--seeds",
            "0,1",
            "--device",
            "cpu",
        ])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "finetune.py failed:\n{stdout}\n{stderr}"
    );
    eprintln!(
        "finetune.py: {:.1} s\n{stdout}",
        start.elapsed().as_secs_f64()
    );
    assert!(
        stdout.contains(&format!("{train_images} training samples from 4 shard(s)")),
        "{stdout}"
    );
    assert!(stdout.contains("seed 0 epoch 1/1: loss "), "{stdout}");
    let pt = models.join("r18-two-seed0.pt");
    assert!(
        stdout.contains(&format!("exported {} (2 classes, input 64)", pt.display())),
        "{stdout}"
    );
    assert!(pt.is_file());

    // The sidecar: bgstream's fields plus the run's identity.
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("r18-two-seed0.json")).unwrap()).unwrap();
    assert_eq!(side["num_classes"], 2, "{side}");
    assert_eq!(side["name"], "r18-two-seed0", "{side}");
    assert_eq!(side["seed"], 0, "{side}");
    assert_eq!(side["input_size"], 64, "{side}");
    assert_eq!(side["base_model"], "resnet18", "{side}");
    assert_eq!(side["train_shards"], 4, "{side}");
    assert_eq!(side["epochs"], 1, "{side}");
    assert_eq!(side["source"], "bgstream-finetune", "{side}");
    assert_eq!(side["format"], "torchscript-trace", "{side}");
    let weights = side["weights"].as_str().unwrap();
    assert!(
        weights.starts_with("finetuned:resnet18.random:seed0:"),
        "{weights}"
    );
    let crop = side["crop_pct"].as_f64().unwrap();
    assert!(crop > 0.0 && crop <= 1.0, "{side}");
    for k in ["mean", "std"] {
        assert_eq!(side[k].as_array().unwrap().len(), 3, "{side}");
    }

    // bgstream runs it on the held-out shard.
    let results = dir.join("runs/seed0");
    let summary = dir.join("summary.json");
    let glob = format!("{}/test/*.tar", dir.display());
    let (code, stdout, stderr) = common::bgstream(&[
        "--shards",
        &glob,
        "--model",
        path_str(&pt),
        "--variants",
        "original,bg_only",
        "--out",
        path_str(&results),
        "--summary-json",
        path_str(&summary),
        "--no-progress",
    ]);
    assert!(code == 0 || code == 3, "{stdout}{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let count = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    let (predicted, failed) = (count("predicted_images"), count("failed"));
    assert_eq!(count("samples_read"), test_images as u64, "{s}");
    assert_eq!(
        count("filtered") + failed + predicted,
        test_images as u64,
        "{s}"
    );
    assert!(
        predicted > 0,
        "the foreground filter kept no test image: {s}"
    );

    // Two variants per kept image, one model; every prediction ranks exactly the two classes.
    let q = |sql: &str| common::reference_sql(&results, sql);
    let r = &q(
        "select count(*), count(distinct key), count(*) filter (where status = 'ok'), \
                count(distinct key) filter (where status = 'ok'), min(model), max(model) from rows",
    )[0];
    assert_eq!(r[0].as_u64().unwrap(), 2 * (predicted + failed), "{r}");
    assert_eq!(r[1].as_u64().unwrap(), predicted + failed, "{r}");
    assert_eq!(r[2].as_u64().unwrap(), 2 * predicted, "{r}");
    assert_eq!(r[3].as_u64().unwrap(), predicted, "{r}");
    assert_eq!(r[4], "r18-two-seed0", "{r}");
    assert_eq!(r[5], "r18-two-seed0", "{r}");
    let bad = q(
        "select key, variant, top5_classes, top5_probs from rows where status = 'ok' and \
                 (len(top5_classes) != 2 or len(top5_probs) != 2 \
                  or list_min(top5_classes) < 0 or list_max(top5_classes) > 1 \
                  or top5_classes[1] = top5_classes[2] \
                  or abs(list_sum(top5_probs) - 1) > 1e-4)",
    );
    assert_eq!(
        bad.as_array().unwrap().len(),
        0,
        "not a 2-class ranking: {bad}"
    );
    let variants =
        q("select variant, count(*) from rows where status = 'ok' group by 1 order by 1");
    assert_eq!(
        variants,
        serde_json::json!([["bg_only", predicted], ["original", predicted]]),
        "{variants}"
    );

    // The rows are test images, with the labels the box CSV gave them.
    for row in q("select distinct key, label from rows")
        .as_array()
        .unwrap()
    {
        let key = row[0].as_str().unwrap();
        let (label, is_test) = labels
            .get(key)
            .unwrap_or_else(|| panic!("unknown key {key}"));
        assert!(is_test, "{key} is a training image");
        assert_eq!(row[1].as_i64(), Some(*label), "{row}");
    }

    // The second seed, then `aggregate --group-seeds`: one group, the mean of the two.
    let (code, stdout, stderr) = common::bgstream(&[
        "--shards",
        &glob,
        "--model",
        path_str(&models.join("r18-two-seed1.pt")),
        "--variants",
        "original,bg_only",
        "--out",
        path_str(&dir.join("runs/seed1")),
        "--no-progress",
    ]);
    assert!(code == 0 || code == 3, "{stdout}{stderr}");
    let agg = dir.join("agg");
    let (code, stdout, stderr) = common::aggregate(
        &dir.join("runs"),
        &agg,
        &["--group-seeds", "--format", "csv"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Seed groups"), "{stdout}");
    let summary = std::fs::read_to_string(agg.join("summary.csv")).unwrap();
    let top1 = |model: &str| -> f64 {
        let line = summary
            .lines()
            .find(|l| l.starts_with(&format!("{model},original,")))
            .unwrap_or_else(|| panic!("{model} missing: {summary}"));
        line.split(',').nth(3).unwrap().parse().unwrap()
    };
    let groups = std::fs::read_to_string(agg.join("seed_groups.csv")).unwrap();
    let line = groups
        .lines()
        .find(|l| l.starts_with("r18-two,original,"))
        .unwrap_or_else(|| panic!("no group row: {groups}"));
    let f: Vec<&str> = line.split(',').collect();
    assert_eq!(f[2], "2", "{line}");
    let mean: f64 = f[3].parse().unwrap();
    let want = (top1("r18-two-seed0") + top1("r18-two-seed1")) / 2.0;
    assert!((mean - want).abs() < 1e-9, "{mean} vs {want}"); // percent, to 1e-10 points
}
