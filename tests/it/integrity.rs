//! Run integrity: planning fails before `--out` is touched, `--resume` refuses another run
//! naming the difference, and nothing depends on the directory bgstream starts from.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use std::process::Stdio;

use crate::common::{self, path_str};
use crate::resume::{shards, sorted_rows, status};

/// A run of the tiny model over `glob` into `out`; `opts` replace the defaults, `extra` is
/// appended (flags, more `--model`s).
fn command(glob: &str, out: &Path, opts: &[(&str, &str)], extra: &[&str]) -> Command {
    let mut settings = vec![
        ("--variants", "original,bg_only,fg_texture"),
        ("--batch-size", "5"),
        ("--device", "cpu"),
        ("--precision", "fp32"),
        ("--seed", "0"),
    ];
    for (k, v) in opts {
        match settings.iter_mut().find(|s| s.0 == *k) {
            Some(s) => s.1 = v,
            None => settings.push((k, v)),
        }
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_bgstream"));
    c.args([
        "--shards",
        glob,
        "--model",
        path_str(&common::model("tiny")),
    ])
    .args(settings.iter().flat_map(|(k, v)| [*k, *v]))
    .args(["--no-progress", "--out", path_str(out)])
    .args(extra)
    .env_remove("BGSTREAM_TEXTURES")
    .env("BGSTREAM_LOG", "error")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Every file under `dir` (one level), by name.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn overwrite_with_a_bad_model_or_textures_leaves_the_earlier_run_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(tmp.path());
    let out = tmp.path().join("out");
    assert_eq!(status(&mut command(&glob, &out, &[], &[])).0, 0);
    let before = snapshot(&out);
    assert!(before.keys().any(|k| k.ends_with(".parquet")));

    // A model file that exists but is not TorchScript, with a valid sidecar.
    let broken = tmp.path().join("broken.pt");
    std::fs::write(&broken, b"not a model").unwrap();
    std::fs::copy(
        common::model("tiny").with_extension("json"),
        broken.with_extension("json"),
    )
    .unwrap();
    let empty = tmp.path().join("no-textures");
    std::fs::create_dir(&empty).unwrap();
    let cases: [(&str, Vec<&str>); 3] = [
        ("broken model", vec!["--model", path_str(&broken)]),
        ("missing model", vec!["--model", "typo.pt"]),
        ("empty texture folder", vec!["--textures", path_str(&empty)]),
    ];
    for (name, extra) in cases {
        let mut args = vec!["--overwrite"];
        args.extend(extra);
        let (code, stderr) = status(&mut command(&glob, &out, &[], &args));
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            snapshot(&out) == before,
            "{name}: the earlier run was touched"
        );
    }
    // A good --overwrite still replaces it.
    let (code, stderr) = status(&mut command(
        &glob,
        &out,
        &[("--seed", "3")],
        &["--overwrite"],
    ));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn resume_refuses_another_precision_or_batch_size_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(tmp.path());
    let out = tmp.path().join("out");
    assert_eq!(status(&mut command(&glob, &out, &[], &[])).0, 0);
    let before = snapshot(&out);
    for (opt, want) in [
        (("--precision", "bf16"), "precision: \"fp32\" -> \"bf16\""),
        (("--batch-size", "8"), "batch_size: 5 -> 8"),
        (("--seed", "9"), "seed: 0 -> 9"),
    ] {
        let (code, stderr) = status(&mut command(&glob, &out, &[opt], &["--resume"]));
        assert_eq!(code, 1, "{opt:?}: {stderr}");
        assert!(stderr.contains(want), "{opt:?}: {stderr}");
        assert!(snapshot(&out) == before, "{opt:?}: the run was touched");
    }
    // The same settings resume (nothing left to do) and keep every file.
    let (code, stderr) = status(&mut command(&glob, &out, &[], &["--resume"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        snapshot(&out).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

#[test]
fn the_same_run_from_two_directories_writes_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir(root.join("shards")).unwrap();
    shards(&root.join("shards"));
    std::fs::create_dir(root.join("models")).unwrap();
    for ext in ["pt", "json"] {
        std::fs::copy(
            common::model("tiny").with_extension(ext),
            root.join("models").join(format!("tiny.{ext}")),
        )
        .unwrap();
    }
    // The second directory has a ../shared/data/textures beside it, as this project's
    // checkout does: it must not change a row.
    let (a, b) = (root.join("a"), root.join("b/c"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(root.join("b/shared/data/textures")).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let texture = common::jpeg(64, 64, 0);
    std::fs::write(root.join("b/shared/data/textures/t.jpg"), texture).unwrap();
    let run = |cwd: &Path, up: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_bgstream"))
            .current_dir(cwd)
            .env_remove("BGSTREAM_TEXTURES")
            .env("BGSTREAM_LOG", "error")
            .args([
                "--shards",
                &format!("{up}/shards/r-*.tar"),
                "--model",
                &format!("{up}/models/tiny.pt"),
                "--device",
                "cpu",
                "--variants",
                "original,bg_only,fg_texture,fg_gauss",
                "--workers",
                "1",
                "--readers",
                "1",
                "--out",
                "out",
                "--no-progress",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        snapshot(&cwd.join("out"))
    };
    let (first, second) = (run(&a, ".."), run(&b, "../.."));
    assert!(first.len() > 3, "{:?}", first.keys());
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &first {
        assert!(
            bytes == &second[name],
            "{name} differs between the two directories"
        );
    }
    let identity = String::from_utf8(first["_run.json"].clone()).unwrap();
    assert!(identity.contains("builtin:brick"), "{identity}");
    assert!(!sorted_rows(&a.join("out")).is_empty());
}

#[test]
fn long_shard_names_keep_part_files_short_and_numbers_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(tmp.path());
    // Two shards whose names are 240 bytes long and share their first 200: the part files
    // must stay short, and distinct.
    let long = tmp.path().join("long");
    std::fs::create_dir(&long).unwrap();
    let first = glob::glob(&glob).unwrap().next().unwrap().unwrap();
    for tail in ["a", "b"] {
        let name = format!("{}{}.tar", "x".repeat(200), tail.repeat(36));
        std::fs::copy(&first, long.join(name)).unwrap();
    }
    let out = tmp.path().join("out");
    let pattern = format!("{}/*.tar", long.display());
    let (code, stderr) = status(&mut command(&pattern, &out, &[], &[]));
    assert_eq!(code, 0, "{stderr}");
    let parts: Vec<String> = snapshot(&out)
        .into_keys()
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(parts.iter().all(|n| n.len() < 120), "{parts:?}");

    for (opt, want) in [
        (
            ("--batch-size", "100000"),
            "--batch-size must be in 1..=4096",
        ),
        (("--batch-size", "0"), "--batch-size must be in 1..=4096"),
        (("--max-pixels", "0"), "--max-pixels must be at least 1"),
    ] {
        let (code, stderr) = status(&mut command(&glob, &tmp.path().join("o2"), &[opt], &[]));
        assert_eq!(code, 2, "a usage error: {opt:?}: {stderr}");
        assert!(stderr.contains(want), "{opt:?}: {stderr}");
    }
}

/// Every row of `dir` without the `shard` column (which names the file), sorted.
fn rows_without_shard(dir: &Path) -> String {
    common::reference_sql(
        dir,
        "select key, variant, model, top5_classes, p_true, status from rows \
         order by key, variant, model",
    )
    .to_string()
}

#[test]
fn gzip_shards_read_like_plain_ones_and_other_compressions_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(tmp.path());
    let plain_out = tmp.path().join("plain");
    assert_eq!(status(&mut command(&glob, &plain_out, &[], &[])).0, 0);
    let gz = tmp.path().join("gz");
    std::fs::create_dir(&gz).unwrap();
    for p in glob::glob(&glob).unwrap() {
        let p = p.unwrap();
        let name = format!("{}.gz", p.file_name().unwrap().to_str().unwrap());
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(gz.join(name)).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut std::fs::File::open(&p).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
    }
    let gz_out = tmp.path().join("gz-out");
    let pattern = format!("{}/*.tar.gz", gz.display());
    let (code, stderr) = status(&mut command(&pattern, &gz_out, &[], &[]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(rows_without_shard(&gz_out), rows_without_shard(&plain_out));

    // A zstd shard is refused by name, with no raw bytes in the message.
    let zst = tmp.path().join("z.tar.zst");
    std::fs::write(&zst, b"\x28\xb5\x2f\xfd\x00\x58\xff\xfe garbage").unwrap();
    let summary = tmp.path().join("summary.json");
    let (code, stderr) = status(&mut command(
        path_str(&zst),
        &tmp.path().join("z-out"),
        &[],
        &["--summary-json", path_str(&summary)],
    ));
    assert_eq!(code, 3, "{stderr}");
    let s = std::fs::read_to_string(&summary).unwrap();
    assert!(s.contains("zstd-compressed"), "{s}");
    assert!(s.is_ascii(), "{s}");
}

#[test]
fn a_shard_that_failed_to_read_is_redone_by_resume_once_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(tmp.path());
    let reference = tmp.path().join("reference");
    assert_eq!(status(&mut command(&glob, &reference, &[], &[])).0, 0);
    // Cut one shard in the middle of its second sample.
    let victim = glob::glob(&glob).unwrap().next().unwrap().unwrap();
    let whole = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &whole[..whole.len() / 3]).unwrap();
    let out = tmp.path().join("out");
    let (code, stderr) = status(&mut command(&glob, &out, &[], &[]));
    assert_eq!(code, 3, "a shard error: {stderr}");
    assert_ne!(sorted_rows(&out), sorted_rows(&reference));
    // The user restores the file; --resume redoes that shard and only that one.
    std::fs::write(&victim, &whole).unwrap();
    let (code, stderr) = status(&mut command(&glob, &out, &[], &["--resume"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sorted_rows(&out), sorted_rows(&reference));
}

/// The `bgstream` key-value metadata of each Parquet file in `dir`, by file name.
fn file_metadata(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut out = BTreeMap::new();
    for (name, _) in snapshot(dir) {
        if !name.ends_with(".parquet") {
            continue;
        }
        let r = SerializedFileReader::new(std::fs::File::open(dir.join(&name)).unwrap()).unwrap();
        let kv = r.metadata().file_metadata().key_value_metadata().cloned();
        // Besides arrow's own `ARROW:schema` (fixed size), only `bgstream`.
        let kv = kv.unwrap_or_default();
        let keys: Vec<&str> = kv.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["bgstream", "ARROW:schema"], "{name}");
        let value = kv[0].value.as_deref().unwrap();
        out.insert(name, serde_json::from_str(value).unwrap());
    }
    out
}

#[test]
fn a_files_metadata_does_not_grow_with_the_run_and_names_it_by_hash() {
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let (one, many) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&many).unwrap();
    let (glob_one, glob_many) = (
        crate::resume::shards_n(&one, 1),
        crate::resume::shards_n(&many, 12),
    );
    let (out_one, out_many) = (tmp.path().join("out-a"), tmp.path().join("out-b"));
    assert_eq!(status(&mut command(&glob_one, &out_one, &[], &[])).0, 0);
    assert_eq!(status(&mut command(&glob_many, &out_many, &[], &[])).0, 0);
    let (meta_one, meta_many) = (file_metadata(&out_one), file_metadata(&out_many));
    assert_eq!((meta_one.len(), meta_many.len()), (1, 12));
    for (out, metas) in [(&out_one, &meta_one), (&out_many, &meta_many)] {
        let run = std::fs::read(out.join("_run.json")).unwrap();
        let hash: String = sha2::Sha256::digest(&run)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let manifest = std::fs::read_to_string(out.join("_manifest.jsonl")).unwrap();
        for (name, m) in metas.iter() {
            let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["run_sha256", "shard", "shard_content"], "{name}");
            assert_eq!(m["run_sha256"], hash.as_str(), "{name}");
            // Only this file's own shard is named, and its content is the manifest's.
            let entry: serde_json::Value = (manifest.lines())
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|e| e["shard"] == m["shard"])
                .unwrap();
            assert_eq!(entry["content"], m["shard_content"], "{name}");
            assert_eq!(entry["files"][0], name.as_str());
            let size = std::fs::metadata(out.join(name)).unwrap().len();
            assert_eq!(
                entry["bytes"][0], size,
                "{name}: the manifest records its size"
            );
        }
    }
    // The same shard's file: the same metadata size in a run of 1 and of 12 shards (the
    // two folders' names are as long), so 1,280 shards cost no more per file either.
    let len = |m: &serde_json::Value| m.to_string().len();
    let first_many = meta_many
        .values()
        .find(|m| m["shard"].as_str().unwrap().ends_with("r-000000.tar"));
    assert_eq!(
        len(meta_one.values().next().unwrap()),
        len(first_many.unwrap())
    );
    assert!(meta_many.values().all(|m| len(m) < 400), "{meta_many:?}");
    // Model paths and devices live in the rank's plan file instead.
    let plan = std::fs::read_to_string(out_many.join("_rank-00000-of-00001.json")).unwrap();
    assert!(plan.contains("tiny") && plan.contains("Cpu"), "{plan}");
}

#[test]
fn resume_redoes_a_shard_whose_recorded_file_did_not_reach_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(tmp.path());
    let out = tmp.path().join("out");
    assert_eq!(status(&mut command(&glob, &out, &[], &[])).0, 0);
    let before = sorted_rows(&out);
    let parts: Vec<String> = snapshot(&out)
        .into_keys()
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    // A power cut after the manifest line but before the rename reached the disk: the
    // file is gone; another file is torn to a wrong size.
    std::fs::remove_file(out.join(&parts[0])).unwrap();
    let torn = out.join(&parts[1]);
    let bytes = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    let mut resume = command(&glob, &out, &[], &["--resume"]);
    let (code, stderr) = status(resume.env("BGSTREAM_LOG", "warn"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr.matches("redoing the shard").count(), 2, "{stderr}");
    assert_eq!(sorted_rows(&out), before);
}
