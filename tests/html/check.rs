//! What every bgstream report must be, judged by a real HTML parser (html5ever, through
//! scraper) that reads it as a browser would: only the elements and attributes the
//! templates write (so no `on*` handler and no `style=`), exactly one `<style>` and one
//! `<script>`, a Content-Security-Policy that admits those two by their hashes and nothing
//! inline else, images only as `data:` URIs the program encoded, links only within the page.
//!
//! Shared (by `#[path]`) by tests/data, tests/it and the fuzz target fuzz/report_writer.

use base64::Engine as _;
use scraper::{ElementRef, Html, Selector};
use sha2::{Digest, Sha256};

/// Per element the templates write, the attributes they give it.
const WRITTEN: &[(&str, &[&str])] = &[
    ("html", &["lang"]),
    ("head", &[]),
    ("meta", &["charset", "http-equiv", "content"]),
    ("title", &[]),
    ("style", &[]),
    ("body", &[]),
    ("script", &[]),
    ("h1", &[]),
    ("h2", &["id"]),
    ("h3", &[]),
    ("nav", &[]),
    ("a", &["href"]),
    ("div", &["id", "class"]),
    ("p", &["class"]),
    ("b", &[]),
    ("br", &[]),
    ("code", &[]),
    ("small", &[]),
    ("ul", &["class"]),
    ("li", &["class"]),
    ("dl", &["class"]),
    ("dt", &[]),
    ("dd", &[]),
    ("table", &["id", "class"]),
    ("thead", &[]),
    ("tbody", &[]),
    ("tr", &[]),
    ("th", &["class"]),
    ("td", &["class", "data-v"]),
    ("img", &["src", "alt", "width", "height", "title"]),
    ("figure", &[]),
    ("figcaption", &[]),
];

fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&Selector::parse(css).expect("selector"))
        .collect()
}

/// The `'sha256-…'` CSP source of a text, computed here independently of the writer.
fn sha256_source(text: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    format!("'sha256-{b64}'")
}

/// Elements, attributes and comments the templates never write.
fn check_elements(doc: &Html, errs: &mut Vec<String>) {
    if let Some(c) = doc.tree.nodes().find_map(|n| n.value().as_comment()) {
        errs.push(format!(
            "a comment the templates never write: {:?}",
            short(c)
        ));
    }
    for el in doc.root_element().descendent_elements() {
        let name = el.value().name();
        let Some((_, attrs)) = WRITTEN.iter().find(|(n, _)| *n == name) else {
            errs.push(format!("element <{name}> that the templates never write"));
            continue;
        };
        for (attr, value) in el.value().attrs() {
            if attr.to_ascii_lowercase().starts_with("on") {
                errs.push(format!("event-handler attribute <{name} {attr}={value:?}>"));
            } else if !attrs.contains(&attr) {
                errs.push(format!(
                    "attribute <{name} {attr}> that the templates never write"
                ));
            }
        }
    }
}

/// One `<style>`, one `<script>`, and a CSP in `<head>`, before both, that admits exactly
/// those two by hash.
fn check_policy(doc: &Html, errs: &mut Vec<String>) {
    let styles = select(doc, "style");
    let scripts = select(doc, "script");
    if styles.len() != 1 || scripts.len() != 1 {
        errs.push(format!(
            "{} <style> and {} <script> elements, want one each",
            styles.len(),
            scripts.len()
        ));
        return;
    }
    // The charset and the policy, in <head>: any other meta (a second policy, a refresh)
    // was not written by the templates.
    let (all, in_head) = (select(doc, "meta"), select(doc, "head > meta"));
    if all.len() != 2 || in_head.len() != 2 {
        errs.push(format!(
            "{} <meta> elements, {} in <head>, want 2",
            all.len(),
            in_head.len()
        ));
    }
    let metas = select(doc, "head > meta[http-equiv]");
    let [meta] = metas.as_slice() else {
        errs.push(format!(
            "{} http-equiv metas in <head>, want one",
            metas.len()
        ));
        return;
    };
    let csp = meta.value().attr("content").unwrap_or_default();
    let style_text: String = styles[0].text().collect();
    let script_text: String = scripts[0].text().collect();
    let want = format!(
        "default-src 'none'; img-src data:; style-src {}; script-src {}",
        sha256_source(&style_text),
        sha256_source(&script_text)
    );
    if meta.value().attr("http-equiv") != Some("Content-Security-Policy") || csp != want {
        errs.push(format!("CSP is {csp:?}, want {want:?}"));
    }
    // The policy applies from where it appears: it must precede what it admits.
    let at = |el: &ElementRef<'_>| {
        doc.root_element()
            .descendent_elements()
            .position(|e| e.id() == el.id())
    };
    if at(meta) > at(&styles[0]) || at(meta) > at(&scripts[0]) {
        errs.push("the CSP comes after the style or script it governs".into());
    }
}

/// Images are `data:` URIs of base64 the program encoded; links stay in the page.
fn check_urls(doc: &Html, errs: &mut Vec<String>) {
    for img in select(doc, "img") {
        let src = img.value().attr("src").unwrap_or_default();
        let payload = ["data:image/jpeg;base64,", "data:image/svg+xml;base64,"]
            .iter()
            .find_map(|p| src.strip_prefix(p));
        let decodes =
            payload.is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_ok());
        if !decodes {
            errs.push(format!(
                "<img src={:?}> is not an encoded data: URI",
                short(src)
            ));
        }
    }
    for a in select(doc, "a") {
        let href = a.value().attr("href").unwrap_or_default();
        if !href.starts_with('#') {
            errs.push(format!("<a href={href:?}> leaves the page"));
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Parses and checks a report; the document, or every violation found.
pub fn check(html: &str) -> Result<Html, Vec<String>> {
    let doc = Html::parse_document(html);
    let mut errs = Vec::new();
    check_elements(&doc, &mut errs);
    check_policy(&doc, &mut errs);
    check_urls(&doc, &mut errs);
    if errs.is_empty() {
        Ok(doc)
    } else {
        Err(errs)
    }
}

/// What a browser keeps of a string: newlines normalised, NUL dropped (from text) or
/// replaced (in attributes), so both sides lose it.
fn normalise(s: &str) -> String {
    s.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace(['\0', '\u{FFFD}'], "")
}

/// What a reader sees of a page: its text nodes (not the stylesheet's or the script's) and
/// its images' `alt` and `title`, each normalised.
pub struct Visible(Vec<String>);

impl Visible {
    pub fn of(doc: &Html) -> Self {
        let mut seen: Vec<String> = doc
            .root_element()
            .descendants()
            .filter(|n| {
                let parent = n
                    .parent()
                    .and_then(|p| p.value().as_element().map(|e| e.name()));
                !matches!(parent, Some("style" | "script"))
            })
            .filter_map(|n| n.value().as_text().map(|t| normalise(t)))
            .collect();
        for img in select(doc, "img") {
            for a in ["alt", "title"] {
                seen.extend(img.value().attr(a).map(normalise));
            }
        }
        Visible(seen)
    }

    /// Whether `s` reaches the page intact: inside one text node, or one `alt` / `title`.
    pub fn shows(&self, s: &str) -> bool {
        let s = normalise(s);
        self.0.iter().any(|t| t.contains(&s))
    }
}

/// Counts the elements `css` selects.
pub fn count(doc: &Html, css: &str) -> usize {
    select(doc, css).len()
}

/// The distinct classes of the elements `css` selects, sorted.
pub fn classes(doc: &Html, css: &str) -> Vec<String> {
    let mut out: Vec<String> = select(doc, css)
        .iter()
        .flat_map(|e| e.value().classes().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The values of attribute `attr` on the elements `css` selects.
pub fn attrs(doc: &Html, css: &str, attr: &str) -> Vec<String> {
    select(doc, css)
        .iter()
        .filter_map(|e| e.value().attr(attr).map(str::to_string))
        .collect()
}
