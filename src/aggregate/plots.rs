//! Figures in the style of the paper's figures 2, 4 and 5: x = top-1 on original images,
//! y = accuracy on a variant, one labelled dot per model. SVG and PNG (plotters; the PNG
//! text uses the Ubuntu font that `epaint_default_fonts` ships, so no system fonts are
//! needed).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;

use super::metrics::Aggregate;
use crate::error::FatalError;

/// (x, y, model name)
pub type Point = (f64, f64, String);

/// One figure: a series per variant (or metric).
pub struct Figure {
    pub name: &'static str,
    pub title: String,
    pub y_label: String,
    /// (series label, points)
    pub series: Vec<(String, Vec<Point>)>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// The three paper-style figures from an aggregate.
pub fn figures(a: &Aggregate) -> Vec<Figure> {
    let get = |m: &str, v: &str| a.rows.iter().find(|r| r.model == m && r.variant == v);
    let x = |m: &str| get(m, "original").and_then(|r| r.top1);
    let series = |v: &str, top5: bool| -> Vec<Point> {
        a.models
            .iter()
            .filter_map(|m| {
                let r = get(m, v)?;
                Some((
                    x(m)? * 100.0,
                    (if top5 { r.top5 } else { r.top1 })? * 100.0,
                    m.clone(),
                ))
            })
            .collect()
    };
    let switched: Vec<&String> = a
        .variants
        .iter()
        .filter(|v| super::metrics::keeps_foreground(v))
        .collect();
    let mut out = Vec::new();
    if a.variants.iter().any(|v| v == "bg_only") {
        out.push(Figure {
            name: "fig2_bg_only",
            title: "Background only (foreground whitened)".into(),
            y_label: "accuracy on bg_only (%)".into(),
            series: vec![
                ("top-1".into(), series("bg_only", false)),
                ("top-5".into(), series("bg_only", true)),
            ],
        });
    }
    if !switched.is_empty() {
        for (name, top5) in [("fig4_switched_top1", false), ("fig5_switched_top5", true)] {
            let k = if top5 { "top-5" } else { "top-1" };
            out.push(Figure {
                name,
                title: format!("Background switched: {k}"),
                y_label: format!("{k} accuracy (%)"),
                series: switched
                    .iter()
                    .map(|v| (v.to_string(), series(v, top5)))
                    .collect(),
            });
        }
    }
    out
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    f: &Figure,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let xs: Vec<f64> = f
        .series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .collect();
    let (xmin, xmax) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (xmin, xmax) = if xs.is_empty() {
        (0.0, 100.0)
    } else {
        // Room on the right for the model names drawn beside the dots.
        let span = (xmax - xmin).max(4.0);
        ((xmin - 0.1 * span).max(0.0), xmax + 0.35 * span)
    };
    let ymax = f
        .series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let ymax = (ymax * 1.15 + 1.0).min(100.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(&f.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(xmin..xmax.max(xmin + 1.0), 0.0..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("top-1 accuracy on original images (%)")
        .y_desc(&f.y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (label, points)) in f.series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let style = ShapeStyle::from(&colour).filled();
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(x, y, _)| Circle::new((*x, *y), 5, style)),
            )
            .map_err(|e| e.to_string())?
            .label(label.as_str())
            .legend(move |(x, y)| Circle::new((x, y), 5, ShapeStyle::from(&colour).filled()));
        if i == 0 {
            chart
                .draw_series(points.iter().map(|(x, y, m)| {
                    EmptyElement::at((*x, *y))
                        + Text::new(m.clone(), (8, -6), ("sans-serif", 12).into_font())
                }))
                .map_err(|e| e.to_string())?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Writes `NAME.svg` and `NAME.png` into `dir`; returns the SVG paths.
pub fn write_figures(figs: &[Figure], dir: &Path) -> Result<Vec<PathBuf>, FatalError> {
    register_font();
    let mut svgs = Vec::new();
    for f in figs {
        let svg = dir.join(format!("{}.svg", f.name));
        let png = dir.join(format!("{}.png", f.name));
        draw(SVGBackend::new(&svg, (800, 560)).into_drawing_area(), f)
            .map_err(|e| FatalError::output(&svg, e))?;
        draw(BitMapBackend::new(&png, (800, 560)).into_drawing_area(), f)
            .map_err(|e| FatalError::output(&png, e))?;
        svgs.push(svg);
    }
    Ok(svgs)
}
