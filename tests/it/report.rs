//! The demo's report, opened in headless Chromium (Playwright drives Debian's Chromium):
//! every image decodes, a click on a header sorts its table, the page asks the network for
//! nothing, no script runs but the page's own; the screenshot is kept in
//! target/test-artifacts/.

use std::path::Path;
use std::process::Command;

use crate::common::{self, path_str};

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
