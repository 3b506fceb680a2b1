//! The report writer with a hostile string in every field it shows, parsed as a browser
//! parses it (html5ever): only the elements and attributes the templates write, one
//! stylesheet and one script admitted by the CSP's hashes, `data:` images only, and every
//! hostile string back as text, intact.

use bgstream::report::html as report;

use crate::fixture::{self, Shape};
use crate::html_check as check;

/// An attribute break-out, a script element, an entity and an image with a handler.
const HOSTILE: &str =
    "x\" onload=\"alert(1)\" y='<script>alert(2)</script>&amp;<img src=x onerror=alert(3)>";

/// Hostile strings, each naming its field and numbered (so each must be shown on its
/// own), with the ends of raw-text elements and comments.
fn hostile() -> impl FnMut(&str) -> String {
    let mut n = 0;
    move |field| {
        n += 1;
        format!("{field} {n}: {HOSTILE} --></style></script><svg onload=alert(4)>")
    }
}

/// Plain strings, each its field and a number (the models' names differ).
fn plain() -> impl FnMut(&str) -> String {
    let mut n = 0;
    move |field| {
        n += 1;
        format!("{field} {n}")
    }
}

/// A figure that would script if it were inlined; shown as an image, it cannot.
const SCRIPTING_SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" \
    height=\"10\" onload=\"alert(5)\"><script>alert(6)</script><text>m</text></svg>";

const SHAPES: [Shape; 3] = [
    Shape::FULL,
    Shape {
        pictures: false,
        identity_ok: false,
        second_run: true,
        nested: true,
    },
    Shape {
        pictures: true,
        identity_ok: true,
        second_run: false,
        nested: true,
    },
];

#[test]
fn hostile_strings_in_every_field_stay_text() {
    let tmp = tempfile::tempdir().unwrap();
    let figure = tmp.path().join("fig.svg");
    std::fs::write(&figure, SCRIPTING_SVG).unwrap();
    for shape in SHAPES {
        let owned = fixture::build(shape, &figure, tmp.path(), &mut hostile());
        let html = report::render(&owned.input());
        let doc = check::check(&html).unwrap_or_else(|e| panic!("{shape:?}: {}", e.join("\n")));
        assert!(
            owned.strings.len() > 15,
            "{shape:?}: {}",
            owned.strings.len()
        );
        let visible = check::Visible::of(&doc);
        for (field, s) in &owned.strings {
            assert!(visible.shows(s), "{shape:?}: {field} is not shown intact");
        }
        assert_eq!(check::count(&doc, "img"), owned.images, "{shape:?}");
        // The escaping itself: no hostile markup reaches the page raw.
        for raw in [
            "<script>alert",
            "onload=\"alert",
            "<img src=x",
            "<svg onload",
        ] {
            assert!(!html.contains(raw), "{shape:?}: {raw} unescaped");
        }
        let tables = if shape.pictures { 10 } else { 9 };
        let tables = tables - usize::from(!shape.identity_ok);
        assert_eq!(check::count(&doc, "table"), tables, "{shape:?}");
    }
}

#[test]
fn heat_map_cells_take_classes_the_stylesheet_defines() {
    let tmp = tempfile::tempdir().unwrap();
    let figure = tmp.path().join("fig.svg");
    std::fs::write(&figure, SCRIPTING_SVG).unwrap();
    let owned = fixture::build(Shape::FULL, &figure, tmp.path(), &mut plain());
    let html = report::render(&owned.input());
    let doc = check::check(&html).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let css = report::stylesheet();
    let classes = check::classes(&doc, "table#heat-top1 td, table#heat-gap td");
    // Accuracy 70%, 25% and 80%, and a gap of 45 points.
    assert_eq!(classes, ["hb13", "hb15", "hb5", "hr17", "t"]);
    for c in classes.iter().filter(|c| *c != "t") {
        assert!(
            css.contains(&format!("td.{c} {{")),
            "{c} not in the stylesheet"
        );
    }
}

/// The checker fails on what an injection would leave: a handler, a second script, a
/// changed stylesheet (its hash no longer matches), a policy allowing inline code, an image
/// or link that is not the program's.
#[test]
fn the_checker_rejects_what_an_injection_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let figure = tmp.path().join("fig.svg");
    std::fs::write(&figure, SCRIPTING_SVG).unwrap();
    let owned = fixture::build(Shape::FULL, &figure, tmp.path(), &mut plain());
    let good = report::render(&owned.input());
    check::check(&good).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let csp = "style-src 'sha256-";
    let cases = [
        (
            "<h1>",
            "<h1 onclick=\"alert(1)\">",
            "event-handler attribute",
        ),
        ("<h1>", "<h1 style=\"color:red\">", "never write"),
        ("</h1>", "</h1><script>alert(1)</script>", "<script>"),
        ("</h1>", "</h1><iframe></iframe>", "element <iframe>"),
        ("body {", "body { color: red; ", "CSP is"),
        (csp, "style-src 'unsafe-inline' 'sha256-", "CSP is"),
        (
            "<h1>",
            "<h1><img src=\"x.png\" alt=\"x\">",
            "not an encoded data: URI",
        ),
        (
            "<h1>",
            "<h1><a href=\"javascript:alert(1)\">x</a>",
            "leaves the page",
        ),
        (
            "<h1>",
            "<h1><meta http-equiv=\"refresh\" content=\"0\">",
            "<meta> elements",
        ),
    ];
    for (at, with, want) in cases {
        let bad = good.replacen(at, with, 1);
        assert_ne!(bad, good, "{at}");
        let errs = check::check(&bad).err().unwrap_or_default();
        assert!(errs.iter().any(|e| e.contains(want)), "{with}: {errs:?}");
    }
    // A CSP placed after the stylesheet it should govern.
    let meta_start = good.find("<meta http-equiv").unwrap();
    let meta = &good[meta_start..good.find("<title>").unwrap()];
    let late = good
        .replacen(meta, "", 1)
        .replacen("</head>", &format!("{meta}</head>"), 1);
    let errs = check::check(&late).err().unwrap_or_default();
    assert!(errs.iter().any(|e| e.contains("comes after")), "{errs:?}");
    // A comment (what `-->` in a string would end or `<!--` open).
    let errs = check::check(&good.replacen("</h1>", "</h1><!-- x -->", 1)).err();
    assert!(errs
        .unwrap_or_default()
        .iter()
        .any(|e| e.contains("comment")));
}
