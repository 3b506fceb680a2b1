//! Figures in the style of the paper's figures 2, 4 and 5: x = top-1 on original images,
//! y = accuracy on a variant, one labelled dot per model with its 95% Wilson intervals as
//! error bars on both axes. SVG and PNG (plotters; the PNG text uses the Ubuntu font that
//! `epaint_default_fonts` ships, so no system fonts are needed).
//!
//! Model names are placed by [`place_labels`], a pure function on pixel boxes, so that no
//! two labels, no label and dot, and no label and the legend overlap.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::aggregate::metrics::Aggregate;
use crate::error::FatalError;
use crate::preview::sheet::register_font;

/// One model's dot, in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub model: String,
    /// Top-1 on `original`.
    pub x: f64,
    /// Accuracy on the series' variant.
    pub y: f64,
    /// 95% interval of `x` (lo, hi), when known.
    pub x_ci: Option<(f64, f64)>,
    /// 95% interval of `y` (lo, hi), when known.
    pub y_ci: Option<(f64, f64)>,
}

/// One figure: a series per variant (or metric).
pub struct Figure {
    pub name: &'static str,
    pub title: String,
    pub y_label: String,
    /// (series label, points)
    pub series: Vec<(String, Vec<Point>)>,
}

/// Fractions to a percent interval; `None` unless both ends are finite, so a missing or
/// NaN bound draws no bar rather than a wild one.
fn ci(lo: Option<f64>, hi: Option<f64>) -> Option<(f64, f64)> {
    let (lo, hi) = (lo?, hi?);
    (lo.is_finite() && hi.is_finite()).then_some((lo.min(hi) * 100.0, lo.max(hi) * 100.0))
}

/// The three paper-style figures from an aggregate.
pub fn figures(a: &Aggregate) -> Vec<Figure> {
    let get = |m: &str, v: &str| a.rows.iter().find(|r| r.model == m && r.variant == v);
    let series = |v: &str, top5: bool| -> Vec<Point> {
        a.models
            .iter()
            .filter_map(|m| {
                let o = get(m, "original")?;
                let r = get(m, v)?;
                let (y, lo, hi) = if top5 {
                    (r.top5, r.top5_lo, r.top5_hi)
                } else {
                    (r.top1, r.top1_lo, r.top1_hi)
                };
                Some(Point {
                    model: m.clone(),
                    x: o.top1? * 100.0,
                    y: y? * 100.0,
                    x_ci: ci(o.top1_lo, o.top1_hi),
                    y_ci: ci(lo, hi),
                })
            })
            .collect()
    };
    let switched: Vec<&String> = a
        .variants
        .iter()
        .filter(|v| crate::aggregate::metrics::keeps_foreground(v))
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

/// Axis-aligned box in pixels (y grows downwards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    fn at(x0: f64, y0: f64, (w, h): (f64, f64)) -> Rect {
        Rect {
            x0,
            y0,
            x1: x0 + w,
            y1: y0 + h,
        }
    }

    fn around((x, y): (f64, f64), r: f64) -> Rect {
        Rect {
            x0: x - r,
            y0: y - r,
            x1: x + r,
            y1: y + r,
        }
    }

    fn inflate(&self, d: f64) -> Rect {
        Rect {
            x0: self.x0 - d,
            y0: self.y0 - d,
            x1: self.x1 + d,
            y1: self.y1 + d,
        }
    }

    /// Shared area; 0 when the boxes only touch.
    pub fn overlap(&self, o: &Rect) -> f64 {
        let w = self.x1.min(o.x1) - self.x0.max(o.x0);
        let h = self.y1.min(o.y1) - self.y0.max(o.y0);
        if w > 0.0 && h > 0.0 {
            w * h
        } else {
            0.0
        }
    }

    pub fn inside(&self, area: &Rect) -> bool {
        self.x0 >= area.x0 && self.y0 >= area.y0 && self.x1 <= area.x1 && self.y1 <= area.y1
    }

    /// Distance from `p` to the nearest point of the box (0 inside).
    fn distance(&self, p: (f64, f64)) -> f64 {
        let (n, m) = self.nearest(p);
        (n - p.0).hypot(m - p.1)
    }

    fn nearest(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (x.clamp(self.x0, self.x1), y.clamp(self.y0, self.y1))
    }
}

/// A label to place: its dot's centre and its text box size, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelSpec {
    pub anchor: (f64, f64),
    pub size: (f64, f64),
}

/// Where [`place_labels`] put a label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    pub rect: Rect,
    /// The box is away from its dot: draw a leader line.
    pub leader: bool,
    /// The box overlaps nothing (no label, dot or obstacle); false only in the fallback.
    pub clean: bool,
}

/// Free space between a dot's edge and a label beside it.
const LABEL_GAP: f64 = 3.0;
/// Free space kept between two labels (and a label and an obstacle).
const LABEL_PAD: f64 = 2.0;

/// Candidate boxes for one label, nearest to its dot first; only those inside `area`.
/// Order among equally near boxes: right, left, above, below, then outwards (up before
/// down), so the common case reads as before (name to the right of the dot).
fn candidates(l: &LabelSpec, r: f64, area: &Rect) -> Vec<Rect> {
    let (ax, ay) = l.anchor;
    let (w, h) = (l.size.0.max(1.0), l.size.1.max(1.0));
    let (sx, sy) = (w + LABEL_PAD, h + LABEL_PAD);
    // Enough steps to reach any part of the area from any anchor inside it.
    let rows = ((area.y1 - area.y0) / sy).ceil().max(0.0) as i64 + 1;
    let cols = ((area.x1 - area.x0) / sx).ceil().max(0.0) as i64 + 1;
    let right = |i: i64, j: i64| {
        Rect::at(
            ax + r + LABEL_GAP + i as f64 * sx,
            ay - h / 2.0 + j as f64 * sy,
            (w, h),
        )
    };
    let left = |i: i64, j: i64| {
        Rect::at(
            ax - r - LABEL_GAP - w - i as f64 * sx,
            ay - h / 2.0 + j as f64 * sy,
            (w, h),
        )
    };
    let above = |j: i64| Rect::at(ax - w / 2.0, ay - r - LABEL_GAP - h - j as f64 * sy, (w, h));
    let below = |j: i64| Rect::at(ax - w / 2.0, ay + r + LABEL_GAP + j as f64 * sy, (w, h));
    let mut out = vec![right(0, 0), left(0, 0), above(0), below(0)];
    for j in 1..=rows {
        out.extend([
            right(0, -j),
            right(0, j),
            left(0, -j),
            left(0, j),
            above(j),
            below(j),
        ]);
    }
    for i in 1..=cols {
        for j in 0..=rows {
            out.extend([right(i, -j), right(i, j), left(i, -j), left(i, j)]);
        }
    }
    out.retain(|c| c.inside(area));
    // Stable: ties keep the order above.
    out.sort_by(|a, b| a.distance(l.anchor).total_cmp(&b.distance(l.anchor)));
    out
}

/// Places labels one after another (input order decides who gets the nearest spot): each
/// takes the nearest candidate box around its dot (right, left, above, below, then further
/// out in rows and columns) that lies inside `area` and overlaps no label placed before it,
/// no dot (a square of side `2 * dot_radius` around each of `dots`), and no `obstacles`
/// box. Labels keep `LABEL_PAD` pixels from each other and from obstacles.
///
/// When no such box exists (the area is too crowded), the label is not dropped: it takes
/// the in-area candidate with the least overlapped area (the nearest among equals), or, if
/// not even its own box fits in `area`, its right-hand box shifted into the area's top left
/// as far as needed; either way `clean` is false. The output is a function of the input
/// only (no hashing, no randomness), one entry per label in input order.
pub fn place_labels(
    labels: &[LabelSpec],
    dots: &[(f64, f64)],
    dot_radius: f64,
    obstacles: &[Rect],
    area: Rect,
) -> Vec<Placed> {
    let dot_boxes: Vec<Rect> = dots.iter().map(|&d| Rect::around(d, dot_radius)).collect();
    let mut placed: Vec<Placed> = Vec::with_capacity(labels.len());
    for l in labels {
        let cost = |c: &Rect| -> f64 {
            let padded = c.inflate(LABEL_PAD);
            placed.iter().map(|p| padded.overlap(&p.rect)).sum::<f64>()
                + obstacles.iter().map(|o| padded.overlap(o)).sum::<f64>()
                + dot_boxes.iter().map(|d| c.overlap(d)).sum::<f64>()
        };
        let cands = candidates(l, dot_radius, &area);
        let (rect, clean) = match cands.iter().find(|c| cost(c) == 0.0) {
            Some(c) => (*c, true),
            None => {
                match cands
                    .iter()
                    .map(|c| (cost(c), c))
                    .reduce(|best, x| if x.0 < best.0 { x } else { best })
                {
                    Some((_, c)) => (*c, false),
                    None => {
                        let (w, h) = l.size;
                        let (ax, ay) = l.anchor;
                        let x0 = (ax + dot_radius + LABEL_GAP).min(area.x1 - w).max(area.x0);
                        let y0 = (ay - h / 2.0).min(area.y1 - h).max(area.y0);
                        (Rect::at(x0, y0, (w, h)), false)
                    }
                }
            }
        };
        let leader = rect.distance(l.anchor) > dot_radius + LABEL_GAP + 0.5;
        placed.push(Placed {
            rect,
            leader,
            clean,
        });
    }
    placed
}

const DOT_RADIUS: i32 = 5;
/// Half width of an error bar's end caps, in pixels.
const CAP: i32 = 3;
const LABEL_FONT: u32 = 12;
const LEGEND_FONT: u32 = 14;
/// Padding around a label's text inside its box.
const TEXT_PAD: f64 = 1.0;

fn series_colour(i: usize) -> RGBAColor {
    Palette99::pick(i).to_rgba()
}

/// The (x, y) data range the axes must show: every dot and every error bar, with room for
/// labels (right) and above the highest bar; never below 0 or, for y, above 100.
fn ranges(f: &Figure) -> ((f64, f64), (f64, f64)) {
    let points = || f.series.iter().flat_map(|s| s.1.iter());
    let lo = |v: f64, ci: Option<(f64, f64)>| ci.map_or(v, |c| c.0.min(v));
    let hi = |v: f64, ci: Option<(f64, f64)>| ci.map_or(v, |c| c.1.max(v));
    let (xmin, xmax) = points().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(lo(p.x, p.x_ci)), b.max(hi(p.x, p.x_ci)))
    });
    let x = if points().next().is_none() {
        (0.0, 100.0)
    } else {
        let span = (xmax - xmin).max(4.0);
        let (a, b) = ((xmin - 0.1 * span).max(0.0), xmax + 0.35 * span);
        (a, b.max(a + 1.0))
    };
    let ymax = points().map(|p| hi(p.y, p.y_ci)).fold(0.0f64, f64::max);
    // Capping at 100 cannot cut a bar: a Wilson bound never exceeds 100%.
    let ymax = (ymax * 1.15 + 1.0).min(100.0).max(ymax);
    (x, (0.0, ymax.max(1.0)))
}

fn px(c: (i32, i32)) -> (f64, f64) {
    (f64::from(c.0), f64::from(c.1))
}

/// The drawing surface of one figure file.
type Area<DB> = DrawingArea<DB, plotters::coord::Shift>;

fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

fn draw<DB: DrawingBackend>(root: Area<DB>, f: &Figure) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let ((xmin, xmax), (ymin, ymax)) = ranges(f);
    let mut chart = ChartBuilder::on(&root)
        .caption(&f.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(xmin..xmax, ymin..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("top-1 accuracy on original images (%)")
        .y_desc(&f.y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let (pxr, pyr) = chart.plotting_area().get_pixel_range();
    let area = Rect {
        x0: f64::from(pxr.start),
        y0: f64::from(pyr.start),
        x1: f64::from(pxr.end),
        y1: f64::from(pyr.end),
    };
    let to_px = |x: f64, y: f64| chart.backend_coord(&(x, y));

    // Error bars first, so the dots sit on top of them.
    draw_error_bars(&root, f, &to_px)?;
    let dots: Vec<(f64, f64)> = f
        .series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| px(to_px(p.x, p.y))))
        .collect();
    // The legend is placed before the labels so they can avoid it.
    let legend = Legend::place(&root, f, area, &dots)?;
    let (names, specs) = label_specs(&root, f, &to_px)?;
    let obstacles: Vec<Rect> = legend.iter().map(|l| l.rect).collect();
    let placed = place_labels(&specs, &dots, f64::from(DOT_RADIUS), &obstacles, area);
    // Leader lines under the dots, so they seem to start at the dot's edge.
    draw_leaders(&root, &specs, &placed)?;
    for (i, (_, points)) in f.series.iter().enumerate() {
        let style = ShapeStyle::from(&series_colour(i)).filled();
        for p in points {
            root.draw(&Circle::new(to_px(p.x, p.y), DOT_RADIUS, style))
                .map_err(err)?;
        }
    }
    draw_names(&root, &names, &placed)?;
    if let Some(l) = legend {
        l.draw(&root)?;
    }
    root.present().map_err(err)
}

/// Each point's 95% intervals: a bar with end caps per known interval.
fn draw_error_bars<DB: DrawingBackend>(
    root: &Area<DB>,
    f: &Figure,
    to_px: &impl Fn(f64, f64) -> (i32, i32),
) -> Result<(), String> {
    for (i, (_, points)) in f.series.iter().enumerate() {
        let style = ShapeStyle::from(&series_colour(i)).stroke_width(1);
        for p in points {
            let (cx, cy) = to_px(p.x, p.y);
            let mut segs: Vec<[(i32, i32); 2]> = Vec::new();
            if let Some((lo, hi)) = p.y_ci {
                let (a, b) = (to_px(p.x, lo).1, to_px(p.x, hi).1);
                segs.extend([
                    [(cx, a), (cx, b)],
                    [(cx - CAP, a), (cx + CAP, a)],
                    [(cx - CAP, b), (cx + CAP, b)],
                ]);
            }
            if let Some((lo, hi)) = p.x_ci {
                let (a, b) = (to_px(lo, p.y).0, to_px(hi, p.y).0);
                segs.extend([
                    [(a, cy), (b, cy)],
                    [(a, cy - CAP), (a, cy + CAP)],
                    [(b, cy - CAP), (b, cy + CAP)],
                ]);
            }
            for s in segs {
                root.draw(&PathElement::new(s.to_vec(), style))
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}

fn legend_style() -> TextStyle<'static> {
    ("sans-serif", LEGEND_FONT).into_font().into()
}

/// The legend box: a dot and the label of each series, one row each.
struct Legend<'a> {
    rect: Rect,
    /// (label, text width, text height)
    rows: Vec<(&'a str, f64, f64)>,
    row_h: f64,
}

impl<'a> Legend<'a> {
    /// Sized to its rows, in the plot corner that covers the fewest `dots` (lower right
    /// when free, as before); `None` when there are no series.
    fn place<DB: DrawingBackend>(
        root: &Area<DB>,
        f: &'a Figure,
        area: Rect,
        dots: &[(f64, f64)],
    ) -> Result<Option<Self>, String> {
        let style = legend_style();
        let mut rows = Vec::new();
        for (label, _) in &f.series {
            let (w, h) = root.estimate_text_size(label, &style).map_err(err)?;
            rows.push((label.as_str(), f64::from(w), f64::from(h)));
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let row_h = rows.iter().map(|r| r.2).fold(12.0, f64::max) + 4.0;
        let text_w = rows.iter().map(|r| r.1).fold(0.0, f64::max);
        let (lw, lh) = (
            8.0 + 2.0 * f64::from(DOT_RADIUS) + 8.0 + text_w + 8.0,
            8.0 + row_h * rows.len() as f64,
        );
        let inset = 8.0;
        let corners = [
            Rect::at(area.x1 - inset - lw, area.y1 - inset - lh, (lw, lh)),
            Rect::at(area.x0 + inset, area.y0 + inset, (lw, lh)),
            Rect::at(area.x1 - inset - lw, area.y0 + inset, (lw, lh)),
            Rect::at(area.x0 + inset, area.y1 - inset - lh, (lw, lh)),
        ];
        let covered = |r: &Rect| {
            let r_dot = f64::from(DOT_RADIUS);
            dots.iter()
                .filter(|&&d| Rect::around(d, r_dot).overlap(r) > 0.0)
                .count()
        };
        let rect = corners
            .into_iter()
            .map(|r| (covered(&r), r))
            .reduce(|best, x| if x.0 < best.0 { x } else { best })
            .map(|(_, r)| r);
        Ok(rect.map(|rect| Legend { rect, rows, row_h }))
    }

    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> Result<(), String> {
        let (l, row_h) = (self.rect, self.row_h);
        let (x0, y0) = (l.x0.round() as i32, l.y0.round() as i32);
        let (x1, y1) = (l.x1.round() as i32, l.y1.round() as i32);
        root.draw(&Rectangle::new(
            [(x0, y0), (x1, y1)],
            WHITE.mix(0.85).filled(),
        ))
        .map_err(err)?;
        root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK))
            .map_err(err)?;
        let style = legend_style();
        for (i, (label, _, h)) in self.rows.iter().enumerate() {
            let top = l.y0 + 4.0 + row_h * i as f64;
            let mid = (top + row_h / 2.0).round() as i32;
            let cx = x0 + 8 + DOT_RADIUS;
            root.draw(&Circle::new(
                (cx, mid),
                DOT_RADIUS,
                ShapeStyle::from(&series_colour(i)).filled(),
            ))
            .map_err(err)?;
            let ty = (top + (row_h - h) / 2.0).round() as i32;
            root.draw(&Text::new(
                label.to_string(),
                (cx + DOT_RADIUS + 8, ty),
                style.clone(),
            ))
            .map_err(err)?;
        }
        Ok(())
    }
}

fn label_style() -> TextStyle<'static> {
    ("sans-serif", LABEL_FONT).into_font().into()
}

/// One label per model, at its dot in the first series that has it: the model names and
/// their boxes to place.
fn label_specs<'a, DB: DrawingBackend>(
    root: &Area<DB>,
    f: &'a Figure,
    to_px: &impl Fn(f64, f64) -> (i32, i32),
) -> Result<(Vec<&'a str>, Vec<LabelSpec>), String> {
    let style = label_style();
    let mut specs = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (_, points) in &f.series {
        for p in points {
            if names.contains(&p.model.as_str()) {
                continue;
            }
            let (w, h) = root.estimate_text_size(&p.model, &style).map_err(err)?;
            specs.push(LabelSpec {
                anchor: px(to_px(p.x, p.y)),
                size: (f64::from(w) + 2.0 * TEXT_PAD, f64::from(h) + 2.0 * TEXT_PAD),
            });
            names.push(&p.model);
        }
    }
    Ok((names, specs))
}

/// A grey line from each dot to its label where the label was moved away.
fn draw_leaders<DB: DrawingBackend>(
    root: &Area<DB>,
    specs: &[LabelSpec],
    placed: &[Placed],
) -> Result<(), String> {
    let grey = ShapeStyle::from(&RGBColor(150, 150, 150)).stroke_width(1);
    for (s, p) in specs.iter().zip(placed) {
        if p.leader {
            let (nx, ny) = p.rect.nearest(s.anchor);
            let path = vec![
                (s.anchor.0 as i32, s.anchor.1 as i32),
                (nx.round() as i32, ny.round() as i32),
            ];
            root.draw(&PathElement::new(path, grey)).map_err(err)?;
        }
    }
    Ok(())
}

/// The model names in their placed boxes.
fn draw_names<DB: DrawingBackend>(
    root: &Area<DB>,
    names: &[&str],
    placed: &[Placed],
) -> Result<(), String> {
    let style = label_style();
    // A faint white box behind each name keeps it readable over grid and error bars.
    for (name, p) in names.iter().zip(placed) {
        let r = p.rect;
        let (x0, y0) = (r.x0.round() as i32, r.y0.round() as i32);
        let (x1, y1) = (r.x1.round() as i32, r.y1.round() as i32);
        root.draw(&Rectangle::new(
            [(x0, y0), (x1, y1)],
            WHITE.mix(0.75).filled(),
        ))
        .map_err(err)?;
        let pad = TEXT_PAD as i32;
        root.draw(&Text::new(
            name.to_string(),
            (x0 + pad, y0 + pad),
            style.clone(),
        ))
        .map_err(err)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::metrics::{Aggregate, SummaryRow};

    const AREA: Rect = Rect {
        x0: 67.0,
        y0: 45.0,
        x1: 788.0,
        y1: 508.0,
    };

    /// Roughly what "model_NN" measures at 12 px, padding included.
    fn spec(anchor: (f64, f64), n: usize) -> LabelSpec {
        LabelSpec {
            anchor,
            size: (48.0 + 7.0 * (n % 4) as f64, 16.0),
        }
    }

    fn assert_pairwise_disjoint(p: &[Placed]) {
        for (i, a) in p.iter().enumerate() {
            for (j, b) in p.iter().enumerate().skip(i + 1) {
                assert_eq!(
                    a.rect.overlap(&b.rect),
                    0.0,
                    "labels {i} and {j} overlap: {a:?} {b:?}"
                );
            }
        }
    }

    fn assert_clear_of_dots(p: &[Placed], dots: &[(f64, f64)], r: f64) {
        for (i, l) in p.iter().enumerate() {
            for d in dots {
                assert_eq!(
                    l.rect.overlap(&Rect::around(*d, r)),
                    0.0,
                    "label {i} covers dot {d:?}"
                );
            }
        }
    }

    #[test]
    fn thirty_two_labels_on_one_point_all_fit_apart() {
        // In the middle and in a corner (where only left / below are open).
        for anchor in [(400.0, 300.0), (AREA.x1 - 6.0, AREA.y0 + 6.0)] {
            let labels: Vec<LabelSpec> = (0..32).map(|n| spec(anchor, n)).collect();
            let dots = vec![anchor; 32];
            let p = place_labels(&labels, &dots, 5.0, &[], AREA);
            assert_eq!(p.len(), 32);
            assert!(p.iter().all(|l| l.clean && l.rect.inside(&AREA)), "{p:?}");
            assert_pairwise_disjoint(&p);
            assert_clear_of_dots(&p, &dots, 5.0);
            for (l, s) in p.iter().zip(&labels) {
                assert_eq!((l.rect.x1 - l.rect.x0, l.rect.y1 - l.rect.y0), s.size);
            }
        }
        // The first label goes where it always did: right of its dot, no leader.
        let p = place_labels(
            &[spec((400.0, 300.0), 0)],
            &[(400.0, 300.0)],
            5.0,
            &[],
            AREA,
        );
        assert!(p[0].rect.x0 > 400.0 && !p[0].leader);
        assert!(p[0].rect.y0 < 300.0 && p[0].rect.y1 > 300.0);
    }

    #[test]
    fn labels_never_cover_dots_or_obstacles() {
        // A deterministic cloud of 40 dots, some in tight clumps, and a legend box.
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let mut dots = Vec::new();
        for _ in 0..20 {
            let d = (
                AREA.x0 + 40.0 + next() * 600.0,
                AREA.y0 + 20.0 + next() * 400.0,
            );
            dots.push(d);
            dots.push((d.0 + next() * 6.0, d.1 + next() * 6.0));
        }
        let legend = Rect::at(AREA.x1 - 100.0, AREA.y1 - 50.0, (92.0, 42.0));
        let labels: Vec<LabelSpec> = dots.iter().enumerate().map(|(n, &d)| spec(d, n)).collect();
        let p = place_labels(&labels, &dots, 5.0, &[legend], AREA);
        assert!(p.iter().all(|l| l.clean && l.rect.inside(&AREA)));
        assert_pairwise_disjoint(&p);
        assert_clear_of_dots(&p, &dots, 5.0);
        assert!(p.iter().all(|l| l.rect.overlap(&legend) == 0.0));
        // A label moved off its dot is flagged for a leader line, one beside it is not.
        for (l, s) in p.iter().zip(&labels) {
            assert_eq!(l.leader, l.rect.distance(s.anchor) > 5.0 + LABEL_GAP + 0.5);
        }
    }

    #[test]
    fn placement_is_deterministic() {
        let labels: Vec<LabelSpec> = (0..32)
            .map(|n| spec((300.0 + (n % 3) as f64 * 2.0, 250.0), n))
            .collect();
        let dots: Vec<(f64, f64)> = labels.iter().map(|l| l.anchor).collect();
        let a = place_labels(&labels, &dots, 5.0, &[], AREA);
        for _ in 0..3 {
            assert_eq!(a, place_labels(&labels, &dots, 5.0, &[], AREA));
        }
    }

    #[test]
    fn crowded_area_degrades_deterministically() {
        // Room for a handful of labels only: the rest are still placed (never dropped),
        // inside the area, flagged not clean; the clean ones overlap nothing.
        let small = Rect {
            x0: 0.0,
            y0: 0.0,
            x1: 160.0,
            y1: 60.0,
        };
        let labels: Vec<LabelSpec> = (0..32).map(|n| spec((80.0, 30.0), n)).collect();
        let dots = vec![(80.0, 30.0)];
        let p = place_labels(&labels, &dots, 5.0, &[], small);
        assert_eq!(p, place_labels(&labels, &dots, 5.0, &[], small));
        assert_eq!(p.len(), 32);
        assert!(p.iter().all(|l| l.rect.inside(&small)));
        let clean: Vec<Placed> = p.iter().filter(|l| l.clean).copied().collect();
        assert!(
            clean.len() >= 2 && clean.len() < 32,
            "{} clean",
            clean.len()
        );
        assert!(p[0].clean && p[1].clean);
        assert_pairwise_disjoint(&clean);
        assert_clear_of_dots(&clean, &dots, 5.0);
        // A label bigger than the area is pinned to its top-left corner.
        let huge = LabelSpec {
            anchor: (80.0, 30.0),
            size: (400.0, 16.0),
        };
        let p = place_labels(&[huge], &dots, 5.0, &[], small);
        assert!(!p[0].clean);
        assert_eq!((p[0].rect.x0, p[0].rect.y0), (0.0, 22.0));
    }

    fn row(model: &str, variant: &str, top1: f64, top5: f64, n: u64, ci: bool) -> SummaryRow {
        let w = |p: f64| {
            let (lo, hi) = crate::aggregate::metrics::wilson((p * n as f64).round() as u64, n);
            if ci {
                (Some(lo), Some(hi))
            } else {
                (None, None)
            }
        };
        let ((l1, h1), (l5, h5)) = (w(top1), w(top5));
        SummaryRow {
            model: model.into(),
            variant: variant.into(),
            images: n,
            top1: Some(top1),
            top1_lo: l1,
            top1_hi: h1,
            top5: Some(top5),
            top5_lo: l5,
            top5_hi: h5,
            ..Default::default()
        }
    }

    /// `models` (name, top-1 on original, top-1 on bg_only); several may share a point.
    fn aggregate(models: &[(&str, f64, f64)], ci: bool) -> Aggregate {
        let mut rows = Vec::new();
        for &(m, o, b) in models {
            rows.push(row(m, "original", o, (o + 0.15).min(1.0), 500, ci));
            rows.push(row(m, "bg_only", b, (b + 0.2).min(1.0), 500, ci));
        }
        Aggregate {
            baseline: models[0].0.into(),
            models: models.iter().map(|m| m.0.to_string()).collect(),
            variants: vec!["original".into(), "bg_only".into()],
            rows,
            levels: Vec::new(),
            nested: true,
            common: 0,
            backgrounds: Vec::new(),
            class_map: None,
            scoring: None,
        }
    }

    const TWELVE: [(&str, f64, f64); 12] = [
        ("resnet18", 0.70, 0.11),
        ("resnet34", 0.73, 0.13),
        ("resnet50", 0.76, 0.15),
        ("resnet101", 0.76, 0.15),
        ("resnet152", 0.76, 0.15),
        ("wide_resnet50_2", 0.785, 0.16),
        ("vgg16", 0.716, 0.12),
        ("vgg19", 0.716, 0.12),
        ("densenet121", 0.744, 0.14),
        ("efficientnet_b0", 0.777, 0.17),
        ("vit_b_16", 0.81, 0.19),
        ("convnext_tiny", 0.82, 0.20),
    ];

    fn polylines_in(svg: &str, colour: RGBAColor) -> usize {
        let (r, g, b) = colour.rgb();
        let stroke = format!("stroke=\"#{r:02X}{g:02X}{b:02X}\"");
        svg.split("<polyline")
            .skip(1)
            .filter(|el| el.split('>').next().is_some_and(|t| t.contains(&stroke)))
            .count()
    }

    #[test]
    fn figures_carry_intervals_and_svgs_draw_error_bars() {
        let with = aggregate(&TWELVE, true);
        let figs = figures(&with);
        assert_eq!(figs.len(), 1);
        let p = &figs[0].series[0].1[0];
        let (lo, hi) = p.x_ci.expect("x interval");
        assert!(lo < p.x && p.x < hi && lo > 60.0 && hi < 80.0, "{p:?}");
        assert!(figs[0]
            .series
            .iter()
            .all(|s| s.1.iter().all(|p| p.x_ci.is_some() && p.y_ci.is_some())));
        let without = figures(&aggregate(&TWELVE, false));
        assert!(without[0].series[0]
            .1
            .iter()
            .all(|p| p.x_ci.is_none() && p.y_ci.is_none()));

        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("with"), dir.path().join("without"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let svg_with = std::fs::read_to_string(&write_figures(&figs, &a).unwrap()[0]).unwrap();
        let svg_without =
            std::fs::read_to_string(&write_figures(&without, &b).unwrap()[0]).unwrap();
        assert!(a.join("fig2_bg_only.png").is_file());
        // Six strokes per dot (two bars, four caps) in the series colour; none without.
        for s in 0..2 {
            assert_eq!(
                polylines_in(&svg_with, series_colour(s)),
                6 * TWELVE.len(),
                "series {s}"
            );
            assert_eq!(
                polylines_in(&svg_without, series_colour(s)),
                0,
                "series {s}"
            );
        }
        // Every model is named exactly once.
        for (m, _, _) in TWELVE {
            assert_eq!(svg_with.lines().filter(|l| l.trim() == m).count(), 1, "{m}");
        }
    }

    #[test]
    fn ranges_contain_the_error_bars() {
        let f = Figure {
            name: "t",
            title: String::new(),
            y_label: String::new(),
            series: vec![(
                "s".into(),
                vec![Point {
                    model: "m".into(),
                    x: 50.0,
                    y: 97.0,
                    x_ci: Some((30.0, 90.0)),
                    y_ci: Some((92.0, 100.0)),
                }],
            )],
        };
        let ((x0, x1), (y0, y1)) = ranges(&f);
        assert!(x0 <= 30.0 && x1 >= 90.0 && y0 <= 92.0 && y1 >= 100.0);
    }

    /// Renders the twelve-model figure into /tmp/plots-check for a look by eye:
    /// `cargo test --lib report::plots -- --ignored`.
    #[test]
    #[ignore]
    fn render_for_eyeballing() {
        let dir = Path::new("/tmp/plots-check");
        std::fs::create_dir_all(dir).unwrap();
        write_figures(&figures(&aggregate(&TWELVE, true)), dir).unwrap();
        // Ten of the twelve on one point: labels fan out with leader lines.
        let same: Vec<(&str, f64, f64)> = TWELVE
            .iter()
            .enumerate()
            .map(|(i, &(m, o, b))| if i < 10 { (m, 0.75, 0.15) } else { (m, o, b) })
            .collect();
        let mut crowded = figures(&aggregate(&same, true));
        crowded[0].name = "crowded";
        write_figures(&crowded, dir).unwrap();
    }
}
