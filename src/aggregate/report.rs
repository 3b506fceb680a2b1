//! One self-contained HTML report: the tables and the figures inlined as SVG.

use std::fmt::Write;
use std::path::Path;

use html_escape::encode_text as esc;

use super::load::Loaded;
use super::metrics::Aggregate;

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{:.1}", 100.0 * x))
}

fn signed(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{:+.1}", 100.0 * x))
}

fn num(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.3}"))
}

/// Renders the report; `svgs` are the figure files to inline.
pub fn render(
    a: &Aggregate,
    data: &Loaded,
    svgs: &[std::path::PathBuf],
    warnings: &[String],
    best_classes: &[(String, super::per_class::BestClass)],
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bgstream report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; display: block; overflow-x: auto; max-width: 100%; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; white-space: nowrap; }}
th {{ background: #f0f0f0; }}
.figs svg {{ max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.5rem 0; }}
code {{ background: #f6f6f6; padding: 0 0.2rem; }}
</style></head><body>
<h1>bgstream report</h1>
<p>{files} Parquet file(s), {rows} rows, {keys} images, {models} model(s), {variants} variant(s).
Baseline model: <code>{base}</code>. Intervals are 95% Wilson score intervals.{coarse}</p>
"#,
        coarse = a.class_map.as_ref().map_or(String::new(), |m| format!(
            " Scored at the coarse level of class map <code>{}</code>.",
            esc(m)
        )),
        files = data.files.len(),
        rows = data.rows,
        keys = data.keys.len(),
        models = a.models.len(),
        variants = a.variants.len(),
        base = esc(&a.baseline),
    );
    if !warnings.is_empty() {
        h.push_str("<div id=\"warnings\"><p><b>Incomplete output</b>: the numbers below cover only what was written.</p><ul>\n");
        for w in warnings {
            let _ = writeln!(h, "<li>{}</li>", esc(w));
        }
        h.push_str("</ul></div>\n");
    }
    if !data.error_rows.is_empty() {
        let mut codes: Vec<_> = data.error_rows.iter().collect();
        codes.sort();
        let list: Vec<String> = codes
            .iter()
            .map(|(c, n)| format!("{} × <code>{}</code>", n, esc(c)))
            .collect();
        let _ = writeln!(
            h,
            "<p>Rows with an error status, not counted below (failed images; slots without a donor): {}.</p>",
            list.join(", ")
        );
    }

    let _ = writeln!(h, "<h2>Top-1 accuracy (%) by model and variant</h2>\n<table id=\"top1\"><tr><th>model</th><th>images</th>");
    for v in &a.variants {
        let _ = write!(h, "<th>{}</th>", esc(v));
    }
    h.push_str("</tr>\n");
    for m in &a.models {
        let n = a
            .rows
            .iter()
            .find(|r| &r.model == m && r.variant == "original")
            .map_or(0, |r| r.images);
        let _ = write!(h, "<tr><td>{}</td><td>{n}</td>", esc(m));
        for v in &a.variants {
            let r = a.rows.iter().find(|r| &r.model == m && &r.variant == v);
            let cell = r.map_or("–".into(), |r| {
                format!(
                    "{} <small>[{}, {}]</small>",
                    pct(r.top1),
                    pct(r.top1_lo),
                    pct(r.top1_hi)
                )
            });
            let _ = write!(h, "<td>{cell}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");

    let _ = writeln!(
        h,
        "<h2>All numbers</h2><p>Relative accuracy is against <code>{}</code> on the same variant; \
         \"controlled\" counts only images the baseline classifies correctly on <code>original</code> \
         (label-noise control, paper appendix A); the gap is accuracy on <code>original</code> minus \
         accuracy on the background-switched variant.</p>",
        esc(&a.baseline)
    );
    h.push_str(
        "<table id=\"summary\"><tr><th>model</th><th>variant</th><th>images</th><th>top-1</th>\
         <th>top-5</th><th>rel. top-1 ratio</th><th>rel. top-1 diff</th><th>controlled images</th>\
         <th>controlled top-1</th><th>gap top-1</th><th>gap top-5</th></tr>\n",
    );
    for r in &a.rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.model),
            esc(&r.variant),
            r.images,
            pct(r.top1),
            pct(r.top5),
            num(r.rel_top1_ratio),
            signed(r.rel_top1_diff),
            r.controlled_images,
            pct(r.controlled_top1),
            signed(r.gap_top1),
            signed(r.gap_top5),
        );
    }
    h.push_str("</table>\n");

    if !a.backgrounds.is_empty() {
        h.push_str(
            "<h2>Backgrounds, ImageNet-9 style</h2><p>Top-1 (%) with the foreground removed              (boxes black: <code>bg_only_black</code>; boxes filled by tiling the background:              <code>bg_tiled</code>) and with the foreground pasted onto another image's tiled              background of the same / a random / the next class (<code>mixed_*</code>).              BG-Gap = mixed_same − mixed_rand on the images that have both. Challenge accuracy:              share of images that no candidate background of <code>worst_bg:K</code> flips              (Xiao et al., 2020).</p>\n<table id=\"backgrounds\"><tr><th>model</th>             <th>only-BG-B</th><th>only-BG-T</th><th>mixed-same</th><th>mixed-rand</th>             <th>mixed-next</th><th>BG-Gap</th><th>challenge</th></tr>\n",
        );
        for r in &a.backgrounds {
            let challenge = match &r.challenge_variant {
                Some(v) => format!(
                    "{} <small>({}, {} images)</small>",
                    pct(r.challenge_top1),
                    esc(v),
                    r.challenge_images
                ),
                None => "–".into(),
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} <small>({} images)</small></td><td>{}</td></tr>",
                esc(&r.model),
                pct(r.only_bg_black),
                pct(r.only_bg_tiled),
                pct(r.mixed_same),
                pct(r.mixed_rand),
                pct(r.mixed_next),
                signed(r.bg_gap),
                r.bg_gap_images,
                challenge
            );
        }
        h.push_str("</table>\n");
    }

    if !a.levels.is_empty() {
        let _ = writeln!(
            h,
            "<h2>Table 1, generalised</h2><p>Models by accuracy on original images. \
             \"New\" images are classified correctly from the background alone by this model and \
             by no less accurate one. The sets {} ({} images are right for every model).</p>",
            if a.nested {
                "nest: each contains the previous one"
            } else {
                "do <b>not</b> nest"
            },
            a.common
        );
        h.push_str(
            "<table id=\"table1\"><tr><th>model</th><th>original top-1</th><th>bg_only top-1</th>\
             <th>correct from background</th><th>new</th><th>lost from previous</th><th>examples of new</th></tr>\n",
        );
        for l in &a.levels {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&l.model),
                100.0 * l.original_top1,
                100.0 * l.bg_only_top1,
                l.correct,
                l.new,
                l.lost_from_previous,
                esc(&l.examples.join(", "))
            );
        }
        h.push_str("</table>\n");
    }

    if !best_classes.is_empty() {
        h.push_str(
            "<h2 id=\"classes\">Classes the background alone predicts best</h2>\n<p>Top-1 on \
             <code>bg_only</code> per class (the foreground blanked), the ten classes with the \
             highest mean over the models; every class is in <code>per_class.csv</code>.</p>\n\
             <table id=\"best-classes\"><tr><th>class</th><th>images</th>",
        );
        for m in &a.models {
            let _ = write!(h, "<th>{}</th>", esc(m));
        }
        h.push_str("</tr>\n");
        for (name, c) in best_classes {
            let class = if name.is_empty() {
                c.label.to_string()
            } else {
                format!("{} ({})", name, c.label)
            };
            let _ = write!(h, "<tr><td>{}</td><td>{}</td>", esc(&class), c.images);
            for v in &c.top1 {
                let _ = write!(
                    h,
                    "<td>{}</td>",
                    v.map_or("–".into(), |x| format!("{:.1}", 100.0 * x))
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Figures</h2><div class=\"figs\">\n");
    for svg in svgs {
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
    h.push_str("</div>\n</body></html>\n");
    h
}

/// Writes the report atomically.
pub fn write(path: &Path, html: &str) -> Result<(), crate::error::FatalError> {
    crate::atomic::write_file(path, html.as_bytes())
}
