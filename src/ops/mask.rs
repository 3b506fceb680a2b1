//! Foregrounds: what every variant keeps or replaces, in output pixels.
//!
//! A sample's foreground is its boxes, or — when it has one — its mask: a `<key>.mask.png`
//! (grayscale, nonzero = foreground, the image's size) and/or `"polygons"` in its JSON
//! (`[[x0, y0, x1, y1, …], …]` in original pixel-edge coordinates, like the boxes). The
//! mask is the union of the PNG's pixels and the polygons' interiors (even-odd rule per
//! polygon).
//!
//! An output pixel `(u, v)` is foreground when its centre mapped back to the original
//! image, `x = (u + crop_x + 0.5) * (w / rw)`, `y = (v + crop_y + 0.5) * (h / rh)` (f64,
//! in that order), falls on a foreground PNG pixel (`floor(x)`, `floor(y)`) or inside a
//! polygon: the number of edges `(xi, yi)–(xj, yj)` with `(yi > y) != (yj > y)` and
//! `x < (xj - xi) * (y - yi) / (yj - yi) + xi` is odd. The mask's area (the filter's
//! `fg_fraction`) is the same test at every original pixel centre `(c + 0.5, r + 0.5)`,
//! divided by `w * h`. `tests/reference.py` computes both the same way in numpy.
//!
//! In output space a foreground is a list of row spans, so boxes and masks share every
//! variant's code, and filling or copying a span is one `memcpy`.

use zune_core::bytestream::ZCursor;
use zune_core::options::DecoderOptions;
use zune_core::result::DecodingResult;
use zune_png::PngDecoder;

use super::geometry::{Geometry, Rect};
use crate::error::ItemError;

/// Columns `[x0, x1)` of row `y` of an output frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub y: usize,
    pub x0: usize,
    pub x1: usize,
}

/// The foreground of a `size`×`size` output frame: disjoint row spans, sorted by row then
/// column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Foreground {
    size: usize,
    spans: Vec<Span>,
}

impl Foreground {
    /// The union of `rects` (clipped to the frame).
    pub fn from_rects(size: usize, rects: &[Rect]) -> Self {
        let mut spans = Vec::new();
        let mut row: Vec<(usize, usize)> = Vec::with_capacity(rects.len());
        for y in 0..size {
            row.clear();
            row.extend(
                rects
                    .iter()
                    .filter(|r| r.y0 <= y && y < r.y1.min(size))
                    .map(|r| (r.x0.min(size), r.x1.min(size)))
                    .filter(|(a, b)| a < b),
            );
            row.sort_unstable();
            for &(x0, x1) in row.iter() {
                match spans.last_mut() {
                    Some(Span { y: sy, x1: end, .. }) if *sy == y && x0 <= *end => {
                        *end = (*end).max(x1)
                    }
                    _ => spans.push(Span { y, x0, x1 }),
                }
            }
        }
        Foreground { size, spans }
    }

    /// Row `y`'s runs of `true` in `row` appended as spans (rows must come in order).
    fn push_row(&mut self, y: usize, row: &[bool]) {
        let mut x = 0;
        while x < row.len() {
            if !row[x] {
                x += 1;
                continue;
            }
            let start = x;
            while x < row.len() && row[x] {
                x += 1;
            }
            self.spans.push(Span {
                y,
                x0: start,
                x1: x,
            });
        }
    }

    /// From a `size*size` row-major grid of flags.
    pub fn from_flags(size: usize, flags: &[bool]) -> Self {
        let mut fg = Foreground {
            size,
            spans: Vec::new(),
        };
        for (y, row) in flags.chunks_exact(size.max(1)).enumerate().take(size) {
            fg.push_row(y, row);
        }
        fg
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Foreground pixels.
    pub fn pixels(&self) -> usize {
        self.spans.iter().map(|s| s.x1 - s.x0).sum()
    }

    /// A `size*size` row-major grid, `true` on the foreground.
    pub fn flags(&self) -> Vec<bool> {
        let mut out = vec![false; self.size * self.size];
        for s in &self.spans {
            out[s.y * self.size + s.x0..s.y * self.size + s.x1].fill(true);
        }
        out
    }

    /// Foreground pixels `(x, y)` with a 4-neighbour in the background (the outline a
    /// preview draws); pixels on the frame's edge count only by their inner neighbours.
    pub fn outline(&self) -> Vec<(usize, usize)> {
        let (n, flags) = (self.size, self.flags());
        let fg = |x: usize, y: usize| flags[y * n + x];
        let mut out = Vec::new();
        for s in &self.spans {
            for x in s.x0..s.x1 {
                let y = s.y;
                let edge = (x > 0 && !fg(x - 1, y))
                    || (x + 1 < n && !fg(x + 1, y))
                    || (y > 0 && !fg(x, y - 1))
                    || (y + 1 < n && !fg(x, y + 1));
                if edge {
                    out.push((x, y));
                }
            }
        }
        out
    }

    /// The spans as byte ranges of an RGB frame.
    pub fn byte_ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        self.spans
            .iter()
            .map(|s| (s.y * self.size + s.x0) * 3..(s.y * self.size + s.x1) * 3)
    }
}

/// A sample's mask in original pixels (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMask {
    width: usize,
    height: usize,
    /// `width*height`, row-major, from the PNG.
    bitmap: Option<Vec<bool>>,
    /// Each polygon's vertices.
    polygons: Vec<Vec<[f64; 2]>>,
}

/// Decodes a mask PNG: grayscale (with or without alpha, any bit depth), nonzero gray =
/// foreground.
pub fn decode_mask_png(bytes: &[u8]) -> Result<(usize, usize, Vec<bool>), String> {
    decode_mask_png_of(bytes, None)
}

/// [`decode_mask_png`] for an image of `size` (width, height): a header of any other size
/// is refused before anything is decoded, so a hostile header cannot make it allocate.
pub fn decode_mask_png_of(
    bytes: &[u8],
    size: Option<(usize, usize)>,
) -> Result<(usize, usize, Vec<bool>), String> {
    let opts = DecoderOptions::default()
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut d = PngDecoder::new_with_options(ZCursor::new(bytes), opts);
    d.decode_headers().map_err(|e| format!("mask PNG: {e:?}"))?;
    let (w, h) = d.dimensions().ok_or("mask PNG has no header")?;
    if let Some((width, height)) = size.filter(|&s| s != (w, h)) {
        return Err(format!("mask is {w}x{h}, the image {width}x{height}"));
    }
    let cs = d.colorspace().ok_or("mask PNG has no colour space")?;
    let channels = cs.num_components();
    if !matches!(channels, 1 | 2) || !cs.is_grayscale() {
        return Err(format!(
            "mask PNG is {cs:?}: a mask is grayscale (nonzero = foreground)"
        ));
    }
    let flags: Vec<bool> = match d.decode().map_err(|e| format!("mask PNG: {e:?}"))? {
        DecodingResult::U8(v) => v.iter().step_by(channels).map(|&p| p != 0).collect(),
        DecodingResult::U16(v) => v.iter().step_by(channels).map(|&p| p != 0).collect(),
        _ => return Err("mask PNG has float samples".into()),
    };
    if flags.len() != w * h {
        return Err(format!("mask PNG gave {} pixels for {w}x{h}", flags.len()));
    }
    Ok((w, h, flags))
}

/// Checks one `[x0, y0, x1, y1, …]` polygon: at least 3 finite points, not all on one
/// line. Its area is what it fills by the even-odd rule (so a self-intersecting outline,
/// a bow-tie, fills both lobes although its signed areas cancel); a polygon that fills no
/// pixel centre is allowed as long as the whole mask fills one ([`SourceMask::area_fraction`]).
fn polygon(index: usize, flat: &[f64]) -> Result<Vec<[f64; 2]>, ItemError> {
    let bad = |reason: String| ItemError::BadPolygon { index, reason };
    if !flat.len().is_multiple_of(2) || flat.len() < 6 {
        return Err(bad(format!(
            "{} numbers: a polygon is x, y pairs, at least 3 of them",
            flat.len()
        )));
    }
    if flat.iter().any(|v| !v.is_finite()) {
        return Err(bad("a coordinate is not finite".into()));
    }
    let pts: Vec<[f64; 2]> = flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
    let o = pts[0];
    let far = pts.iter().find(|p| **p != o).copied().unwrap_or(o);
    let off_line = pts
        .iter()
        .any(|p| (far[0] - o[0]) * (p[1] - o[1]) != (far[1] - o[1]) * (p[0] - o[0]));
    if !off_line {
        return Err(bad("zero area (its points are on one line)".into()));
    }
    Ok(pts)
}

impl SourceMask {
    /// The mask of an image of `width`×`height` from its PNG bytes and/or polygons. A PNG
    /// that does not decode or is not the image's size is `bad_mask`; a degenerate polygon
    /// `bad_polygon`; a mask that covers no pixel centre `bad_mask`.
    pub fn new(
        png: Option<&[u8]>,
        polygons: &[Vec<f64>],
        width: usize,
        height: usize,
    ) -> Result<Self, ItemError> {
        let bitmap = match png {
            Some(bytes) => {
                let (w, h, flags) =
                    decode_mask_png_of(bytes, Some((width, height))).map_err(ItemError::BadMask)?;
                if (w, h) != (width, height) {
                    return Err(ItemError::BadMask(format!(
                        "mask is {w}x{h}, the image {width}x{height}"
                    )));
                }
                Some(flags)
            }
            None => None,
        };
        let polygons = polygons
            .iter()
            .enumerate()
            .map(|(i, p)| polygon(i, p))
            .collect::<Result<_, _>>()?;
        Ok(SourceMask {
            width,
            height,
            bitmap,
            polygons,
        })
    }

    /// Calls `f(row, flags)` for each `ys[row]`, `flags[i]` saying whether `(xs[i], ys[row])`
    /// is foreground. `xs` must be ascending.
    fn sample(&self, xs: &[f64], ys: &[f64], mut f: impl FnMut(usize, &[bool])) {
        let mut row = vec![false; xs.len()];
        let cols: Vec<usize> = xs
            .iter()
            .map(|&x| (x.floor().max(0.0) as usize).min(self.width - 1))
            .collect();
        let mut crossings: Vec<f64> = Vec::new();
        for (r, &y) in ys.iter().enumerate() {
            match &self.bitmap {
                Some(bits) => {
                    let line = (y.floor().max(0.0) as usize).min(self.height - 1) * self.width;
                    for (flag, &c) in row.iter_mut().zip(&cols) {
                        *flag = bits[line + c];
                    }
                }
                None => row.fill(false),
            }
            for pts in &self.polygons {
                crossings.clear();
                let n = pts.len();
                for i in 0..n {
                    let ([xi, yi], [xj, yj]) = (pts[i], pts[(i + n - 1) % n]);
                    if (yi > y) != (yj > y) {
                        crossings.push((xj - xi) * (y - yi) / (yj - yi) + xi);
                    }
                }
                if crossings.is_empty() {
                    continue;
                }
                crossings.sort_unstable_by(f64::total_cmp);
                // Inside when an odd number of crossings lie strictly right of x.
                let mut k = 0;
                for (flag, &x) in row.iter_mut().zip(xs) {
                    while k < crossings.len() && crossings[k] <= x {
                        k += 1;
                    }
                    *flag |= (crossings.len() - k) % 2 == 1;
                }
            }
            f(r, &row);
        }
    }

    /// Foreground pixel centres of the original image over its area; `bad_mask` when it
    /// is zero.
    pub fn area_fraction(&self) -> Result<f64, ItemError> {
        let mut n = 0usize;
        match (&self.bitmap, self.polygons.is_empty()) {
            // Pixel centres fall on their own pixels: a plain count.
            (Some(bits), true) => n = bits.iter().filter(|&&f| f).count(),
            _ => {
                let xs: Vec<f64> = (0..self.width).map(|c| c as f64 + 0.5).collect();
                let ys: Vec<f64> = (0..self.height).map(|r| r as f64 + 0.5).collect();
                self.sample(&xs, &ys, |_, row| n += row.iter().filter(|&&f| f).count());
            }
        }
        if n == 0 {
            return Err(ItemError::BadMask(
                "the mask covers no pixel of the image".into(),
            ));
        }
        Ok(n as f64 / (self.width as f64 * self.height as f64))
    }

    /// The foreground of the crop `g` (output pixel centres mapped back).
    pub fn map(&self, g: &Geometry) -> Foreground {
        let (sx, sy) = (
            g.src_w as f64 / g.resized_w as f64,
            g.src_h as f64 / g.resized_h as f64,
        );
        let xs: Vec<f64> = (0..g.size)
            .map(|u| (u as f64 + g.crop_x as f64 + 0.5) * sx)
            .collect();
        let ys: Vec<f64> = (0..g.size)
            .map(|v| (v as f64 + g.crop_y as f64 + 0.5) * sy)
            .collect();
        let mut fg = Foreground {
            size: g.size,
            spans: Vec::new(),
        };
        self.sample(&xs, &ys, |v, row| fg.push_row(v, row));
        fg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::geometry::{Interpolation, Preprocess};
    use proptest::prelude::*;

    fn rect(x0: usize, y0: usize, x1: usize, y1: usize) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    proptest! {
        #[test]
        fn rect_spans_are_the_union_of_the_rects(
            size in 1usize..12,
            raw in proptest::collection::vec((0usize..14, 0usize..14, 0usize..14, 0usize..14), 0..5),
        ) {
            let rects: Vec<Rect> = raw.iter().map(|&(a, b, c, d)| rect(a, b, c, d)).collect();
            let fg = Foreground::from_rects(size, &rects);
            let want: Vec<bool> = (0..size * size)
                .map(|i| {
                    let (x, y) = (i % size, i / size);
                    rects.iter().any(|r| (r.x0..r.x1).contains(&x) && (r.y0..r.y1).contains(&y))
                })
                .collect();
            prop_assert_eq!(fg.flags(), want.clone());
            prop_assert_eq!(Foreground::from_flags(size, &want), fg.clone());
            // The outline is in the foreground and borders the background.
            for (x, y) in fg.outline() {
                prop_assert!(want[y * size + x]);
                let near = [(x.wrapping_sub(1), y), (x + 1, y), (x, y.wrapping_sub(1)), (x, y + 1)];
                prop_assert!(near.iter().any(|&(a, b)| a < size && b < size && !want[b * size + a]));
            }
            // Disjoint and sorted: each span starts past the previous one's end.
            for w in fg.spans().windows(2) {
                prop_assert!((w[0].y, w[0].x1) < (w[1].y, w[1].x0));
            }
        }
    }

    /// The definition, one point at a time.
    fn inside(pts: &[[f64; 2]], x: f64, y: f64) -> bool {
        let n = pts.len();
        let mut c = false;
        for i in 0..n {
            let ([xi, yi], [xj, yj]) = (pts[i], pts[(i + n - 1) % n]);
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                c = !c;
            }
        }
        c
    }

    #[test]
    fn polygons_rasterise_as_the_point_test_says() {
        // A concave, self-touching star and a triangle, in a 40x30 image.
        let star = vec![
            20.0, 2.0, 24.3, 12.0, 38.0, 12.5, 26.0, 19.0, 31.0, 29.0, 20.0, 22.0, 9.0, 29.0, 14.0,
            19.0, 2.0, 12.5, 15.7, 12.0,
        ];
        let tri = vec![0.0, 0.0, 6.0, 0.0, 0.0, 6.0];
        let m = SourceMask::new(None, &[star.clone(), tri.clone()], 40, 30).unwrap();
        let polys: Vec<Vec<[f64; 2]>> = [star, tri]
            .iter()
            .map(|p| p.chunks(2).map(|c| [c[0], c[1]]).collect())
            .collect();
        let g = Geometry::new(
            40,
            30,
            &Preprocess {
                input_size: 24,
                crop_pct: 0.875,
                interpolation: Interpolation::Bilinear,
            },
        )
        .unwrap();
        let fg = m.map(&g);
        let flags = fg.flags();
        let mut n = 0;
        for v in 0..g.size {
            for u in 0..g.size {
                let x = (u as f64 + g.crop_x as f64 + 0.5) * (40.0 / g.resized_w as f64);
                let y = (v as f64 + g.crop_y as f64 + 0.5) * (30.0 / g.resized_h as f64);
                let want = polys.iter().any(|p| inside(p, x, y));
                assert_eq!(flags[v * g.size + u], want, "({u}, {v})");
                n += want as usize;
            }
        }
        assert!(n > 50 && n < g.size * g.size / 2, "{n} foreground pixels");
        let area = m.area_fraction().unwrap();
        let count = (0..30 * 40)
            .filter(|i| {
                let (x, y) = ((i % 40) as f64 + 0.5, (i / 40) as f64 + 0.5);
                polys.iter().any(|p| inside(p, x, y))
            })
            .count();
        assert_eq!(area, count as f64 / 1200.0);
    }

    #[test]
    fn a_bow_tie_fills_both_lobes_by_the_even_odd_rule() {
        // Its diagonals cross at (100, 75): two triangles of 7,500 px each, whose signed
        // areas cancel.
        let tie = vec![0.0, 0.0, 200.0, 150.0, 200.0, 0.0, 0.0, 150.0];
        let m = SourceMask::new(None, &[tie], 200, 150).unwrap();
        let filled = m.area_fraction().unwrap() * 200.0 * 150.0;
        assert!((filled - 15_000.0).abs() <= 200.0, "{filled} px");
        // The same outline traced twice fills nothing (even-odd): the mask is empty.
        let twice = [0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0].repeat(2);
        let m = SourceMask::new(None, &[twice], 20, 20).unwrap();
        assert!(matches!(m.area_fraction(), Err(ItemError::BadMask(_))));
        // Points on one line are refused as they were.
        let line = vec![0.0, 0.0, 5.0, 5.0, 10.0, 10.0];
        assert!(matches!(
            SourceMask::new(None, &[line], 20, 20),
            Err(ItemError::BadPolygon { index: 0, .. })
        ));
    }

    fn png(w: usize, h: usize, bits: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, w as u32, h as u32);
        e.set_color(png::ColorType::Grayscale);
        e.set_depth(png::BitDepth::Eight);
        e.write_header().unwrap().write_image_data(bits).unwrap();
        out
    }

    #[test]
    fn png_masks_are_sampled_nearest_and_checked() {
        // Left half of a 10x8 image.
        let bits: Vec<u8> = (0..80).map(|i| if i % 10 < 5 { 200 } else { 0 }).collect();
        let m = SourceMask::new(Some(&png(10, 8, &bits)), &[], 10, 8).unwrap();
        assert_eq!(m.area_fraction().unwrap(), 0.5);
        let g = Geometry::new(
            10,
            8,
            &Preprocess {
                input_size: 8,
                crop_pct: 1.0,
                interpolation: Interpolation::Bilinear,
            },
        )
        .unwrap();
        // 10x8 -> 10x8 resized, crop x from 1: columns 0..4 map to source 1..5.
        assert_eq!((g.resized_w, g.crop_x), (10, 1));
        let fg = m.map(&g);
        assert!(fg.spans().iter().all(|s| (s.x0, s.x1) == (0, 4)));
        assert_eq!(fg.spans().len(), 8);

        let err = |r: Result<SourceMask, ItemError>| r.unwrap_err().code();
        assert_eq!(
            err(SourceMask::new(Some(&png(10, 7, &bits[..70])), &[], 10, 8)),
            "bad_mask"
        );
        assert_eq!(
            err(SourceMask::new(Some(b"not a png"), &[], 10, 8)),
            "bad_mask"
        );
        let empty = SourceMask::new(Some(&png(10, 8, &[0; 80])), &[], 10, 8).unwrap();
        assert_eq!(empty.area_fraction().unwrap_err().code(), "bad_mask");
        for bad in [
            vec![0.0, 0.0, 5.0, 0.0],
            vec![0.0, 0.0, 5.0, 0.0, 9.0],
            vec![0.0, 0.0, 5.0, 5.0, 9.0, 9.0],
            vec![0.0, 0.0, 5.0, f64::NAN, 9.0, 1.0],
        ] {
            assert_eq!(err(SourceMask::new(None, &[bad], 10, 8)), "bad_polygon");
        }
    }

    /// Found by the fuzz smoke: a 65536x65312 header in a few bytes made the run's mask
    /// decoder allocate gigabytes before comparing the size with the image's.
    #[test]
    fn a_huge_mask_header_is_refused_before_decoding() {
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            "iVBORw0KGgoAAAANSUhEUgABAAAAAP8gCAAAAABFxmXcAAAAH0lEQVR4nGNgGEaAEcb4j1+agYlYE0cVjioMBSMYAACrCwEeidRBnQAAAABJRU5ErkJggg==",
        )
        .unwrap();
        let err = SourceMask::new(Some(&png), &[], 40, 32).unwrap_err();
        assert!(format!("{err:?}").contains("65536x65312"), "{err:?}");
    }
}
