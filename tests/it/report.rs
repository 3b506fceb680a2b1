//! The demo's report, opened in headless Chromium (Playwright drives Debian's Chromium):
//! every image decodes, a click on a header sorts its table, the page asks the network for
//! nothing, no script runs but the page's own; the screenshots are kept in
//! target/test-artifacts/. And a run whose every input is hostile: its report holds the
//! hostile strings as text only.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, path_str};
use crate::html_check;

#[test]
fn demo_report_in_headless_chromium() {
    if !Path::new("/usr/bin/chromium").exists() {
        eprintln!("SKIP: no /usr/bin/chromium (scripts/test installs Debian's chromium)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let demo = Command::new(common::root().join("scripts/demo-run"))
        .env("BGSTREAM", env!("CARGO_BIN_EXE_bgstream"))
        .env("DEMO_OUT", &out)
        .env("BGSTREAM_LOG", "error")
        .arg("--no-progress")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(
        demo.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let report = out.join("report.html");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("report: "))
        .unwrap_or_else(|| panic!("no report line: {stdout}"));
    assert!(line.ends_with("MB)"), "the size is stated: {line}");
    assert!(out.join("preview/preview.png").is_file(), "{stdout}");

    let artifacts = common::root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("demo-report.png");
    let check = Command::new(common::python())
        .arg(common::root().join("tests/browser/check_report.py"))
        .args([path_str(&report), path_str(&shot)])
        // 4 images x 15 variants in the gallery (less slots without a donor) and the
        // worst backgrounds; the run, heat-map and number tables.
        .args(["--min-images", "60", "--min-tables", "6"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let requests = summary["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "only the file itself: {requests:?}");
    assert!(requests[0].as_str().unwrap().starts_with("file://"));
    eprintln!(
        "demo report: {} images decoded, {} tables sorted by a click; screenshot: {}",
        summary["images"],
        summary["tables_sorted"],
        shot.display()
    );
    let html = std::fs::read_to_string(&report).unwrap();
    for section in [
        "id=\"run\"",
        "id=\"gallery\"",
        "id=\"from-background\"",
        "id=\"worst\"",
        "id=\"heat-top1\"",
        "id=\"heat-gap\"",
        "id=\"figures\"",
    ] {
        assert!(html.contains(section), "{section} missing");
    }
    // Class names, not indices, and the run's models with their weights.
    assert!(html.contains("espresso") && html.contains("efficientnet-lite0-57934424"));
}

/// The browser check itself can fail: it passes on a fixture page with the report's sort
/// script, and fails when a page fetches from the network, shows a broken image, does not
/// sort, opens a dialog, carries a handler attribute, breaks its CSP or has a second script.
#[test]
fn the_browser_check_fails_on_network_broken_images_no_sorting_and_injection() {
    if !Path::new("/usr/bin/chromium").exists() {
        eprintln!("SKIP: no /usr/bin/chromium (scripts/test installs Debian's chromium)");
        return;
    }
    let root = common::root();
    let fixture = std::fs::read_to_string(root.join("tests/browser/fixture.html")).unwrap();
    let sort = std::fs::read_to_string(root.join("assets/report/sort.js")).unwrap();
    let good = fixture.replace("/*SORT_JS*/", &sort);
    assert_ne!(good, fixture, "the fixture has a /*SORT_JS*/ slot");
    let tmp = tempfile::tempdir().unwrap();
    let check = |name: &str, html: &str| -> (bool, String) {
        let page = tmp.path().join(format!("{name}.html"));
        std::fs::write(&page, html).unwrap();
        let out = Command::new(common::python())
            .arg(root.join("tests/browser/check_report.py"))
            .arg(&page)
            .arg(tmp.path().join(format!("{name}.png")))
            .args(["--min-images", "2", "--min-tables", "2"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = check("good", &good);
    assert!(ok, "{text}");
    let remote = good.replacen(
        "<body>",
        "<body><img src=\"https://example.com/x.png\" alt=\"remote\">",
        1,
    );
    let (ok, text) = check("remote", &remote);
    assert!(!ok && text.contains("external request"), "{text}");
    let broken = good.replacen(
        "data:image/jpeg;base64,/9j/",
        "data:image/jpeg;base64,AAAA",
        1,
    );
    assert_ne!(broken, good);
    let (ok, text) = check("broken", &broken);
    assert!(!ok && text.contains("broken"), "{text}");
    let (ok, text) = check("unsorted", &fixture);
    assert!(!ok && text.contains("sorted correctly"), "{text}");
    let handler = good.replacen(
        "alt=\"mask (png)\"",
        "alt=\"mask (png)\" onload=\"alert(1)\"",
        1,
    );
    assert_ne!(handler, good);
    let (ok, text) = check("handler", &handler);
    assert!(!ok && text.contains("dialog opened"), "{text}");
    assert!(
        text.contains("event-handler attribute: <img onload="),
        "{text}"
    );
    // A policy that admits no script: the sort script is blocked, and that is reported.
    let strict = good.replacen(
        "<meta charset=\"utf-8\">",
        "<meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" \
         content=\"script-src 'none'\">",
        1,
    );
    assert_ne!(strict, good);
    let (ok, text) = check("csp", &strict);
    assert!(!ok && text.contains("CSP violation: script-src"), "{text}");
    let second = good.replacen("</body>", "<script>var x = 1;</script></body>", 1);
    let (ok, text) = check("second-script", &second);
    assert!(!ok && text.contains("2 <script> elements"), "{text}");
}

/// A hostile string: an attribute break-out, a script element, an entity and an image with
/// a handler (no `,`: a class-names line ends its name there; no `.`: a key ends there).
const HOSTILE: &str =
    "x\" onload=\"alert(1)\" y='<script>alert(2)</script>&amp;<img src=x onerror=alert(3)>";

/// The first real JPEGs, or synthetic ones where ../shared is absent (the escaping does not
/// depend on the pixels).
fn jpegs(n: usize) -> Vec<Vec<u8>> {
    let Some(data) = common::shared_data() else {
        return (0..n).map(|i| common::jpeg(256, 256, i as u8)).collect();
    };
    let mut names: Vec<_> = std::fs::read_dir(data.join("imagenet-val/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .take(n)
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// The hostile inputs of a run: files whose names and contents carry [`HOSTILE`].
struct Hostile {
    keys: Vec<String>,
    shard: PathBuf,
    class_names: PathBuf,
    textures: PathBuf,
    texture: String,
    model: PathBuf,
    model_name: String,
    weights: String,
}

/// Shard member keys (one with `/`, so folders inside the tar) and a sample `wnid`, a
/// class-names file, a texture's file name, a model's file name and sidecar (name, weights,
/// a `-seedN` group), all hostile, under `dir`.
fn hostile_inputs(dir: &Path) -> Hostile {
    let keys: Vec<String> = [
        "x\" onload=\"alert(1)\" y=",
        "<img src=x onerror=alert(1)>",
        "a/</script><script>alert(9)</script>",
        "<!-- y='&amp;-->",
    ]
    .map(String::from)
    .to_vec();
    let shard = dir.join("s x\" onload=\"alert(1)\" <i>-0.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&shard).unwrap());
    for (i, (key, jpeg)) in keys.iter().zip(jpegs(keys.len())).enumerate() {
        common::tar_add(&mut b, &format!("{key}.jpg"), &jpeg);
        common::tar_add(
            &mut b,
            &format!("{key}.cls"),
            format!("{}", 10 + i).as_bytes(),
        );
        let json = serde_json::json!({"boxes": [[40, 40, 200, 200]], "wnid": HOSTILE});
        common::tar_add(&mut b, &format!("{key}.json"), json.to_string().as_bytes());
    }
    b.finish().unwrap();
    // One class name per line, each hostile (after a wnid, as synsets.txt has them).
    let class_names = dir.join("classes x\" <i>.txt");
    let lines: Vec<String> = (0..1000)
        .map(|i| format!("n{i:08} c{i} {HOSTILE}"))
        .collect();
    std::fs::write(&class_names, lines.join("\n")).unwrap();
    let textures = dir.join("textures");
    std::fs::create_dir_all(&textures).unwrap();
    let texture = "t x\" onload=\"alert(1)\" y='<b>&amp;<img src=x onerror=alert(3)>.png";
    std::fs::copy(
        common::root().join("assets/textures/brick.png"),
        textures.join(texture),
    )
    .unwrap();
    let model = dir.join("m x\" onload=\"alert(1)\" <i>.pt");
    std::fs::copy(common::model("tiny"), &model).unwrap();
    let tiny = std::fs::read(common::root().join("models/tiny.json")).unwrap();
    let mut sidecar: serde_json::Value = serde_json::from_slice(&tiny).unwrap();
    let (model_name, weights) = (format!("{HOSTILE}-seed0"), format!("w {HOSTILE}"));
    sidecar["name"] = model_name.clone().into();
    sidecar["weights"] = weights.clone().into();
    std::fs::write(model.with_extension("json"), sidecar.to_string()).unwrap();
    Hostile {
        keys,
        shard,
        class_names,
        textures,
        texture: texture.into(),
        model,
        model_name,
        weights,
    }
}

/// Runs the hostile model and tiny on the hostile shard into `out`, then aggregates with
/// the shards, textures and class names; returns the report's path.
fn run_and_report(h: &Hostile, dir: &Path, out: &Path) -> PathBuf {
    let (code, stdout, stderr) = common::bgstream(&[
        "--shards",
        path_str(&h.shard),
        "--model",
        path_str(&h.model),
        "--model",
        path_str(&common::model("tiny")),
        "--variants",
        "original,bg_only,fg_texture,mixed_rand,worst_bg:2",
        "--textures",
        path_str(&h.textures),
        "--min-fg",
        "0",
        "--max-fg",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        path_str(out),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report = dir.join("report x\" <i>.html");
    let (code, stdout, stderr) = common::aggregate(
        out,
        &dir.join("agg x\" <i>"),
        &[
            "--shards",
            path_str(&h.shard),
            "--textures",
            path_str(&h.textures),
            "--class-names",
            path_str(&h.class_names),
            "--group-seeds",
            "--report",
            path_str(&report),
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    report
}

/// Hostile strings in every input that reaches the report ([`hostile_inputs`], and the
/// input, output and report folders), through the release binary. The report parses
/// (html5ever) into only what the templates write and shows every hostile string back as
/// text; in headless Chromium it opens no dialog, reports no CSP violation, has no handler
/// attribute and no second script.
#[test]
fn hostile_strings_from_every_input_stay_text_in_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    // No `/` in a folder name; the rest of HOSTILE is there.
    let dir = tmp
        .path()
        .join("in x\" onload=\"alert(7)\" y='<b>&amp;<img src=x onerror=alert(8)>");
    std::fs::create_dir_all(&dir).unwrap();
    let h = hostile_inputs(&dir);
    let out = dir.join("out x\" <i>");
    let report = run_and_report(&h, &dir, &out);

    let html = std::fs::read_to_string(&report).unwrap();
    let doc = html_check::check(&html).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let mut shown = vec![
        ("model", h.model_name.clone()),
        ("weights", h.weights.clone()),
        ("seed group", HOSTILE.to_string()),
        ("texture", h.texture.clone()),
        ("input folder", out.display().to_string()),
        ("class of the first image", format!("c10 {HOSTILE}")),
    ];
    shown.extend(h.keys.iter().map(|k| ("key", k.clone())));
    let visible = html_check::Visible::of(&doc);
    for (what, s) in &shown {
        assert!(visible.shows(s), "{what} not shown intact: {s}");
    }
    // Donor backgrounds are named by their keys (`image:KEY`) in the tiles' titles.
    let titles = html_check::attrs(&doc, "img[title]", "title");
    let donor = |t: &String| h.keys.iter().any(|k| t.contains(&format!("image:{k}")));
    assert!(titles.iter().any(donor), "{titles:?}");
    for raw in ["<script>alert", "onload=\"alert", "<img src=x", "<!-- y"] {
        assert!(!html.contains(raw), "{raw} unescaped");
    }

    if !Path::new("/usr/bin/chromium").exists() {
        eprintln!("SKIP (browser half): no /usr/bin/chromium (scripts/test installs it)");
        return;
    }
    let artifacts = common::root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let check = Command::new(common::python())
        .arg(common::root().join("tests/browser/check_report.py"))
        .arg(&report)
        .arg(artifacts.join("hostile-report.png"))
        // 4 images x 5 variants (less slots without pixels) and 3 figures; the tables.
        .args(["--min-images", "12", "--min-tables", "5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
