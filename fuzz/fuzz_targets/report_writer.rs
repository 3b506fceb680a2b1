//! Arbitrary strings in every field of the report -> the report writer -> html5ever (a real
//! HTML parser): the page must hold only the elements and attributes the templates write (no
//! `on*` attribute, no comment), one stylesheet and one script that the CSP admits by hash,
//! only `data:` images and in-page links, the expected number of images, and every string
//! back intact as text (tests/html/check.rs).
//!
//! Structure-aware: byte 0 picks the input's shape (pictures, run identity readable, a
//! second run, nested Table 1 sets); the rest splits at 0xFF bytes (never in UTF-8) into the
//! strings, handed out field by field in a fixed order (tests/html/fixture.rs); fields past
//! the last string are empty.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use bgstream::report::html;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/html/check.rs"]
#[allow(dead_code)] // shared with the tests, which use all of it
mod check;
#[path = "../../tests/html/fixture.rs"]
#[allow(dead_code)] // Shape::FULL is the tests' shape
mod fixture;

/// A readable figure (a scripting SVG: shown as an image it cannot run), in a folder with
/// no `missing/` below it, made once per process.
fn figure() -> &'static (tempfile::TempDir, PathBuf) {
    static FIGURE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    FIGURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fig.svg");
        std::fs::write(
            &path,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" height=\"8\" \
             onload=\"alert(1)\"><script>alert(2)</script></svg>",
        )
        .expect("figure");
        (dir, path)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let shape = fixture::Shape {
        pictures: shape & 1 != 0,
        identity_ok: shape & 2 != 0,
        second_run: shape & 4 != 0,
        nested: shape & 8 != 0,
    };
    let strings: Vec<String> = rest
        .split(|&b| b == 0xFF)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    // Past the last string, fields are empty: the page grows with the input, not faster.
    let mut strings = strings.into_iter();
    let mut next = |_field: &'static str| strings.next().unwrap_or_default();
    let (dir, path) = figure();
    let owned = fixture::build(shape, path, dir.path(), &mut next);
    let html = html::render(&owned.input());
    let doc = match check::check(&html) {
        Ok(doc) => doc,
        Err(errs) => panic!("{shape:?}: {}", errs.join("\n")),
    };
    let visible = check::Visible::of(&doc);
    for (field, s) in &owned.strings {
        assert!(
            visible.shows(s),
            "{shape:?}: {field} {s:?} not shown intact"
        );
    }
    assert_eq!(check::count(&doc, "img"), owned.images, "{shape:?}");
});
