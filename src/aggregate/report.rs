//! One self-contained HTML report: the tables and the figures inlined as SVG.

use std::fmt::Write;
use std::path::Path;

use html_escape::encode_text as esc;

use super::completeness::RunFacts;
use super::gallery::Pictures;
use super::load::Loaded;
use super::metrics::Aggregate;

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{:.1}", 100.0 * x))
}

/// Everything the report shows.
pub struct ReportInput<'a> {
    pub aggregate: &'a Aggregate,
    pub data: &'a Loaded,
    /// The figure files to inline.
    pub svgs: &'a [std::path::PathBuf],
    pub warnings: &'a [String],
    pub best_classes: &'a [(String, super::per_class::BestClass)],
    pub facts: &'a RunFacts,
    /// With `aggregate --shards`: the images.
    pub pictures: Option<&'a Pictures>,
    pub input: &'a Path,
    /// `--group-seeds`.
    pub seed_groups: &'a [super::seeds::SeedRow],
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1280px; color: #222; padding: 0 1rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
nav a { margin-right: 0.8rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.88rem; display: block; overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f0f0f0; vertical-align: bottom; }
th:first-child, td:first-child, td.t, th.t { text-align: left; }
td small { color: #666; }
.figs svg { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.5rem 0; }
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

fn pct_cell(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("<td data-v=\"{x:.6}\">{:.1}</td>", 100.0 * x),
        None => "<td data-v=\"\">–</td>".into(),
    }
}

fn signed_cell(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("<td data-v=\"{x:.6}\">{:+.1}</td>", 100.0 * x),
        None => "<td data-v=\"\">–</td>".into(),
    }
}

fn num_cell(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("<td data-v=\"{x:.6}\">{x:.3}</td>"),
        None => "<td data-v=\"\">–</td>".into(),
    }
}

fn text_cell(s: &str) -> String {
    format!("<td class=\"t\">{}</td>", esc(s))
}

/// A heat-map cell: blue for accuracy (white 0 → dark 100%), or for a gap red where the
/// variant loses accuracy and blue where it gains.
fn heat_cell(v: Option<f64>, diverging: bool) -> String {
    let Some(x) = v else {
        return "<td data-v=\"\">–</td>".into();
    };
    let (hue, t) = if diverging {
        (if x >= 0.0 { 5 } else { 215 }, (x.abs() / 0.5).min(1.0))
    } else {
        (215, x.clamp(0.0, 1.0))
    };
    let light = 97.0 - 55.0 * t;
    let ink = if light < 62.0 { "#fff" } else { "#111" };
    let text = if diverging {
        format!("{:+.1}", 100.0 * x)
    } else {
        format!("{:.1}", 100.0 * x)
    };
    format!(
        "<td data-v=\"{x:.6}\" style=\"background:hsl({hue},65%,{light:.0}%);color:{ink}\">{text}</td>"
    )
}

fn header(h: &mut String, id: &str, cols: &[String]) {
    let _ = write!(h, "<table id=\"{id}\" class=\"sortable\"><thead><tr>");
    for c in cols {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr></thead><tbody>\n");
}

fn run_section(h: &mut String, r: &ReportInput<'_>) {
    let (a, data, f) = (r.aggregate, r.data, r.facts);
    h.push_str("<h2 id=\"run\">The run</h2>\n");
    match f.identities.first() {
        None => h.push_str(
            "<p class=\"note\">No <code>_run.json</code> under the input: models' weights, \
             preprocessing and the run's settings are unknown (files from another writer).</p>\n",
        ),
        Some((_, Err(e))) => {
            let _ = writeln!(
                h,
                "<p class=\"note\">Run identity unreadable: {}</p>",
                esc(e)
            );
        }
        Some((dir, Ok(id))) => {
            // Several runs (e.g. one per model): every model, and what else differs.
            let others: Vec<&crate::identity::RunIdentity> = f.identities[1..]
                .iter()
                .filter_map(|(_, i)| i.as_ref().ok())
                .collect();
            let mut models: Vec<&crate::sidecar::Sidecar> = id.models.iter().collect();
            let mut differ: Vec<String> = Vec::new();
            for o in &others {
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
            if f.identities.len() > 1 {
                let _ = writeln!(
                    h,
                    "<p class=\"note\">The input holds {} runs; {}the settings below are those of \
                     <code>{}</code>.</p>",
                    f.identities.len(),
                    if differ.is_empty() {
                        "they differ only in their models; ".to_string()
                    } else {
                        format!("they also differ in {}; ", esc(&differ.join(", ")))
                    },
                    esc(&dir.display().to_string())
                );
            }
            header(
                h,
                "models",
                &[
                    "model",
                    "weights",
                    "input px",
                    "crop",
                    "interpolation",
                    "mean",
                    "std",
                    "classes",
                ]
                .map(String::from),
            );
            for m in &models {
                let three = |v: &[f64; 3]| format!("{:.3} {:.3} {:.3}", v[0], v[1], v[2]);
                let _ = writeln!(
                    h,
                    "<tr>{}{}<td>{}</td><td>{:.3}</td>{}{}{}<td>{}</td></tr>",
                    text_cell(&m.name),
                    text_cell(&m.weights),
                    m.input_size,
                    m.crop_pct,
                    text_cell(&format!("{:?}", m.interpolation).to_lowercase()),
                    text_cell(&three(&m.mean)),
                    text_cell(&three(&m.std)),
                    m.num_classes
                );
            }
            h.push_str("</tbody></table>\n<dl class=\"run\">\n");
            let mut dt = |k: &str, v: String| {
                let _ = writeln!(h, "<dt>{}</dt><dd>{v}</dd>", esc(k));
            };
            dt(
                "variants",
                id.variants
                    .iter()
                    .map(|v| format!("<code>{}</code>", esc(v)))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            dt("seed", id.seed.to_string());
            dt(
                "filter",
                format!(
                    "foreground fraction (union of boxes / image area) in [{}, {}]",
                    id.min_fg, id.max_fg
                ),
            );
            dt(
                "numerics",
                format!(
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
                .to_lowercase(),
            );
            if !id.textures.names.is_empty() {
                dt(
                    "textures",
                    format!(
                        "{} ({}; content xxh3 {})",
                        id.textures.names.len(),
                        esc(&id.textures.names.join(", ")),
                        esc(&id.textures.content_xxh3)
                    ),
                );
            }
            if let Some(d) = &id.donors {
                dt(
                    "donors",
                    format!(
                        "bank of {} from {} shard(s){}",
                        d.bank_size,
                        d.donor_shards.len(),
                        d.class_map.as_ref().map_or(String::new(), |(n, c)| format!(
                            ", grouped by class map <code>{}</code> ({} classes)",
                            esc(n),
                            c.len()
                        ))
                    ),
                );
            }
            dt(
                "written by",
                format!(
                    "bgstream {}, {} rank(s)",
                    esc(&id.bgstream_version),
                    id.world_size
                ),
            );
            h.push_str("</dl>\n");
        }
    }
    let failed_rows: u64 = data.error_rows.values().sum();
    let _ = writeln!(
        h,
        "<p>Input <code>{input}</code>: {files} Parquet file(s), {rows} rows, {keys} images with \
         rows, {models} model(s), {variants} variant(s). Shards finished: {shards}; samples read \
         {samples}, of which <b>{filtered} filtered out</b> (no rows) and <b>{failed} failed</b> \
         (error rows); {failed_rows} error row(s) in all. Baseline model: <code>{base}</code>. \
         Intervals are 95% Wilson score intervals.{coarse}</p>",
        input = esc(&r.input.display().to_string()),
        files = data.files.len(),
        rows = data.rows,
        keys = data.keys.len(),
        models = a.models.len(),
        variants = a.variants.len(),
        shards = f.shards,
        samples = f.samples,
        filtered = f.filtered,
        failed = f.failed,
        base = esc(&a.baseline),
        coarse = a.class_map.as_ref().map_or(String::new(), |m| format!(
            " Scored at the coarse level of class map <code>{}</code>.",
            esc(m)
        )),
    );
    if !data.error_rows.is_empty() {
        let mut codes: Vec<_> = data.error_rows.iter().collect();
        codes.sort();
        let list: Vec<String> = codes
            .iter()
            .map(|(c, n)| format!("{} × <code>{}</code>", n, esc(c)))
            .collect();
        let _ = writeln!(
            h,
            "<p>Error rows, not counted below (failed images; slots without a donor): {}.</p>",
            list.join(", ")
        );
    }
}

fn captions(h: &mut String, caps: &[super::gallery::Caption]) {
    h.push_str("<ul class=\"cap\">");
    for c in caps {
        let _ = write!(
            h,
            "<li class=\"{}\">{}: {} <small>{}</small></li>",
            if c.right { "ok" } else { "no" },
            esc(&c.model),
            esc(&c.predicted),
            c.p_true
                .map_or(String::new(), |p| format!("p(true) {p:.2}"))
        );
    }
    h.push_str("</ul>");
}

fn img(h: &mut String, p: &super::gallery::Pic) {
    let _ = write!(
        h,
        "<img src=\"{}\" alt=\"{}\" width=\"112\" height=\"112\"{}>",
        p.src.as_str(),
        esc(&p.alt),
        p.background.as_ref().map_or(String::new(), |b| format!(
            " title=\"background {}\"",
            esc(b)
        ))
    );
}

fn pictures_section(h: &mut String, pics: Option<&Pictures>, input: &Path) {
    h.push_str("<h2 id=\"gallery\">What the models see</h2>\n");
    let Some(p) = pics else {
        let _ = writeln!(
            h,
            "<p class=\"note\">No pictures: give <code>bgstream aggregate</code> the run's shards \
             to see a few images in every variant, the images the background alone classifies \
             correctly and the worst backgrounds found, e.g. <code>bgstream aggregate --in {} \
             --shards 'imagenet-val-*.tar' --report report.html</code>. For any images, \
             <code>bgstream preview</code> draws contact sheets.</p>",
            esc(&input.display().to_string())
        );
        return;
    };
    for n in &p.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(n));
    }
    let _ = writeln!(
        h,
        "<p>A few images in every variant, as the models saw them ({} px, scaled down). Under \
         each: every model's top-1 class (&#x2713; right, &#x2717; wrong) and its probability \
         of the true class. Hover a mixed or worst-background tile for the background's \
         source; <code>worst_bg:K</code> shows the baseline's worst candidate.</p>",
        p.size
    );
    h.push_str("<table class=\"pics\" id=\"gallery-table\"><thead><tr><th>image</th>");
    for c in &p.columns {
        let _ = write!(h, "<th class=\"t\">{}</th>", esc(c));
    }
    h.push_str("</tr></thead><tbody>\n");
    for s in &p.gallery {
        let _ = write!(
            h,
            "<tr><td class=\"t\"><b>{}</b><br>{}</td>",
            esc(&s.class),
            esc(&s.key)
        );
        for pic in &s.pics {
            h.push_str("<td>");
            match pic {
                Some(pic) => {
                    img(h, pic);
                    captions(h, &pic.captions);
                }
                None => h.push_str("<small>no image</small>"),
            }
            h.push_str("</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");

    h.push_str(
        "<h2 id=\"from-background\">Correct from the background alone</h2>\n<p>The paper's \
         figure 3: <code>bg_only</code> images (the foreground blanked) that each model \
         classifies correctly.</p>\n",
    );
    for (model, shown) in &p.from_background {
        let _ = writeln!(h, "<h3>{}</h3>", esc(model));
        if shown.is_empty() {
            h.push_str("<p class=\"note\">None.</p>\n");
            continue;
        }
        h.push_str("<div class=\"strip\">");
        for s in shown {
            let Some(Some(pic)) = s.pics.first() else {
                continue;
            };
            h.push_str("<figure>");
            img(h, pic);
            let predicted = pic.captions.first().map_or("–", |c| c.predicted.as_str());
            let _ = write!(
                h,
                "<figcaption>true: <b>{}</b><br>predicted: {}<br><small>{}</small></figcaption></figure>",
                esc(&s.class),
                esc(predicted),
                esc(&s.key)
            );
        }
        h.push_str("</div>\n");
    }
    if !p.worst.is_empty() {
        h.push_str(
            "<h2 id=\"worst\">Worst backgrounds</h2>\n<p>Images the baseline gets right on \
             <code>original</code>, and the candidate background of <code>worst_bg:K</code> \
             that lowers its probability of the true class most.</p>\n",
        );
        for (variant, shown) in &p.worst {
            let _ = writeln!(
                h,
                "<h3><code>{}</code></h3><div class=\"strip\">",
                esc(variant)
            );
            for s in shown {
                for pic in s.pics.iter().flatten() {
                    h.push_str("<figure>");
                    img(h, pic);
                    let _ = write!(
                        h,
                        "<figcaption><b>{}</b> {}",
                        esc(&s.class),
                        pic.background
                            .as_ref()
                            .map_or("(original)".into(), |b| format!("on {}", esc(b)))
                    );
                    captions(h, &pic.captions);
                    h.push_str("</figcaption></figure>");
                }
            }
            h.push_str("</div>\n");
        }
    }
}

fn heatmaps(h: &mut String, a: &Aggregate) {
    let get = |m: &str, v: &str| a.rows.iter().find(|r| r.model == m && r.variant == v);
    h.push_str(
        "<h2 id=\"heatmaps\">Top-1 by model and variant</h2>\n<p>Top-1 accuracy (%); click a \
         header to sort.</p>\n",
    );
    let mut cols = vec!["model".to_string()];
    cols.extend(a.variants.iter().cloned());
    header(h, "heat-top1", &cols);
    for m in &a.models {
        let _ = write!(h, "<tr>{}", text_cell(m));
        for v in &a.variants {
            h.push_str(&heat_cell(get(m, v).and_then(|r| r.top1), false));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    let others: Vec<&String> = a.variants.iter().filter(|v| *v != "original").collect();
    if others.len() < a.variants.len() && !others.is_empty() {
        h.push_str(
            "<p>Gap to <code>original</code>: top-1 on <code>original</code> minus top-1 on the \
             variant, in points (red: the variant loses accuracy).</p>\n",
        );
        let mut cols = vec!["model".to_string()];
        cols.extend(others.iter().map(|v| v.to_string()));
        header(h, "heat-gap", &cols);
        for m in &a.models {
            let base = get(m, "original").and_then(|r| r.top1);
            let _ = write!(h, "<tr>{}", text_cell(m));
            for v in &others {
                let gap = base.zip(get(m, v).and_then(|r| r.top1)).map(|(o, x)| o - x);
                h.push_str(&heat_cell(gap, true));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    }
}

/// Renders the report.
pub fn render(r: &ReportInput<'_>) -> String {
    let a = r.aggregate;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
         <title>bgstream report</title><style>{STYLE}</style></head><body>\n\
         <h1>bgstream report</h1>\n<nav><a href=\"#run\">run</a><a href=\"#gallery\">images</a>\
         <a href=\"#heatmaps\">heat maps</a><a href=\"#top1\">top-1</a><a href=\"#summary\">all \
         numbers</a>{}{}{}<a href=\"#figures\">figures</a></nav>\n",
        if a.backgrounds.is_empty() {
            ""
        } else {
            "<a href=\"#backgrounds\">backgrounds</a>"
        },
        if a.levels.is_empty() {
            ""
        } else {
            "<a href=\"#table1\">Table 1</a>"
        },
        if r.best_classes.is_empty() {
            ""
        } else {
            "<a href=\"#classes\">classes</a>"
        },
    );
    if !r.warnings.is_empty() {
        h.push_str("<div id=\"warnings\"><p><b>Incomplete output</b>: the numbers below cover only what was written.</p><ul>\n");
        for w in r.warnings {
            let _ = writeln!(h, "<li>{}</li>", esc(w));
        }
        h.push_str("</ul></div>\n");
    }
    run_section(&mut h, r);
    pictures_section(&mut h, r.pictures, r.input);
    heatmaps(&mut h, a);

    h.push_str("<h2>Top-1 accuracy (%) with 95% intervals</h2>\n");
    let mut cols = vec!["model".to_string(), "images".to_string()];
    cols.extend(a.variants.iter().cloned());
    header(&mut h, "top1", &cols);
    for m in &a.models {
        let n = a
            .rows
            .iter()
            .find(|r| &r.model == m && r.variant == "original")
            .map_or(0, |r| r.images);
        let _ = write!(h, "<tr>{}<td>{n}</td>", text_cell(m));
        for v in &a.variants {
            let r = a.rows.iter().find(|r| &r.model == m && &r.variant == v);
            let cell = r.map_or("<td data-v=\"\">–</td>".into(), |r| match r.top1 {
                Some(x) => format!(
                    "<td data-v=\"{x:.6}\">{:.1} <small>[{}, {}]</small></td>",
                    100.0 * x,
                    pct(r.top1_lo),
                    pct(r.top1_hi)
                ),
                None => "<td data-v=\"\">–</td>".into(),
            });
            h.push_str(&cell);
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");

    let _ = writeln!(
        h,
        "<h2>All numbers</h2><p>Relative accuracy is against <code>{}</code> on the same variant; \
         \"controlled\" counts only images the baseline classifies correctly on <code>original</code> \
         (label-noise control, paper appendix A); the gap is accuracy on <code>original</code> minus \
         accuracy on the background-switched variant.</p>",
        esc(&a.baseline)
    );
    header(
        &mut h,
        "summary",
        &[
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
        ]
        .map(String::from),
    );
    for r in &a.rows {
        let _ = writeln!(
            h,
            "<tr>{}{}<td>{}</td>{}{}{}{}<td>{}</td>{}{}{}</tr>",
            text_cell(&r.model),
            text_cell(&r.variant),
            r.images,
            pct_cell(r.top1),
            pct_cell(r.top5),
            num_cell(r.rel_top1_ratio),
            signed_cell(r.rel_top1_diff),
            r.controlled_images,
            pct_cell(r.controlled_top1),
            signed_cell(r.gap_top1),
            signed_cell(r.gap_top5),
        );
    }
    h.push_str("</tbody></table>\n");

    if !r.seed_groups.is_empty() {
        h.push_str(
            "<h2 id=\"seed-groups\">Seed groups</h2><p>Models that differ only by their \
             <code>-seedN</code> suffix, as one: top-1 (%) mean ± sample standard deviation over \
             the seeds.</p>\n",
        );
        header(
            &mut h,
            "seeds",
            &[
                "group",
                "variant",
                "seeds",
                "top-1 mean",
                "top-1 sd",
                "min",
                "max",
                "top-5 mean",
            ]
            .map(String::from),
        );
        for s in r.seed_groups {
            let _ = writeln!(
                h,
                "<tr>{}{}<td>{}</td>{}{}{}{}{}</tr>",
                text_cell(&s.group),
                text_cell(&s.variant),
                s.seeds,
                pct_cell(Some(s.top1_mean)),
                pct_cell(Some(s.top1_sd)),
                pct_cell(Some(s.top1_min)),
                pct_cell(Some(s.top1_max)),
                pct_cell(Some(s.top5_mean).filter(|x| x.is_finite())),
            );
        }
        h.push_str("</tbody></table>\n");
    }

    if !a.backgrounds.is_empty() {
        h.push_str(
            "<h2 id=\"backgrounds-h\">Backgrounds, ImageNet-9 style</h2><p>Top-1 (%) with the \
             foreground removed (boxes black: <code>bg_only_black</code>; boxes filled by tiling \
             the background: <code>bg_tiled</code>) and with the foreground pasted onto another \
             image's tiled background of the same / a random / the next class \
             (<code>mixed_*</code>). BG-Gap = mixed_same − mixed_rand on the images that have \
             both. Challenge accuracy: share of images that no candidate background of \
             <code>worst_bg:K</code> flips (Xiao et al., 2020).</p>\n",
        );
        header(
            &mut h,
            "backgrounds",
            &[
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
            ]
            .map(String::from),
        );
        for r in &a.backgrounds {
            let _ = writeln!(
                h,
                "<tr>{}{}{}{}{}{}{}{}{}<td>{}</td>{}<td>{}</td></tr>",
                text_cell(&r.model),
                pct_cell(r.only_bg_black),
                pct_cell(r.only_bg_tiled),
                pct_cell(r.only_fg),
                pct_cell(r.no_fg),
                pct_cell(r.mixed_same),
                pct_cell(r.mixed_rand),
                pct_cell(r.mixed_next),
                signed_cell(r.bg_gap),
                r.bg_gap_images,
                pct_cell(r.challenge_top1),
                r.challenge_images,
            );
        }
        h.push_str("</tbody></table>\n");
    }

    if !a.levels.is_empty() {
        let _ = writeln!(
            h,
            "<h2 id=\"table1-h\">Table 1, generalised</h2><p>Models by accuracy on original images. \
             \"New\" images are classified correctly from the background alone by this model and \
             by no less accurate one. The sets {} ({} images are right for every model).</p>",
            if a.nested {
                "nest: each contains the previous one"
            } else {
                "do <b>not</b> nest"
            },
            a.common
        );
        header(
            &mut h,
            "table1",
            &[
                "model",
                "original top-1",
                "bg_only top-1",
                "correct from background",
                "new",
                "lost from previous",
                "examples of new",
            ]
            .map(String::from),
        );
        for l in &a.levels {
            let _ = writeln!(
                h,
                "<tr>{}{}{}<td>{}</td><td>{}</td><td>{}</td>{}</tr>",
                text_cell(&l.model),
                pct_cell(Some(l.original_top1)),
                pct_cell(Some(l.bg_only_top1)),
                l.correct,
                l.new,
                l.lost_from_previous,
                text_cell(&l.examples.join(", "))
            );
        }
        h.push_str("</tbody></table>\n");
    }

    if !r.best_classes.is_empty() {
        h.push_str(
            "<h2 id=\"classes\">Classes the background alone predicts best</h2>\n<p>Top-1 on \
             <code>bg_only</code> per class (the foreground blanked), the ten classes with the \
             highest mean over the models; every class is in <code>per_class.csv</code>.</p>\n",
        );
        let mut cols = vec!["class".to_string(), "images".to_string()];
        cols.extend(a.models.iter().cloned());
        header(&mut h, "best-classes", &cols);
        for (name, c) in r.best_classes {
            let class = if name.is_empty() {
                c.label.to_string()
            } else {
                format!("{} ({})", name, c.label)
            };
            let _ = write!(h, "<tr>{}<td>{}</td>", text_cell(&class), c.images);
            for v in &c.top1 {
                h.push_str(&pct_cell(*v));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    }

    h.push_str("<h2 id=\"figures\">Figures</h2><p>As the paper's figures 2, 4 and 5: one dot per model, with 95% intervals on both axes.</p><div class=\"figs\">\n");
    for svg in r.svgs {
        match std::fs::read_to_string(svg) {
            Ok(text) => {
                let body = text.find("<svg").map_or(text.as_str(), |i| &text[i..]);
                h.push_str(body);
                h.push('\n');
            }
            Err(e) => {
                let _ = writeln!(
                    h,
                    "<p>figure {} unreadable: {}</p>",
                    esc(&svg.display().to_string()),
                    esc(&e.to_string())
                );
            }
        }
    }
    let _ = write!(
        h,
        "</div>\n<script>{}</script>\n</body></html>\n",
        include_str!("../../assets/report/sort.js")
    );
    h
}

/// Writes the report atomically.
pub fn write(path: &Path, html: &str) -> Result<(), crate::error::FatalError> {
    crate::atomic::write_file(path, html.as_bytes())
}
