//! `scripts/paper` (examples/paper.py) offline: ImageNet's downloads of ../shared -> shards ->
//! three of the paper's networks (timm, random weights) -> runs -> aggregate and report; an
//! interrupted run continues where it stopped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::{self, path_str};

const MODELS: &str =
    "resnet18.tv_in1k,mobilenetv3_large_100.ra_in1k,mobilenetv3_small_100.lamb_in1k";

fn paper(imagenet: &Path, out: &Path, failpoints: Option<&str>, extra: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(common::python());
    cmd.arg(common::root().join("examples/paper.py"))
        .args([path_str(imagenet), path_str(out)])
        .args(["--models", MODELS, "--random-weights", "--shard-size", "10"])
        .args(["--device", "cpu"])
        .args(extra)
        .env("BGSTREAM", env!("CARGO_BIN_EXE_bgstream"))
        .env("BGSTREAM_LOG", "error")
        .env_remove("FAILPOINTS");
    if let Some(f) = failpoints {
        cmd.env("FAILPOINTS", f);
    }
    let o = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

/// Every part file of a run folder with its bytes.
fn parts(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "interrupts a run with fail points: cargo test --features failpoints"
)]
fn the_paper_command_runs_offline_and_continues_after_an_interruption() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("paper");
    let imagenet = data.join("imagenet-val");
    // The first run dies (abort) as the first model's second shard is committed.
    let (code, text) = paper(
        &imagenet,
        &out,
        Some("manifest::append=1*off->return"),
        &["--no-estimate"],
    );
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("rerun the same command"), "{text}");
    let first = out.join("results/resnet18.tv_in1k");
    // The manifest's one line names the committed part (a second part may sit beside it,
    // renamed but not yet recorded when the process died: resume replaces that one).
    // The abort leaves half a second line, which readers ignore.
    let manifest = std::fs::read_to_string(first.join("_manifest.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = manifest
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 1, "one shard committed: {text}");
    let line = &lines[0];
    let committed: Vec<String> = line["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let kept: BTreeMap<String, Vec<u8>> = parts(&first)
        .into_iter()
        .filter(|(name, _)| committed.contains(name))
        .collect();
    assert_eq!(kept.len(), 1, "{committed:?}");

    // The same command again: shards and models kept, the first run resumed, then the rest.
    let (code, text) = paper(&imagenet, &out, None, &[]);
    assert_eq!(code, 0, "{text}");
    for line in [
        "shards: kept (66 samples in 7 shards)",
        "resnet18.tv_in1k: input 224, crop 0.875, bilinear, weights random (kept)",
        "[1/3] resnet18.tv_in1k: resuming (1 of 7 shards done)",
        "[2/3] mobilenetv3_large_100.ra_in1k: running",
        "estimate: ",
        "paper: done.",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    eprintln!(
        "{}",
        text.lines()
            .filter(
                |l| l.starts_with("estimate") || l.starts_with("  ") && l.contains("/s end to end")
            )
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Continued, not restarted: the part committed before the abort is untouched.
    let after = parts(&first);
    for (name, bytes) in &kept {
        assert_eq!(after.get(name), Some(bytes), "{name} was rewritten");
    }
    assert_eq!(after.len(), 7);
    for m in MODELS.split(',') {
        let manifest =
            std::fs::read_to_string(out.join(format!("results/{m}/_manifest.jsonl"))).unwrap();
        assert_eq!(manifest.lines().count(), 7, "{m}");
    }
    // Shards, Parquet, tables and the report with pictures.
    assert_eq!(
        std::fs::read_dir(out.join("shards"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tar"))
            .count(),
        7
    );
    for f in [
        "summary.csv",
        "table1.csv",
        "per_class.csv",
        "fig4_switched_top1.svg",
    ] {
        assert!(out.join("aggregate").join(f).is_file(), "{f}");
    }
    let rows = common::reference_sql(
        &out.join("results/resnet18.tv_in1k"),
        "select count(*), count(distinct key) from rows",
    );
    assert_eq!(
        rows[0][0].as_i64().unwrap(),
        rows[0][1].as_i64().unwrap() * 9
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for m in MODELS.split(',') {
        assert!(html.contains(m), "{m} missing from the report");
    }
    assert!(
        html.contains("id=\"gallery-table\""),
        "the report has pictures"
    );
    // A third run finds everything finished.
    let (code, text) = paper(&imagenet, &out, None, &["--no-estimate"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("every model has finished")
            || text.contains("[3/3] mobilenetv3_small_100.lamb_in1k: done"),
        "{text}"
    );
    // A trial-sized rerun (another --limit) makes other shards: every model's run starts
    // afresh on them instead of keeping, or resuming into, the 66-image results.
    let (code, text) = paper(&imagenet, &out, None, &["--no-estimate", "--limit", "20"]);
    assert_eq!(code, 0, "{text}");
    for m in MODELS.split(',') {
        let line = format!("{m}: the shards changed since its run; starting afresh");
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        let rows = common::reference_sql(
            &out.join("results").join(m),
            "select count(distinct key) from rows",
        );
        let images = rows[0][0].as_i64().unwrap();
        // The keys of the 20 images sharded (those the filter keeps have rows).
        assert!((1..=20).contains(&images), "{m}: {images} images");
    }
    let manifest = std::fs::read_to_string(first.join("_manifest.jsonl")).unwrap();
    let samples: u64 = (manifest.lines())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["samples"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(samples, 20, "{manifest}");
}
