//! One self-contained HTML report: the tables, the thumbnails and the figures.
//!
//! Nearly every string on the page comes from input (keys, class names, model names and
//! sidecars, variants, backgrounds, file names), so all markup is written by maud templates:
//! each splice is HTML-escaped, quotes included. `PreEscaped` wraps only what the program
//! wrote itself (its stylesheet and sort script). The page's Content-Security-Policy admits
//! that one stylesheet and that one script by hash, and images only as `data:` URIs, which
//! only [`DataUri`] (encoded bytes) can produce; figures are SVGs shown through `<img>`,
//! where an SVG cannot run script.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::{Digest, Sha256};

use super::gallery::{Caption, DataUri, Pic, Pictures, Shown};
use crate::aggregate::completeness::RunFacts;
use crate::aggregate::load::Loaded;
use crate::aggregate::metrics::{Aggregate, SummaryRow};
use crate::aggregate::per_class::BestClass;
use crate::aggregate::seeds::SeedRow;
use crate::run::identity::RunIdentity;
use crate::sidecar::Sidecar;

/// Everything the report shows.
pub struct ReportInput<'a> {
    pub aggregate: &'a Aggregate,
    pub data: &'a Loaded,
    /// The figure files to show.
    pub svgs: &'a [PathBuf],
    pub warnings: &'a [String],
    pub best_classes: &'a [(String, BestClass)],
    pub facts: &'a RunFacts,
    /// With `aggregate --shards`: the images.
    pub pictures: Option<&'a Pictures>,
    pub input: &'a Path,
    /// `--group-seeds`.
    pub seed_groups: &'a [SeedRow],
}

/// The sort script, the page's only script.
pub const SORT_JS: &str = include_str!("../../assets/report/sort.js");

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1280px; color: #222; padding: 0 1rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
nav a { margin-right: 0.8rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.88rem; display: block; overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f0f0f0; vertical-align: bottom; }
th:first-child, td:first-child, td.t, th.t { text-align: left; }
td small { color: #666; }
table.sortable th:not([data-nosort]) { cursor: pointer; }
table.sortable th[aria-sort=ascending]::after { content: " \25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \25BC"; }
.figs img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.5rem 0; }
code { background: #f6f6f6; padding: 0 0.2rem; }
dl.run { display: grid; grid-template-columns: max-content auto; gap: 0.15rem 1rem; font-size: 0.9rem; }
dl.run dt { font-weight: 600; } dl.run dd { margin: 0; }
table.pics td { vertical-align: top; text-align: left; white-space: normal; }
table.pics img { width: 112px; height: 112px; display: block; }
ul.cap { list-style: none; padding: 0; margin: 0.2rem 0 0; font-size: 0.72rem; max-width: 140px; }
ul.cap li.ok::before { content: "\2713 "; color: #080; } ul.cap li.no::before { content: "\2717 "; color: #b00; }
.strip { display: flex; flex-wrap: wrap; gap: 0.6rem; margin: 0.3rem 0 1rem; }
.strip figure { margin: 0; width: 150px; font-size: 0.75rem; }
.strip img { width: 112px; height: 112px; display: block; }
.note { color: #555; font-size: 0.9rem; }
#warnings { background: #fff4e5; border: 1px solid #f0c36d; padding: 0.3rem 1rem; }
"#;

/// Colour steps per heat-map scale: cells take a class (inline styles would need
/// `'unsafe-inline'` in the CSP).
const HEAT_STEPS: usize = 20;

/// The page's only stylesheet: [`STYLE`] and the heat-map classes, `td.h{b,r}{0..20}`:
/// blue for accuracy (white 0 → dark 100%), red where a variant loses accuracy.
pub fn stylesheet() -> String {
    let mut css = STYLE.to_string();
    for (scale, hue) in [("b", 215), ("r", 5)] {
        for step in 0..HEAT_STEPS {
            let light = 97.0 - 55.0 * step as f64 / (HEAT_STEPS - 1) as f64;
            let ink = if light < 62.0 { "#fff" } else { "#111" };
            let _ = writeln!(
                css,
                "td.h{scale}{step} {{ background: hsl({hue},65%,{light:.0}%); color: {ink}; }}"
            );
        }
    }
    css
}

/// The heat-map class of a value: accuracy on the blue scale, or for a gap (`diverging`)
/// red where the variant loses accuracy (up to 50 points) and blue where it gains.
fn heat_class(x: f64, diverging: bool) -> String {
    let (scale, t) = if diverging {
        (if x >= 0.0 { "r" } else { "b" }, (x.abs() / 0.5).min(1.0))
    } else {
        ("b", x.clamp(0.0, 1.0))
    };
    // A NaN (never produced, but not trusted) still gets a defined class: casts saturate.
    let step = ((t * (HEAT_STEPS - 1) as f64).round() as usize).min(HEAT_STEPS - 1);
    format!("h{scale}{step}")
}

/// `'sha256-…'` of an inline element's exact text, as a CSP source.
pub fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    format!("'sha256-{b64}'")
}

/// The page's policy: nothing from anywhere, images only as `data:`, and only the page's
/// own stylesheet and script (by hash, so no other inline code, no `on*` handler, no
/// `style=` attribute runs or applies).
pub fn content_security_policy(style: &str, script: &str) -> String {
    format!(
        "default-src 'none'; img-src data:; style-src {}; script-src {}",
        csp_hash(style),
        csp_hash(script)
    )
}

/// Renders the report.
pub fn render(r: &ReportInput<'_>) -> String {
    let style = stylesheet();
    // A raw-text element ends at its closing tag: the program's own text must not hold one.
    debug_assert!(!style.contains("</") && !SORT_JS.contains("</") && !SORT_JS.contains("<!--"));
    let csp = content_security_policy(&style, SORT_JS);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(csp);
                title { "bgstream report" }
                // The program's own stylesheet (no input in it), admitted by its hash.
                style { (PreEscaped(&style)) }
            }
            body {
                h1 { "bgstream report" }
                (nav(r))
                (warnings(r.warnings))
                (run_section(r))
                (pictures_section(r.pictures, r.input))
                (heatmaps(r.aggregate))
                (top1_table(r.aggregate))
                (summary_table(r.aggregate))
                (seed_groups(r.seed_groups))
                (backgrounds(r.aggregate))
                (table1(r.aggregate))
                (best_classes(r.aggregate, r.best_classes))
                (figures(r.svgs))
                // The program's own script (a compiled-in asset), admitted by its hash.
                script { (PreEscaped(SORT_JS)) }
            }
        }
    }
    .into_string()
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{:.1}", 100.0 * x))
}

/// A cell that sorts by its value (`data-v`; empty sorts last) and shows `text(value)`.
fn value_cell(v: Option<f64>, text: impl Fn(f64) -> String) -> Markup {
    html! {
        @match v {
            Some(x) => { td data-v=(format!("{x:.6}")) { (text(x)) } }
            None => { td data-v="" { "–" } }
        }
    }
}

fn pct_cell(v: Option<f64>) -> Markup {
    value_cell(v, |x| format!("{:.1}", 100.0 * x))
}

fn signed_cell(v: Option<f64>) -> Markup {
    value_cell(v, |x| format!("{:+.1}", 100.0 * x))
}

fn num_cell(v: Option<f64>) -> Markup {
    value_cell(v, |x| format!("{x:.3}"))
}

fn text_cell(s: &str) -> Markup {
    html! { td class="t" { (s) } }
}

/// A heat-map cell (see [`heat_class`]).
fn heat_cell(v: Option<f64>, diverging: bool) -> Markup {
    html! {
        @match v {
            Some(x) => {
                td data-v=(format!("{x:.6}")) class=(heat_class(x, diverging)) {
                    @if diverging { (format!("{:+.1}", 100.0 * x)) }
                    @else { (format!("{:.1}", 100.0 * x)) }
                }
            }
            None => { td data-v="" { "–" } }
        }
    }
}

/// A sortable table: a header row of `cols` and `body`'s rows.
fn table<S: AsRef<str>>(id: &str, cols: &[S], body: Markup) -> Markup {
    html! {
        table id=(id) class="sortable" {
            thead { tr { @for c in cols { th { (c.as_ref()) } } } }
            tbody { (body) }
        }
    }
}

fn nav(r: &ReportInput<'_>) -> Markup {
    let a = r.aggregate;
    html! {
        nav {
            a href="#run" { "run" }
            a href="#gallery" { "images" }
            a href="#heatmaps" { "heat maps" }
            a href="#top1" { "top-1" }
            a href="#summary" { "all numbers" }
            @if !a.backgrounds.is_empty() { a href="#backgrounds" { "backgrounds" } }
            @if !a.levels.is_empty() { a href="#table1" { "Table 1" } }
            @if !r.best_classes.is_empty() { a href="#classes" { "classes" } }
            a href="#figures" { "figures" }
        }
    }
}

fn warnings(list: &[String]) -> Markup {
    html! {
        @if !list.is_empty() {
            div id="warnings" {
                p {
                    b { "Incomplete output" }
                    ": the numbers below cover only what was written."
                }
                ul { @for w in list { li { (w) } } }
            }
        }
    }
}

fn run_section(r: &ReportInput<'_>) -> Markup {
    html! {
        h2 id="run" { "The run" }
        @match r.facts.identities.first() {
            None => {
                p class="note" {
                    "No " code { "_run.json" } " under the input: models' weights, \
                     preprocessing and the run's settings are unknown (files from another \
                     writer)."
                }
            }
            Some((_, Err(e))) => { p class="note" { "Run identity unreadable: " (e) } }
            Some((dir, Ok(id))) => { (identity(r.facts, dir, id)) }
        }
        (input_counts(r))
        (error_rows(r.data))
    }
}

/// Every model of the input's runs, and the identity fields (other than the models) in
/// which the other runs differ from `id`.
fn models_and_differences<'a>(
    f: &'a RunFacts,
    id: &'a RunIdentity,
) -> (Vec<&'a Sidecar>, Vec<String>) {
    let mut models: Vec<&Sidecar> = id.models.iter().collect();
    let mut differ: Vec<String> = Vec::new();
    for o in f.identities[1..]
        .iter()
        .filter_map(|(_, i)| i.as_ref().ok())
    {
        for m in &o.models {
            if !models.iter().any(|k| k.name == m.name) {
                models.push(m);
            }
        }
        for d in id.differences(o) {
            let field = d.split(':').next().unwrap_or_default().to_string();
            if field != "models" && !differ.contains(&field) {
                differ.push(field);
            }
        }
    }
    (models, differ)
}

/// The run's identity: several runs (e.g. one per model) show every model, and what else
/// differs.
fn identity(f: &RunFacts, dir: &Path, id: &RunIdentity) -> Markup {
    let (models, differ) = models_and_differences(f, id);
    html! {
        @if f.identities.len() > 1 {
            p class="note" {
                "The input holds " (f.identities.len()) " runs; "
                @if differ.is_empty() { "they differ only in their models; " }
                @else { "they also differ in " (differ.join(", ")) "; " }
                "the settings below are those of " code { (dir.display()) } "."
            }
        }
        (models_table(&models))
        (settings(id))
    }
}

fn models_table(models: &[&Sidecar]) -> Markup {
    let three = |v: &[f64; 3]| format!("{:.3} {:.3} {:.3}", v[0], v[1], v[2]);
    let cols = [
        "model",
        "weights",
        "input px",
        "crop",
        "interpolation",
        "mean",
        "std",
        "classes",
    ];
    let body = html! {
        @for m in models {
            tr {
                (text_cell(&m.name))
                (text_cell(&m.weights))
                td { (m.input_size) }
                td { (format!("{:.3}", m.crop_pct)) }
                (text_cell(&format!("{:?}", m.interpolation).to_lowercase()))
                (text_cell(&three(&m.mean)))
                (text_cell(&three(&m.std)))
                td { (m.num_classes) }
            }
        }
    };
    table("models", &cols, body)
}

/// The run's settings as a definition list.
fn settings(id: &RunIdentity) -> Markup {
    let numerics = format!(
        "{:?}{}{}, batch {}",
        id.precision,
        if id.tf32 { ", TF32 allowed" } else { "" },
        if id.cudnn_benchmark {
            ", cuDNN autotuning"
        } else {
            ""
        },
        id.batch_size
    )
    .to_lowercase();
    html! {
        dl class="run" {
            dt { "variants" }
            dd { @for (i, v) in id.variants.iter().enumerate() { @if i > 0 { " " } code { (v) } } }
            dt { "seed" }
            dd { (id.seed) }
            dt { "filter" }
            dd {
                "foreground fraction (union of boxes / image area) in ["
                (id.min_fg) ", " (id.max_fg) "]"
            }
            dt { "numerics" }
            dd { (numerics) }
            @if !id.textures.names.is_empty() {
                dt { "textures" }
                dd {
                    (id.textures.names.len()) " (" (id.textures.names.join(", "))
                    "; content xxh3 " (id.textures.content_xxh3) ")"
                }
            }
            @if let Some(d) = &id.donors {
                dt { "donors" }
                dd {
                    "bank of " (d.bank_size) " from " (d.donor_shards.len()) " shard(s)"
                    @if let Some((name, coarse)) = &d.class_map {
                        ", grouped by class map " code { (name) } " (" (coarse.len()) " classes)"
                    }
                }
            }
            dt { "written by" }
            dd { "bgstream " (id.bgstream_version) ", " (id.world_size) " rank(s)" }
        }
    }
}

fn input_counts(r: &ReportInput<'_>) -> Markup {
    let (a, data, f) = (r.aggregate, r.data, r.facts);
    let failed_rows: u64 = data.error_rows.values().sum();
    html! {
        p {
            "Input " code { (r.input.display()) } ": " (data.files.len()) " Parquet file(s), "
            (data.rows) " rows, " (data.keys.len()) " images with rows, " (a.models.len())
            " model(s), " (a.variants.len()) " variant(s). Shards finished: " (f.shards)
            "; samples read " (f.samples) ", of which " b { (f.filtered) " filtered out" }
            " (no rows) and " b { (f.failed) " failed" } " (error rows); " (failed_rows)
            " error row(s) in all. Baseline model: " code { (a.baseline) }
            ". Intervals are 95% Wilson score intervals."
            @if let Some(m) = &a.class_map {
                " Scored at the coarse level of class map " code { (m) } "."
            }
            @if let Some(note) = &a.scoring {
                " " (note)
            }
        }
    }
}

fn error_rows(data: &Loaded) -> Markup {
    let mut codes: Vec<_> = data.error_rows.iter().collect();
    codes.sort();
    html! {
        @if !codes.is_empty() {
            p {
                "Error rows, not counted below (failed images; slots without a donor): "
                @for (i, (code, n)) in codes.iter().enumerate() {
                    @if i > 0 { ", " }
                    (n) " × " code { (code) }
                }
                "."
            }
        }
    }
}

fn pictures_section(pictures: Option<&Pictures>, input: &Path) -> Markup {
    html! {
        h2 id="gallery" { "What the models see" }
        @match pictures {
            None => {
                p class="note" {
                    "No pictures: give " code { "bgstream aggregate" } " the run's shards to \
                     see a few images in every variant, the images the background alone \
                     classifies correctly and the worst backgrounds found, e.g. "
                    code {
                        "bgstream aggregate --in " (input.display())
                        " --shards 'imagenet-val-*.tar' --report report.html"
                    }
                    ". For any images, " code { "bgstream preview" } " draws contact sheets."
                }
            }
            Some(p) => {
                (gallery(p))
                (from_background(p))
                (worst(p))
            }
        }
    }
}

/// A thumbnail: its `src` can only be a [`DataUri`] (encoded bytes, never input).
fn img(p: &Pic) -> Markup {
    debug_assert!(p.src.as_str().starts_with("data:image/"));
    let title = p.background.as_ref().map(|b| format!("background {b}"));
    html! {
        img src=(p.src.as_str()) alt=(p.alt) width="112" height="112" title=[title];
    }
}

fn captions(caps: &[Caption]) -> Markup {
    html! {
        ul class="cap" {
            @for c in caps {
                li class=(if c.right { "ok" } else { "no" }) {
                    (c.model) ": " (c.predicted) " "
                    small { @if let Some(p) = c.p_true { (format!("p(true) {p:.2}")) } }
                }
            }
        }
    }
}

/// A few images in every variant.
fn gallery(pictures: &Pictures) -> Markup {
    html! {
        @for n in &pictures.notes { p class="note" { (n) } }
        p {
            "A few images in every variant, as the models saw them (" (pictures.size)
            " px, scaled down). Under each: every model's top-1 class (✓ right, ✗ wrong) and \
             its probability of the true class. Hover a mixed or worst-background tile for \
             the background's source; " code { "worst_bg:K" }
            " shows the baseline's worst candidate."
        }
        table class="pics" id="gallery-table" {
            thead { tr { th { "image" } @for c in &pictures.columns { th class="t" { (c) } } } }
            tbody {
                @for s in &pictures.gallery {
                    tr {
                        td class="t" { b { (s.class) } br; (s.key) }
                        @for pic in &s.pics {
                            td {
                                @match pic {
                                    Some(pic) => { (img(pic)) (captions(&pic.captions)) }
                                    None => { small { "no image" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The paper's figure 3: `bg_only` pictures each model classifies correctly.
fn from_background(pictures: &Pictures) -> Markup {
    let tile = |s: &Shown, pic: &Pic| {
        let predicted = pic.captions.first().map_or("–", |c| c.predicted.as_str());
        html! {
            figure {
                (img(pic))
                figcaption {
                    "true: " b { (s.class) } br;
                    "predicted: " (predicted) br;
                    small { (s.key) }
                }
            }
        }
    };
    html! {
        h2 id="from-background" { "Correct from the background alone" }
        p {
            "The paper's figure 3: " code { "bg_only" } " images (the foreground blanked) \
             that each model classifies correctly."
        }
        @for (model, shown) in &pictures.from_background {
            h3 { (model) }
            @if shown.is_empty() {
                p class="note" { "None." }
            } @else {
                div class="strip" {
                    @for s in shown {
                        @if let Some(Some(pic)) = s.pics.first() { (tile(s, pic)) }
                    }
                }
            }
        }
    }
}

/// Per `worst_bg:K` variant: the baseline's worst cases, original and composite.
fn worst(pictures: &Pictures) -> Markup {
    html! {
        @if !pictures.worst.is_empty() {
            h2 id="worst" { "Worst backgrounds" }
            p {
                "Images the baseline gets right on " code { "original" } ", and the \
                 candidate background of " code { "worst_bg:K" } " that lowers its \
                 probability of the true class most."
            }
            @for (variant, shown) in &pictures.worst {
                h3 { code { (variant) } }
                div class="strip" {
                    @for s in shown {
                        @for pic in s.pics.iter().flatten() {
                            figure {
                                (img(pic))
                                figcaption {
                                    b { (s.class) } " "
                                    @match &pic.background {
                                        Some(b) => { "on " (b) }
                                        None => { "(original)" }
                                    }
                                    (captions(&pic.captions))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn find<'a>(a: &'a Aggregate, model: &str, variant: &str) -> Option<&'a SummaryRow> {
    a.rows
        .iter()
        .find(|r| r.model == model && r.variant == variant)
}

fn heatmaps(a: &Aggregate) -> Markup {
    let top1 = |m: &str, v: &str| find(a, m, v).and_then(|r| r.top1);
    let mut cols = vec!["model"];
    cols.extend(a.variants.iter().map(String::as_str));
    let accuracy = html! {
        @for m in &a.models {
            tr { (text_cell(m)) @for v in &a.variants { (heat_cell(top1(m, v), false)) } }
        }
    };
    let others: Vec<&str> = a
        .variants
        .iter()
        .map(String::as_str)
        .filter(|v| *v != "original")
        .collect();
    let mut gap_cols = vec!["model"];
    gap_cols.extend(&others);
    let gaps = html! {
        @for m in &a.models {
            tr {
                (text_cell(m))
                @for v in &others {
                    (heat_cell(top1(m, "original").zip(top1(m, v)).map(|(o, x)| o - x), true))
                }
            }
        }
    };
    html! {
        h2 id="heatmaps" { "Top-1 by model and variant" }
        p { "Top-1 accuracy (%); click a header to sort." }
        (table("heat-top1", &cols, accuracy))
        @if others.len() < a.variants.len() && !others.is_empty() {
            p {
                "Gap to " code { "original" } ": top-1 on " code { "original" } " minus top-1 \
                 on the variant, in points (red: the variant loses accuracy)."
            }
            (table("heat-gap", &gap_cols, gaps))
        }
    }
}

fn top1_table(a: &Aggregate) -> Markup {
    let mut cols = vec!["model", "images"];
    cols.extend(a.variants.iter().map(String::as_str));
    let cell = |r: Option<&SummaryRow>| {
        html! {
            @match r.and_then(|r| Some((r.top1?, r))) {
                Some((x, r)) => {
                    td data-v=(format!("{x:.6}")) {
                        (format!("{:.1}", 100.0 * x)) " "
                        small { "[" (pct(r.top1_lo)) ", " (pct(r.top1_hi)) "]" }
                    }
                }
                None => { td data-v="" { "–" } }
            }
        }
    };
    let body = html! {
        @for m in &a.models {
            tr {
                (text_cell(m))
                td { (find(a, m, "original").map_or(0, |r| r.images)) }
                @for v in &a.variants { (cell(find(a, m, v))) }
            }
        }
    };
    html! {
        h2 { "Top-1 accuracy (%) with 95% intervals" }
        (table("top1", &cols, body))
    }
}

fn summary_table(a: &Aggregate) -> Markup {
    let cols = [
        "model",
        "variant",
        "images",
        "top-1",
        "top-5",
        "rel. top-1 ratio",
        "rel. top-1 diff",
        "controlled images",
        "controlled top-1",
        "gap top-1",
        "gap top-5",
    ];
    let body = html! {
        @for r in &a.rows {
            tr {
                (text_cell(&r.model)) (text_cell(&r.variant)) td { (r.images) }
                (pct_cell(r.top1)) (pct_cell(r.top5)) (num_cell(r.rel_top1_ratio))
                (signed_cell(r.rel_top1_diff)) td { (r.controlled_images) }
                (pct_cell(r.controlled_top1)) (signed_cell(r.gap_top1)) (signed_cell(r.gap_top5))
            }
        }
    };
    html! {
        h2 { "All numbers" }
        p {
            "Relative accuracy is against " code { (a.baseline) } " on the same variant; \
             \"controlled\" counts only images the baseline classifies correctly on "
            code { "original" } " (label-noise control, paper appendix A); the gap is \
             accuracy on " code { "original" } " minus accuracy on the background-switched \
             variant."
        }
        (table("summary", &cols, body))
    }
}

fn seed_groups(rows: &[SeedRow]) -> Markup {
    let cols = [
        "group",
        "variant",
        "seeds",
        "top-1 mean",
        "top-1 sd",
        "min",
        "max",
        "top-5 mean",
    ];
    let body = html! {
        @for s in rows {
            tr {
                (text_cell(&s.group)) (text_cell(&s.variant)) td { (s.seeds) }
                (pct_cell(Some(s.top1_mean))) (pct_cell(Some(s.top1_sd)))
                (pct_cell(Some(s.top1_min))) (pct_cell(Some(s.top1_max)))
                (pct_cell(Some(s.top5_mean).filter(|x| x.is_finite())))
            }
        }
    };
    html! {
        @if !rows.is_empty() {
            h2 id="seed-groups" { "Seed groups" }
            p {
                "Models that differ only by their " code { "-seedN" } " suffix, as one: top-1 \
                 (%) mean ± sample standard deviation over the seeds."
            }
            (table("seeds", &cols, body))
        }
    }
}

fn backgrounds(a: &Aggregate) -> Markup {
    let cols = [
        "model",
        "only-BG-B",
        "only-BG-T",
        "only-FG",
        "no-FG",
        "mixed-same",
        "mixed-rand",
        "mixed-next",
        "BG-Gap",
        "BG-Gap images",
        "challenge",
        "challenge images",
        "challenge, all backgrounds",
        "foregrounds",
    ];
    let body = html! {
        @for r in &a.backgrounds {
            tr {
                (text_cell(&r.model)) (pct_cell(r.only_bg_black)) (pct_cell(r.only_bg_tiled))
                (pct_cell(r.only_fg)) (pct_cell(r.no_fg)) (pct_cell(r.mixed_same))
                (pct_cell(r.mixed_rand)) (pct_cell(r.mixed_next)) (signed_cell(r.bg_gap))
                td { (r.bg_gap_images) } (pct_cell(r.challenge_top1)) td { (r.challenge_images) }
                (pct_cell(r.exhaustive_top1)) td { (r.exhaustive_images) }
            }
        }
    };
    html! {
        @if !a.backgrounds.is_empty() {
            h2 id="backgrounds-h" { "Backgrounds, ImageNet-9 style" }
            p {
                "Top-1 (%) with the foreground removed (boxes black: " code { "bg_only_black" }
                "; boxes filled by tiling the background: " code { "bg_tiled" } ") and with \
                 the foreground pasted onto another image's tiled background of the same / a \
                 random / the next class (" code { "mixed_*" } "). BG-Gap = mixed_same − \
                 mixed_rand on the images that have both. Challenge accuracy: share of images \
                 that no candidate background of " code { "worst_bg:K" } " flips (Xiao et \
                 al., 2020); with all backgrounds: share of foregrounds that no background \
                 of the set flips, as challenge_eval.py computes it (" code { "bgstream challenge" }
                 ", when its output is in the input folder)."
            }
            (table("backgrounds", &cols, body))
        }
    }
}

fn table1(a: &Aggregate) -> Markup {
    let cols = [
        "model",
        "original top-1",
        "bg_only top-1",
        "correct from background",
        "new",
        "lost from previous",
        "examples of new",
    ];
    let body = html! {
        @for l in &a.levels {
            tr {
                (text_cell(&l.model)) (pct_cell(Some(l.original_top1)))
                (pct_cell(Some(l.bg_only_top1))) td { (l.correct) } td { (l.new) }
                td { (l.lost_from_previous) } (text_cell(&l.examples.join(", ")))
            }
        }
    };
    html! {
        @if !a.levels.is_empty() {
            h2 id="table1-h" { "Table 1, generalised" }
            p {
                "Models by accuracy on original images. \"New\" images are classified \
                 correctly from the background alone by this model and by no less accurate \
                 one. The sets "
                @if a.nested { "nest: each contains the previous one" }
                @else { "do " b { "not" } " nest" }
                " (" (a.common) " images are right for every model)."
            }
            (table("table1", &cols, body))
        }
    }
}

fn best_classes(a: &Aggregate, best: &[(String, BestClass)]) -> Markup {
    let mut cols = vec!["class", "images"];
    cols.extend(a.models.iter().map(String::as_str));
    let body = html! {
        @for (name, c) in best {
            tr {
                @if name.is_empty() { (text_cell(&c.label.to_string())) }
                @else { (text_cell(&format!("{name} ({})", c.label))) }
                td { (c.images) }
                @for v in &c.top1 { (pct_cell(*v)) }
            }
        }
    };
    html! {
        @if !best.is_empty() {
            h2 id="classes" { "Classes the background alone predicts best" }
            p {
                "Top-1 on " code { "bg_only" } " per class (the foreground blanked), the ten \
                 classes with the highest mean over the models; every class is in "
                code { "per_class.csv" } "."
            }
            (table("best-classes", &cols, body))
        }
    }
}

/// The figures, each an SVG file shown as an image (never inlined as markup: its text
/// holds model names, and an SVG in `<img>` cannot run script).
fn figures(svgs: &[PathBuf]) -> Markup {
    html! {
        h2 id="figures" { "Figures" }
        p {
            "As the paper's figures 2, 4 and 5: one dot per model, with 95% intervals on both \
             axes."
        }
        div class="figs" {
            @for svg in svgs {
                @match std::fs::read(svg) {
                    Ok(bytes) => {
                        img src=(DataUri::svg(&bytes).as_str())
                            alt=(svg.file_stem().unwrap_or_default().to_string_lossy());
                    }
                    Err(e) => { p { "figure " (svg.display()) " unreadable: " (e) } }
                }
            }
        }
    }
}

/// Writes the report atomically.
pub fn write(path: &Path, html: &str) -> Result<(), crate::error::FatalError> {
    crate::atomic::write_file(path, html.as_bytes())
}
