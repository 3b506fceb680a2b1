//! A corpus of bad inputs, generated here (and by Pillow in tests/reference.py), each with
//! the stable code it must produce — a row per (variant, model) or a summary count, never a
//! panic or a silently missing row.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use crate::common::{self, path_str};

const OK_BOX: &str = r#"{"boxes": [[10, 10, 58, 50]]}"#;

fn member(b: &mut tar::Builder<File>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data).unwrap();
}

fn sample(
    b: &mut tar::Builder<File>,
    key: &str,
    ext: &str,
    img: &[u8],
    cls: Option<&str>,
    json: Option<&str>,
) {
    member(b, &format!("{key}.{ext}"), img);
    if let Some(c) = cls {
        member(b, &format!("{key}.cls"), c.as_bytes());
    }
    if let Some(j) = json {
        member(b, &format!("{key}.json"), j.as_bytes());
    }
}

/// Patches the first SOF0 segment of a baseline JPEG.
fn patch_sof(jpeg: &[u8], f: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let i = out
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline JPEG");
    f(&mut out[i..i + 10]);
    out
}

/// (key -> status) of every row, asserting each (key, variant, model) appears once.
fn statuses(dir: &Path) -> BTreeMap<String, String> {
    let out = common::reference_sql(dir, "select key, variant, model, status from rows");
    let mut seen = std::collections::BTreeSet::new();
    let mut by_key = BTreeMap::new();
    for r in out.as_array().unwrap() {
        let t = (
            r[0].as_str().unwrap().to_string(),
            r[1].as_str().unwrap().to_string(),
            r[2].as_str().unwrap().to_string(),
        );
        assert!(seen.insert(t.clone()), "row {t:?} appears twice");
        by_key.insert(t.0, r[3].as_str().unwrap().to_string());
    }
    by_key
}

#[test]
fn every_bad_input_gets_its_code_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let imgs = tmp.path().join("imgs");
    common::reference(&["make-images", path_str(&imgs)]);
    let read = |n: &str| std::fs::read(imgs.join(n)).unwrap();
    let plain = read("plain.jpg");

    let mut b = tar::Builder::new(File::create(tmp.path().join("bad-000000.tar")).unwrap());
    let good = |b: &mut tar::Builder<File>, key: &str, ext: &str, img: &[u8]| {
        sample(b, key, ext, img, Some("1"), Some(OK_BOX))
    };
    good(&mut b, "ok_plain", "jpg", &plain);
    good(&mut b, "cmyk", "jpg", &read("cmyk.jpg"));
    good(&mut b, "progressive", "jpg", &read("progressive.jpg"));
    good(&mut b, "png_named_jpg", "jpg", &read("as_png.png"));
    good(&mut b, "gray16", "png", &read("gray16.png"));
    good(&mut b, "palette", "png", &read("palette.png"));
    good(&mut b, "zero", "jpg", b"");
    good(&mut b, "truncated", "jpg", &plain[..300]);
    good(
        &mut b,
        "garbage",
        "jpg",
        &b"this is not an image at all".repeat(20),
    );
    good(&mut b, "gif", "jpg", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
    good(
        &mut b,
        "arithmetic",
        "jpg",
        &patch_sof(&plain, |s| s[1] = 0xC9),
    );
    good(
        &mut b,
        "twelve_bit",
        "jpg",
        &patch_sof(&plain, |s| s[4] = 12),
    );
    good(
        &mut b,
        "huge",
        "jpg",
        &patch_sof(&plain, |s| {
            s[5..9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60])
        }),
    );
    sample(
        &mut b,
        "one_px",
        "jpg",
        &read("one.jpg"),
        Some("1"),
        Some(r#"{"boxes": [[0, 0, 1, 1]]}"#),
    );
    sample(&mut b, "no_json", "jpg", &plain, Some("1"), None);
    sample(&mut b, "no_label", "jpg", &plain, None, Some(OK_BOX));
    sample(&mut b, "bad_json", "jpg", &plain, Some("1"), Some("{oops"));
    sample(&mut b, "bad_cls", "jpg", &plain, Some("cat"), Some(OK_BOX));
    sample(
        &mut b,
        "label_1000",
        "jpg",
        &plain,
        Some("1000"),
        Some(OK_BOX),
    );
    sample(
        &mut b,
        "boxes_empty",
        "jpg",
        &plain,
        Some("1"),
        Some(r#"{"boxes": []}"#),
    );
    sample(
        &mut b,
        "box_inverted",
        "jpg",
        &plain,
        Some("1"),
        Some(r#"{"boxes": [[50, 10, 20, 40]]}"#),
    );
    sample(
        &mut b,
        "box_negative",
        "jpg",
        &plain,
        Some("1"),
        Some(r#"{"boxes": [[-5, 0, 20, 20]]}"#),
    );
    sample(
        &mut b,
        "box_beyond",
        "jpg",
        &plain,
        Some("1"),
        Some(r#"{"boxes": [[0, 0, 97, 50]]}"#),
    );
    sample(
        &mut b,
        "box_all",
        "jpg",
        &plain,
        Some("1"),
        Some(r#"{"boxes": [[0, 0, 96, 80]]}"#),
    );
    sample(
        &mut b,
        "size_lie",
        "jpg",
        &plain,
        Some("1"),
        Some(r#"{"boxes": [[1, 1, 20, 20]], "width": 640, "height": 480}"#),
    );
    sample(&mut b, "no_image", "txt", b"hello", Some("1"), Some(OK_BOX));
    good(&mut b, "ok_plain", "jpg", &plain); // the same key again, later in the shard
    good(&mut b, "v1.2", "jpg", &plain); // a dotted key
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    b.append_link(&mut link, "link.jpg", "ok_plain.jpg")
        .unwrap();
    b.finish().unwrap();
    drop(b);

    // A shard cut in the middle of its third image.
    let cut = tmp.path().join("bad-000001.tar");
    let mut b = tar::Builder::new(File::create(&cut).unwrap());
    for k in ["cut_a", "cut_b", "cut_c"] {
        sample(&mut b, k, "jpg", &plain, Some("1"), Some(OK_BOX));
    }
    b.finish().unwrap();
    drop(b);
    let bytes = std::fs::read(&cut).unwrap();
    let third = bytes.windows(9).rposition(|w| w == b"cut_c.jpg").unwrap();
    std::fs::write(&cut, &bytes[..third + 512 + 1000]).unwrap();
    // Not a tar at all.
    std::fs::write(
        tmp.path().join("bad-000002.tar"),
        b"\x00garbage, not a tar archive".repeat(40),
    )
    .unwrap();

    let out = tmp.path().join("out");
    let summary = tmp.path().join("summary.json");
    let shards = format!("{}/bad-*.tar", tmp.path().display());
    let tiny = common::model("tiny");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--shards",
            &shards,
            "--model",
            path_str(&tiny),
            "--device",
            "cpu",
            "--variants",
            "original,bg_only",
            "--workers",
            "2",
            "--no-progress",
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        common::bgstream(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, stdout, stderr) = run(&[
        "--out",
        path_str(&out),
        "--summary-json",
        path_str(&summary),
    ]);
    assert_eq!(code, 3, "items failed -> exit 3\n{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();

    let got = statuses(&out);
    let expect: BTreeMap<&str, &str> = BTreeMap::from([
        ("ok_plain", "ok"),
        ("cmyk", "ok"),
        ("progressive", "ok"),
        ("png_named_jpg", "ok"), // decoded by content, whatever the member name says
        ("gray16", "ok"),
        ("palette", "ok"),
        ("zero", "decode_error"),
        ("truncated", "decode_error"),
        ("garbage", "unsupported_format"),
        ("gif", "unsupported_format"),
        ("arithmetic", "unsupported_format"),
        ("twelve_bit", "unsupported_format"),
        ("huge", "too_large"),
        ("one_px", "too_small"),
        ("no_json", "no_boxes"),
        ("no_label", "missing_label"),
        ("bad_json", "bad_annotation"),
        ("bad_cls", "bad_annotation"),
        ("label_1000", "label_out_of_range"),
        ("boxes_empty", "no_boxes"),
        ("box_inverted", "bad_box"),
        ("box_negative", "bad_box"),
        ("box_beyond", "bad_box"),
        ("size_lie", "size_mismatch"),
        ("no_image", "missing_image"),
        ("ok_plain#dup2", "duplicate_key"),
        ("v1", "bad_key"),
        ("cut_a", "ok"),
        ("cut_b", "ok"),
        ("cut_c", "truncated"),
    ]);
    let got_ref: BTreeMap<&str, &str> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got_ref, expect, "status per key");
    assert_eq!(
        s["filtered"], 1,
        "box_all covers the whole image: filtered, counted"
    );
    assert_eq!(s["skipped_members"], 1, "the symlink member");
    let errors: Vec<String> = s["shard_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].ends_with("bad-000001.tar") && errors[1].ends_with("bad-000002.tar"),
        "{errors:?}"
    );
    let failed = expect.values().filter(|v| **v != "ok").count();
    assert_eq!(s["failed"], failed);
    assert_eq!(s["rows_written"], expect.len() * 2);
    assert!(stdout.contains("shard error"), "{stdout}");

    // --fail-fast: the first bad item is fatal, named, exit 1.
    let (code, _, stderr) = run(&["--out", path_str(&tmp.path().join("ff")), "--fail-fast"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--fail-fast") && stderr.contains("bad-00000"),
        "{stderr}"
    );
}

#[test]
fn bad_models_are_fatal_before_any_image_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = tmp.path().join("s.tar");
    let mut b = tar::Builder::new(File::create(&shard).unwrap());
    sample(&mut b, "a", "jpg", &[0xFF, 0xD8], Some("1"), Some(OK_BOX));
    b.finish().unwrap();
    drop(b);
    let tiny = common::model("tiny");
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, Edit, &str); 4] = [
        (
            "classes",
            Box::new(|j| j["num_classes"] = 10.into()),
            "num_classes 10",
        ),
        (
            "size",
            Box::new(|j| j["input_size"] = 2.into()),
            "input_size",
        ),
        ("crop", Box::new(|j| j["crop_pct"] = 1.5.into()), "crop_pct"),
        ("nojson", Box::new(|_| {}), "sidecar"),
    ];
    for (name, edit, needle) in cases {
        let pt = tmp.path().join(format!("{name}.pt"));
        std::fs::copy(&tiny, &pt).unwrap();
        if name != "nojson" {
            let mut j: serde_json::Value =
                serde_json::from_slice(&std::fs::read(tiny.with_extension("json")).unwrap())
                    .unwrap();
            edit(&mut j);
            std::fs::write(pt.with_extension("json"), j.to_string()).unwrap();
        }
        let out = tmp.path().join(format!("out-{name}"));
        let (code, _, stderr) = common::bgstream(&[
            "--shards",
            path_str(&shard),
            "--model",
            path_str(&pt),
            "--device",
            "cpu",
            "--out",
            path_str(&out),
        ]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains(&format!("{name}.pt")),
            "{name}: {stderr}"
        );
        let written = std::fs::read_dir(&out).map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count()
        });
        assert_eq!(written.unwrap_or(0), 0, "{name}: nothing may be written");
    }
}
