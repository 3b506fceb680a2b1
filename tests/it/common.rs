//! Paths and helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup", p.display());
    p
}

/// An exported model; the test suite's setup (scripts/setup) exports them.
pub fn model(name: &str) -> PathBuf {
    let p = root().join("models").join(format!("{name}.pt"));
    assert!(p.exists(), "{} missing: run scripts/setup", p.display());
    p
}

/// `../shared/data`, or `None` with a message (a user's clone has no ../shared).
pub fn shared_data() -> Option<PathBuf> {
    let p = root().join("../shared/data");
    if p.join("imagenet-val/annotations.csv").exists() {
        Some(p)
    } else {
        eprintln!("SKIP: ../shared/data is absent; real-ImageNet checks not run");
        None
    }
}

/// scikit-image's bundled photos (chelsea, coffee, rocket, ...), from the venv.
pub fn skimage_data() -> PathBuf {
    let out = python_stdout(&[
        "-c",
        "import os, skimage.data as d; print(os.path.dirname(d.__file__))",
    ]);
    PathBuf::from(String::from_utf8(out).unwrap().trim())
}

/// Runs the venv's python with `args`; its stdout, or a panic with its stderr.
pub fn python_stdout(args: &[&str]) -> Vec<u8> {
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `tests/reference.py ARGS`, returning its JSON report; panics with the report when
/// the reference says a check failed.
pub fn reference(args: &[&str]) -> serde_json::Value {
    python_report("tests/reference.py", args)
}

/// Runs the venv's python on `script` (relative to the repository) with `args`, returning
/// its JSON report; panics with the report when the script says a check failed.
pub fn python_report(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(root().join(script))
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON {e}: {stdout}"))
}

/// Runs the bgstream binary; returns (exit code, stdout, stderr).
pub fn bgstream(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bgstream"))
        .args(args)
        .env(
            "BGSTREAM_LOG",
            std::env::var("BGSTREAM_LOG").unwrap_or_else(|_| "error".into()),
        )
        .output()
        .expect("bgstream runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `w x h` RGB JPEG of a fixed pattern that `seed` shifts.
pub fn jpeg(w: u16, h: u16, seed: u8) -> Vec<u8> {
    let px: Vec<u8> = (0..w as usize * h as usize * 3)
        .map(|i| ((i * 31 + seed as usize * 17) % 251) as u8)
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs SQL over the Parquet files of `dir` in DuckDB (`rows` is a view of them); returns
/// the result rows as JSON arrays.
pub fn reference_sql(dir: &Path, sql: &str) -> serde_json::Value {
    let code = format!(
        "import duckdb, json, sys\ncon = duckdb.connect()\ncon.execute(\"create view rows as select * from read_parquet('{}/*.parquet')\")\nprint(json.dumps(con.execute(sys.argv[1]).fetchall()))",
        dir.display()
    );
    serde_json::from_slice(&python_stdout(&["-c", &code, sql])).expect("json")
}

/// Appends one regular member (mode 0644) to a tar being built.
pub fn tar_add<W: std::io::Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data).unwrap();
}

/// `bgstream aggregate --in INPUT --out OUT EXTRA...`; returns (exit code, stdout, stderr).
pub fn aggregate(input: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["aggregate", "--in", path_str(input), "--out", path_str(out)];
    args.extend_from_slice(extra);
    bgstream(&args)
}

/// Shards of the first `limit` real ImageNet images of ../shared (`data`), `shard_size` per
/// shard, into `dir` as `val-*.tar`; returns that glob.
pub fn shared_shards(data: &Path, dir: &Path, shard_size: usize, limit: usize) -> String {
    let (code, stdout, stderr) = bgstream(&[
        "shard",
        "--images",
        path_str(&data.join("imagenet-val/images")),
        "--annotations",
        path_str(&data.join("imagenet-val/annotations.csv")),
        "--out",
        path_str(dir),
        "--prefix",
        "val",
        "--shard-size",
        &shard_size.to_string(),
        "--limit",
        &limit.to_string(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    format!("{}/val-*.tar", dir.display())
}
