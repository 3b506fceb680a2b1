//! Contact sheets: a row per image, a column per variant, each tile the exact frame a
//! model sees (copied, never resampled), captions and box outlines drawn around and over
//! it with plotters (text in the Ubuntu font that `epaint_default_fonts` ships, so no
//! system fonts are needed).

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::ops::geometry::Rect;

/// One tile: a square RGB frame and what to write under it.
pub struct Tile<'a> {
    pub pixels: &'a [u8],
    pub size: usize,
    /// Outlined on the tile (the object boxes, on `original`).
    pub boxes: &'a [Rect],
    /// Pixels drawn red (a mask's outline, on `original`).
    pub outline: &'a [(usize, usize)],
    pub captions: Vec<String>,
}

/// One image: its title lines (key, class) and a tile per column (`None`: no image, e.g.
/// a slot without a donor; `note` says why a whole row is empty).
pub struct SheetRow<'a> {
    pub title: Vec<String>,
    pub tiles: Vec<Option<Tile<'a>>>,
    pub note: Option<String>,
}

pub struct Sheet<'a> {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<SheetRow<'a>>,
}

const MARGIN: usize = 10;
const TITLE_H: usize = 30;
const HEADER_H: usize = 22;
const LEFT_W: usize = 180;
const GAP: usize = 6;
const LINE_H: usize = 15;
/// Average advance of the 12 px font, for truncating captions to their tile.
const CHAR_W: f64 = 6.2;

/// Registers the bundled font once (the figures use it too).
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

fn fit(text: &str, width: usize) -> String {
    let max = ((width as f64 / CHAR_W) as usize).max(4);
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// Where things go: the tile size, the height of a row and of the whole sheet.
struct Layout {
    /// The largest tile's side; every column is this wide.
    tile: usize,
    row_h: usize,
    cols: usize,
    w: usize,
    h: usize,
}

impl Layout {
    fn of(sheet: &Sheet<'_>) -> Layout {
        let tile = sheet
            .rows
            .iter()
            .flat_map(|r| r.tiles.iter().flatten().map(|t| t.size))
            .max()
            .unwrap_or(64);
        let lines = sheet
            .rows
            .iter()
            .flat_map(|r| r.tiles.iter().flatten().map(|t| t.captions.len()))
            .max()
            .unwrap_or(0)
            .max(
                sheet
                    .rows
                    .iter()
                    .map(|r| r.title.len().saturating_sub(tile / LINE_H))
                    .max()
                    .unwrap_or(0),
            );
        let row_h = tile + lines * LINE_H + 2 * GAP;
        let cols = sheet.columns.len().max(1);
        let w = 2 * MARGIN + LEFT_W + cols * (tile + GAP);
        let h = 2 * MARGIN + TITLE_H + HEADER_H + sheet.rows.len().max(1) * row_h;
        Layout {
            tile,
            row_h,
            cols,
            w,
            h,
        }
    }

    /// The top left corner of the tile of row `ri`, column `ci`.
    fn origin(&self, ri: usize, ci: usize) -> (usize, usize) {
        (
            MARGIN + LEFT_W + ci * (self.tile + GAP),
            MARGIN + TITLE_H + HEADER_H + ri * self.row_h,
        )
    }
}

fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

fn font(px: u32) -> FontDesc<'static> {
    ("sans-serif", px).into_font()
}

fn pos(x: usize, y: usize) -> (i32, i32) {
    (x as i32, y as i32)
}

/// Draws `sheet`; returns RGB bytes, width and height.
pub fn draw(sheet: &Sheet<'_>) -> Result<(Vec<u8>, usize, usize), String> {
    register_font();
    let layout = Layout::of(sheet);
    let (w, h) = (layout.w, layout.h);
    let mut canvas = vec![255u8; w * h * 3];
    // The pixels first, copied as they are.
    copy_tiles(sheet, &layout, &mut canvas);
    {
        let root =
            BitMapBackend::with_buffer(&mut canvas, (w as u32, h as u32)).into_drawing_area();
        draw_headers(&root, sheet, &layout)?;
        for (ri, row) in sheet.rows.iter().enumerate() {
            draw_row(&root, row, ri, &layout)?;
        }
        root.present().map_err(err)?;
    }
    Ok((canvas, w, h))
}

/// Copies each tile's frame into `canvas`, pixel for pixel.
fn copy_tiles(sheet: &Sheet<'_>, layout: &Layout, canvas: &mut [u8]) {
    for (ri, row) in sheet.rows.iter().enumerate() {
        for (ci, t) in row.tiles.iter().enumerate() {
            let Some(t) = t else { continue };
            let (x0, y0) = layout.origin(ri, ci);
            for y in 0..t.size {
                let src = &t.pixels[y * t.size * 3..(y + 1) * t.size * 3];
                let at = ((y0 + y) * layout.w + x0) * 3;
                canvas[at..at + src.len()].copy_from_slice(src);
            }
        }
    }
}

/// The sheet's title and a header over each column.
fn draw_headers<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    sheet: &Sheet<'_>,
    layout: &Layout,
) -> Result<(), String> {
    root.draw(&Text::new(
        sheet.title.clone(),
        pos(MARGIN, MARGIN),
        font(18),
    ))
    .map_err(err)?;
    for (ci, c) in sheet.columns.iter().enumerate() {
        let (x, _) = layout.origin(0, ci);
        root.draw(&Text::new(
            fit(c, layout.tile),
            pos(x, MARGIN + TITLE_H),
            font(14),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Row `ri`: its title lines on the left, its note, and its tiles' drawings.
fn draw_row<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    row: &SheetRow<'_>,
    ri: usize,
    layout: &Layout,
) -> Result<(), String> {
    let tile = layout.tile;
    let (_, y0) = layout.origin(ri, 0);
    for (li, line) in row.title.iter().enumerate() {
        root.draw(&Text::new(
            fit(line, LEFT_W - GAP),
            pos(MARGIN, y0 + li * LINE_H),
            font(12),
        ))
        .map_err(err)?;
    }
    if let Some(note) = &row.note {
        let (x, _) = layout.origin(ri, 0);
        root.draw(&Text::new(
            fit(note, layout.cols * (tile + GAP)),
            pos(x, y0 + tile / 2),
            font(13),
        ))
        .map_err(err)?;
    }
    for (ci, t) in row.tiles.iter().enumerate() {
        let (x0, y0) = layout.origin(ri, ci);
        let Some(t) = t else {
            root.draw(&Text::new(
                "(no image)",
                pos(x0 + 4, y0 + tile / 2),
                font(12),
            ))
            .map_err(err)?;
            continue;
        };
        draw_over_tile(root, t, (x0, y0), tile)?;
    }
    Ok(())
}

/// What goes over and under the tile at `(x0, y0)`: box and mask outlines, captions.
fn draw_over_tile<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    t: &Tile<'_>,
    (x0, y0): (usize, usize),
    tile: usize,
) -> Result<(), String> {
    let red = ShapeStyle {
        color: RGBColor(230, 20, 20).to_rgba(),
        filled: false,
        stroke_width: 2,
    };
    for b in t.boxes {
        // Outline inside the box: its last pixel row/column is x1 - 1.
        let (bx0, by0) = (x0 + b.x0, y0 + b.y0);
        let (bx1, by1) = (x0 + b.x1.max(b.x0 + 1) - 1, y0 + b.y1.max(b.y0 + 1) - 1);
        root.draw(&Rectangle::new([pos(bx0, by0), pos(bx1, by1)], red))
            .map_err(err)?;
    }
    for &(x, y) in t.outline {
        root.draw_pixel(pos(x0 + x, y0 + y), &RGBColor(230, 20, 20))
            .map_err(err)?;
    }
    for (li, line) in t.captions.iter().enumerate() {
        root.draw(&Text::new(
            fit(line, tile),
            pos(x0, y0 + t.size + 3 + li * LINE_H),
            font(12),
        ))
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_copied_exactly_and_boxes_outlined() {
        let size = 32;
        let a: Vec<u8> = (0..size * size * 3).map(|i| (i % 200) as u8).collect();
        let b = vec![7u8; size * size * 3];
        let boxes = [Rect {
            x0: 4,
            y0: 4,
            x1: 20,
            y1: 24,
        }];
        let sheet = Sheet {
            title: "t".into(),
            columns: vec!["original".into(), "bg_only".into()],
            rows: vec![SheetRow {
                title: vec!["key".into()],
                tiles: vec![
                    Some(Tile {
                        pixels: &a,
                        size,
                        boxes: &boxes,
                        outline: &[(30, 30)],
                        captions: vec!["m: cat 90%".into()],
                    }),
                    Some(Tile {
                        pixels: &b,
                        size,
                        boxes: &[],
                        outline: &[],
                        captions: vec![],
                    }),
                ],
                note: None,
            }],
        };
        let (rgb, w, _) = draw(&sheet).unwrap();
        let at = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
        let (x0, y0) = (MARGIN + LEFT_W, MARGIN + TITLE_H + HEADER_H);
        // Inside the second tile every pixel is the frame's.
        for y in 0..size {
            for x in 0..size {
                assert_eq!(at(x0 + size + GAP + x, y0 + y), &[7, 7, 7]);
            }
        }
        // A pixel of the first tile away from the outline is untouched; the outline is red.
        assert_eq!(at(x0 + 1, y0 + 1), &a[(size + 1) * 3..(size + 1) * 3 + 3]);
        let edge = at(x0 + 4, y0 + 10);
        assert!(
            edge[0] > 200 && edge[1] < 60,
            "box outline at its x0: {edge:?}"
        );
        assert_eq!(at(x0 + 30, y0 + 30), &[230, 20, 20], "a mask outline pixel");
    }
}
