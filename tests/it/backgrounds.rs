//! ImageNet-9-style variants end to end: the donor pairing rules and their determinism, and
//! BG-Gap / challenge accuracy on a model that reads only the background (so the right
//! answers are known).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use jpeg_encoder::{ColorType, Encoder};

use crate::common::{self, path_str};

const CLASSES: u8 = 4;
const PER_CLASS: u8 = 3;

/// 64x64: background grey level `64 * class + 32` (what the model reads), a noisy 32x32
/// object in the middle (fraction 0.25).
fn image(class: u8, seed: u8) -> Vec<u8> {
    let level = 64 * class as usize + 32;
    let mut px = vec![level as u8; 64 * 64 * 3];
    for y in 16..48 {
        for x in 16..48 {
            for c in 0..3 {
                px[(y * 64 + x) * 3 + c] =
                    ((x * 37 + y * 11 + c * 5 + seed as usize * 13) % 256) as u8;
            }
        }
    }
    let mut out = Vec::new();
    Encoder::new(&mut out, 95)
        .encode(&px, 64, 64, ColorType::Rgb)
        .unwrap();
    out
}

fn solid_jpeg(path: &Path, level: u8) {
    let mut out = Vec::new();
    Encoder::new(&mut out, 95)
        .encode(&vec![level; 48 * 48 * 3], 48, 48, ColorType::Rgb)
        .unwrap();
    std::fs::write(path, out).unwrap();
}

/// Three shards; image `cC_iI` has label C; classes are spread over the shards.
fn shards(dir: &Path) -> Vec<PathBuf> {
    let mut builders: Vec<_> = (0..3)
        .map(|s| {
            let p = dir.join(format!("bg-{s:06}.tar"));
            (tar::Builder::new(File::create(&p).unwrap()), p)
        })
        .collect();
    for i in 0..PER_CLASS {
        for c in 0..CLASSES {
            let key = format!("c{c}_i{i}");
            let b = &mut builders[((c + i) % 3) as usize].0;
            common::tar_add(b, &format!("{key}.jpg"), &image(c, i * CLASSES + c));
            common::tar_add(
                b,
                &format!("{key}.json"),
                format!(r#"{{"label": {c}, "boxes": [[16, 16, 48, 48]]}}"#).as_bytes(),
            );
        }
    }
    builders
        .into_iter()
        .map(|(mut b, p)| {
            b.finish().unwrap();
            p
        })
        .collect()
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    model: PathBuf,
    textures: PathBuf,
    shards: Vec<PathBuf>,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let report = common::reference(&["bg-model", path_str(&dir.join("model"))]);
    let model = PathBuf::from(report["model"].as_str().unwrap());
    let textures = dir.join("textures");
    std::fs::create_dir_all(&textures).unwrap();
    // Texture tK has class K's background level.
    solid_jpeg(&textures.join("t0.jpg"), 32);
    solid_jpeg(&textures.join("t1.jpg"), 96);
    let shards = shards(&dir);
    Setup {
        _tmp: tmp,
        dir,
        model,
        textures,
        shards,
    }
}

fn run(s: &Setup, out: &str, variants: &str, shards: &[&Path], extra: &[&str]) -> PathBuf {
    let out = s.dir.join(out);
    let mut args = vec!["--shards"];
    args.extend(shards.iter().map(|p| path_str(p)));
    args.extend([
        "--model",
        path_str(&s.model),
        "--variants",
        variants,
        "--textures",
        path_str(&s.textures),
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        path_str(&out),
    ]);
    args.extend_from_slice(extra);
    if !extra.contains(&"--seed") {
        args.extend(["--seed", "3"]);
    }
    let (code, stdout, stderr) = common::bgstream(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    out
}

fn sql(dir: &Path, q: &str) -> Vec<serde_json::Value> {
    common::reference_sql(dir, q).as_array().unwrap().clone()
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

const MIXED: &str = "original,bg_only_black,bg_tiled,mixed_same,mixed_rand,mixed_next,worst_bg:3";

#[test]
fn donor_pairing_follows_the_class_rules_and_is_deterministic() {
    let s = setup();
    let all: Vec<&Path> = s.shards.iter().map(PathBuf::as_path).collect();
    let a = run(&s, "a", MIXED, &all, &["--workers", "1", "--readers", "1"]);
    let donors = "regexp_extract(background, '^image:(.*)$', 1)";
    let label_of = "(select any_value(label) from rows r2 where r2.key = d.donor)";
    let q = |variant: &str, cond: &str| {
        format!(
            "select count(*), count(*) filter (where {cond}) from \
             (select key, label, {donors} as donor from rows where variant = '{variant}') d"
        )
    };
    let check = |variant: &str, cond: String| {
        let r = sql(&a, &q(variant, &cond));
        assert_eq!(r[0][0], 12, "{variant}: one row per image");
        assert_eq!(r[0][0], r[0][1], "{variant}: every donor meets {cond}");
    };
    check(
        "mixed_same",
        format!("{label_of} = d.label and d.donor <> d.key"),
    );
    check("mixed_next", format!("{label_of} = (d.label + 1) % 4"));
    check("mixed_rand", format!("{label_of} <> d.label"));
    // worst_bg:3 = 2 textures + 1 donor of another class, all different.
    let r = sql(
        &a,
        "select o.key, count(*), count(distinct o.background), \
         count(*) filter (where o.background like 'texture:%'), \
         count(*) filter (where (select any_value(r2.label) from rows r2 \
           where r2.key = regexp_extract(o.background, '^image:(.*)$', 1)) <> o.label) \
         from rows o where o.variant = 'worst_bg:3' group by o.key, o.label",
    );
    assert_eq!(r.len(), 12);
    for row in &r {
        assert_eq!(row.as_array().unwrap()[1..], [3, 3, 2, 1], "{row:?}");
    }
    // Every image of a class is not paired with one and the same donor.
    let spread = sql(
        &a,
        "select count(distinct background) from rows where variant = 'mixed_rand'",
    );
    assert!(spread[0][0].as_u64().unwrap() > 2, "{spread:?}");

    // Same seed, other thread counts: byte-identical files.
    let b = run(&s, "b", MIXED, &all, &["--workers", "3", "--readers", "2"]);
    assert_eq!(files(&a), files(&b));
    // One shard alone, with the donors drawn from all three: that shard's rows unchanged
    // (what --resume and ranks rely on).
    let glob = format!("{}/bg-*.tar", s.dir.display());
    let c = run(&s, "c", MIXED, &[&s.shards[1]], &["--donor-shards", &glob]);
    let dump = "select key, variant, background, top5_classes, p_true, status from rows \
                where shard like '%bg-000001.tar' order by all";
    let (ra, rc) = (sql(&a, dump), sql(&c, dump));
    assert_eq!(rc.len(), 4 * (6 + 3));
    assert_eq!(
        ra, rc,
        "shard 1 alone must give the rows it gave in the full run"
    );
    // Another seed pairs differently.
    let d = run(
        &s,
        "d",
        "original,mixed_rand",
        &all,
        &["--seed", "4", "--workers", "1"],
    );
    let other = sql(
        &d,
        "select list(background order by key) from rows where variant = 'mixed_rand'",
    );
    let first = sql(
        &a,
        "select list(background order by key) from rows where variant = 'mixed_rand'",
    );
    assert_ne!(other, first, "a different --seed must pair differently");
}

#[test]
fn bg_gap_and_challenge_accuracy_on_a_model_that_reads_the_background() {
    let s = setup();
    let all: Vec<&Path> = s.shards.iter().map(PathBuf::as_path).collect();
    let out = run(&s, "p", MIXED, &all, &[]);
    // The model reads the background: the same class's background keeps it right, another
    // class's makes it wrong, whatever the foreground.
    let acc = |variant: &str| {
        let r = sql(
            &out,
            &format!("select avg(top1_correct::int) from rows where variant = '{variant}'"),
        );
        r[0][0].as_f64().unwrap()
    };
    for (v, want) in [
        ("original", 1.0),
        ("bg_only_black", 1.0),
        ("bg_tiled", 1.0),
        ("mixed_same", 1.0),
        ("mixed_rand", 0.0),
        ("mixed_next", 0.0),
    ] {
        assert_eq!(acc(v), want, "{v}");
    }
    let agg = s.dir.join("p-agg");
    let report = s.dir.join("r.html");
    let (code, stdout, stderr) = common::aggregate(&out, &agg, &["--report", path_str(&report)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let table = std::fs::read_to_string(agg.join("backgrounds.csv")).unwrap();
    let line = table.lines().nth(1).unwrap();
    let cols: Vec<&str> = line.split(',').collect();
    // model, only_bg_b, only_bg_t, only_fg, no_fg (not run: empty), same, rand, next, bg_gap,
    // gap images, variant, challenge, n, challenge over all backgrounds (none here), n
    assert_eq!(
        cols,
        [
            "bgreader",
            "100",
            "100",
            "",
            "",
            "100",
            "0",
            "0",
            "100",
            "12",
            "worst_bg:3",
            "0",
            "12",
            "",
            "0"
        ],
        "{table}"
    );
    let html = std::fs::read_to_string(s.dir.join("r.html")).unwrap();
    assert!(html.contains("id=\"backgrounds\"") && html.contains("BG-Gap"));
    // The worst candidate: lowest p_true, ties to the smaller name.
    let worst = std::fs::read_to_string(agg.join("worst_backgrounds.csv")).unwrap();
    assert_eq!(worst.lines().count(), 1 + 12, "{worst}");
    let lowest = sql(
        &out,
        "select key, first(background order by p_true, background) from rows \
         where variant = 'worst_bg:3' group by key order by key",
    );
    for (line, want) in worst.lines().skip(1).zip(&lowest) {
        let c: Vec<&str> = line.split(',').collect();
        assert_eq!(
            (c[2], c[5]),
            (want[0].as_str().unwrap(), want[1].as_str().unwrap())
        );
        assert_eq!((c[7], c[8]), ("3", "false"), "{line}");
    }
    // The SQL and Polars clients reduce worst_bg:K the same way.
    common::reference(&[
        "aggregate-clients",
        path_str(&out),
        path_str(&agg.join("summary.parquet")),
        "bgreader",
    ]);

    // worst_bg:1 is one texture per image, picked by hash: right exactly when the texture
    // has the image's own background level (t0 for class 0, t1 for class 1).
    let one = run(&s, "one", "original,worst_bg:1", &all, &[]);
    let rows = sql(
        &one,
        "select key, label, background, top1_correct from rows where variant = 'worst_bg:1' order by key",
    );
    assert_eq!(rows.len(), 12);
    let mut right = 0;
    for r in &rows {
        let want = r[2].as_str().unwrap() == format!("texture:t{}.jpg", r[1]);
        assert_eq!(r[3].as_bool().unwrap(), want, "{r:?}");
        right += usize::from(want);
    }
    let agg1 = s.dir.join("one-agg");
    let (code, _, stderr) = common::aggregate(&one, &agg1, &["--no-figures"]);
    assert_eq!(code, 0, "{stderr}");
    let table = std::fs::read_to_string(agg1.join("backgrounds.csv")).unwrap();
    let challenge: f64 = table
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(11)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (challenge - 100.0 * right as f64 / 12.0).abs() < 1e-9,
        "{table}"
    ); // percent
}

#[test]
fn coarse_class_map_groups_donors_and_scores_coarse_accuracy() {
    let s = setup();
    let map = s.dir.join("coarse.json");
    // Classes 0 and 1 are "dark", 2 is "light"; 3 is in no class.
    std::fs::write(
        &map,
        r#"{"name": "t", "classes": [{"name": "dark", "labels": ["0-1"]}, {"name": "light", "labels": [2]}]}"#,
    )
    .unwrap();
    let all: Vec<&Path> = s.shards.iter().map(PathBuf::as_path).collect();
    let summary = s.dir.join("m.json");
    let out = run(
        &s,
        "m",
        "original,mixed_same,mixed_next",
        &all,
        &[
            "--class-map",
            path_str(&map),
            "--summary-json",
            path_str(&summary),
        ],
    );
    let coarse = |col: &str| format!("case when {col} <= 1 then 0 when {col} = 2 then 1 end");
    let r = sql(
        &out,
        &format!(
            "select variant, count(*) filter (where status = 'ok' and ({}) = \
             (select {} from rows r2 \
              where r2.key = regexp_extract(rows.background, '^image:(.*)$', 1))), \
             count(*) filter (where status = 'no_donor' and label = 3) \
             from rows where variant <> 'original' group by variant order by variant",
            coarse("label"),
            coarse("any_value(r2.label)")
        ),
    );
    assert_eq!(
        r,
        [
            serde_json::json!(["mixed_next", 0, 3]),
            serde_json::json!(["mixed_same", 9, 3])
        ],
        "same coarse class for mixed_same, the other one for mixed_next, none for unmapped"
    );
    let s_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(
        s_json["no_donor_rows"],
        serde_json::json!([["mixed_next", 3], ["mixed_same", 3]])
    );
    // Scored at the coarse level: predicting class 1 for a class-0 image is right there;
    // label 3 is left out.
    let agg = s.dir.join("m-agg");
    let (code, stdout, stderr) =
        common::aggregate(&out, &agg, &["--no-figures", "--class-map", path_str(&map)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("coarse level of class map t"), "{stdout}");
    assert!(stderr.contains("outside the class map"), "{stderr}");
    let want = sql(
        &out,
        &format!(
            "select avg(coalesce(({}) = ({}), false)::int) from rows \
             where variant = 'mixed_same' and status = 'ok' and label <= 2",
            coarse("label"),
            coarse("top5_classes[1]")
        ),
    );
    let table = std::fs::read_to_string(agg.join("summary.csv")).unwrap();
    let line = table.lines().find(|l| l.contains(",mixed_same,")).unwrap();
    let cols: Vec<&str> = line.split(',').collect();
    assert_eq!(cols[2], "9", "{table}");
    let top1: f64 = cols[3].parse().unwrap();
    // Percent, to 1e-10 points.
    assert!(
        (top1 - 100.0 * want[0][0].as_f64().unwrap()).abs() < 1e-9,
        "{table}"
    );
}
