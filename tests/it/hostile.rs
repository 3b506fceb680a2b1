//! Inputs an adversarial user would try that the bad-input corpus does not hold, with the
//! 66 real ImageNet JPEGs: tar headers that declare absurd sizes (PAX and GNU base-256),
//! keys starting with a dot, member names that are not UTF-8, symlinks, and one key in two
//! shards. Each must end with rows for every sample, a clear count, the right exit code.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::common::{self, path_str};

/// The real JPEGs, or `None` (with a message) where ../shared is absent.
fn real_jpegs() -> Option<Vec<Vec<u8>>> {
    let Some(data) = common::shared_data() else {
        eprintln!("skipped: ../shared/data (the real ImageNet JPEGs) is absent");
        return None;
    };
    let dir = data.join("imagenet-val/images");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    Some(
        names
            .iter()
            .take(8)
            .map(|p| std::fs::read(p).unwrap())
            .collect(),
    )
}

const BOX: &str = r#"{"boxes": [[40, 40, 200, 200]]}"#;

fn member(b: &mut tar::Builder<File>, name: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, Path::new(std::ffi::OsStr::from_bytes(name)), data)
        .unwrap();
}

fn sample(b: &mut tar::Builder<File>, key: &[u8], jpeg: &[u8]) {
    for (ext, data) in [
        (&b".jpg"[..], jpeg),
        (b".cls", b"7"),
        (b".json", BOX.as_bytes()),
    ] {
        member(b, &[key, ext].concat(), data);
    }
}

/// A member header for `name` whose size field says 2^60 bytes in GNU base-256.
fn base256_header(name: &str, real_len: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_size(real_len as u64);
    let mut size = [0u8; 12];
    size[0] = 0x80;
    size[4] = 0x10;
    h.as_old_mut().size = size;
    h.set_cksum();
    h
}

fn run(shards: &str, out: &Path, summary: &Path) -> (i32, String, String) {
    common::bgstream(&[
        "--shards",
        shards,
        "--model",
        path_str(&common::model("tiny")),
        "--device",
        "cpu",
        "--variants",
        "original,bg_only",
        "--min-fg",
        "0",
        "--max-fg",
        "1",
        "--no-progress",
        "--out",
        path_str(out),
        "--summary-json",
        path_str(summary),
    ])
}

fn statuses(out: &Path) -> Vec<(String, String)> {
    let rows = common::reference_sql(
        out,
        "select key, min(status), max(status), count(*) from rows group by key order by key",
    );
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r[1], r[2], "one status per key: {r}");
            assert_eq!(r[3], 2, "a row per variant: {r}");
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn lying_sizes_dot_keys_odd_names_and_symlinks_lose_nothing() {
    let Some(jpegs) = real_jpegs() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(File::create(tmp.path().join("h-0.tar")).unwrap());
    sample(&mut b, b"good", &jpegs[0]);
    sample(&mut b, b".n02", &jpegs[1]); // a real labelled image whose key starts with a dot
    sample(&mut b, b"\xfe", &jpegs[2]); // two names that are not UTF-8 ...
    sample(&mut b, b"\xff", &jpegs[3]); // ... and must stay two samples
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    b.append_link(&mut link, "link.jpg", "good.jpg").unwrap();
    b.finish().unwrap();
    drop(b);

    // A PAX record declaring 2^60 bytes for the second image's member.
    let mut b = tar::Builder::new(File::create(tmp.path().join("h-1.tar")).unwrap());
    sample(&mut b, b"pax_before", &jpegs[4]);
    let record = b"28 size=1152921504606846976\n";
    let mut pax = tar::Header::new_ustar();
    pax.set_path("PaxHeaders/pax_lie.jpg").unwrap();
    pax.set_entry_type(tar::EntryType::XHeader);
    pax.set_size(record.len() as u64);
    pax.set_cksum();
    b.append(&pax, &record[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("pax_lie.jpg").unwrap();
    h.set_size(jpegs[5].len() as u64);
    h.set_cksum();
    b.append(&h, &jpegs[5][..]).unwrap();
    b.finish().unwrap();
    drop(b);

    // A GNU base-256 size field declaring 2^60 bytes.
    let mut b = tar::Builder::new(File::create(tmp.path().join("h-2.tar")).unwrap());
    sample(&mut b, b"gnu_before", &jpegs[6]);
    b.append(
        &base256_header("gnu_lie.jpg", jpegs[7].len()),
        &jpegs[7][..],
    )
    .unwrap();
    b.finish().unwrap();
    drop(b);

    let out = tmp.path().join("out");
    let summary = tmp.path().join("summary.json");
    let shards = format!("{}/h-*.tar", tmp.path().display());
    let (code, stdout, stderr) = run(&shards, &out, &summary);
    assert_eq!(
        code, 3,
        "shard errors and a skipped member -> exit 3\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("memory"),
        "{stderr}"
    );
    let got = statuses(&out);
    let want: Vec<(String, String)> = [
        (".n02", "ok"),
        ("\\xfe", "ok"),
        ("\\xff", "ok"),
        ("gnu_before", "ok"),
        ("gnu_lie", "truncated"),
        ("good", "ok"),
        ("pax_before", "ok"),
        ("pax_lie", "truncated"),
    ]
    .iter()
    .map(|(k, s)| (k.to_string(), s.to_string()))
    .collect();
    assert_eq!(got, want);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["skipped_members"], 1, "the symlink");
    assert_eq!(s["shard_errors"].as_array().unwrap().len(), 2, "{s}");
    assert!(stdout.contains("1 tar member(s) skipped"), "{stdout}");
    // The symlink alone (no shard error) is enough for exit 3.
    let h0 = tmp.path().join("h-0.tar");
    let (code, stdout, _) = run(path_str(&h0), &tmp.path().join("o2"), &summary);
    assert_eq!(code, 3, "{stdout}");
}

#[test]
fn one_key_in_two_shards_is_named_by_the_run_and_by_aggregate() {
    let Some(jpegs) = real_jpegs() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (i, shard) in ["d-0.tar", "d-1.tar"].iter().enumerate() {
        let mut b = tar::Builder::new(File::create(tmp.path().join(shard)).unwrap());
        sample(&mut b, b"same", &jpegs[i]); // two different images under one key
        sample(&mut b, format!("own{i}").as_bytes(), &jpegs[2 + i]);
        b.finish().unwrap();
    }
    let out = tmp.path().join("out");
    let summary = tmp.path().join("summary.json");
    let (code, stdout, stderr) = run(&format!("{}/d-*.tar", tmp.path().display()), &out, &summary);
    assert_eq!(
        code, 0,
        "duplicates are reported, not failures\n{stdout}\n{stderr}"
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["duplicate_keys"], 1, "{s}");
    let line = stdout
        .lines()
        .find(|l| l.contains("another shard"))
        .expect(&stdout);
    assert!(
        line.contains("e.g. same in") && line.contains("d-0.tar") && line.contains("d-1.tar"),
        "{line}"
    );
    // Both images' rows were written; aggregate says what it will do with them.
    let rows = common::reference_sql(
        &out,
        "select count(*), count(distinct shard) from rows where key = 'same'",
    );
    assert_eq!(rows[0], serde_json::json!([4, 2]), "2 variants x 2 images");
    let (code, _, stderr) = common::aggregate(&out, &tmp.path().join("agg"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 key(s) have rows from more than one shard (e.g. same in")
            && stderr.contains("d-0.tar")
            && stderr.contains("d-1.tar"),
        "{stderr}"
    );
}
