//! Boxes, the foreground fraction and the resize/crop geometry.
//!
//! # Box convention
//! A box is `[x0, y0, x1, y1]` in original-image pixel-edge coordinates with `x0, y0`
//! inclusive and `x1, y1` exclusive: it covers the pixels whose column `c` satisfies
//! `x0 <= c < x1` (likewise rows). `0 <= x0 < x1 <= width`, `0 <= y0 < y1 <= height`.
//! ImageNet's box numbers are inclusive (`xmax` reaches `width - 1`): `bgstream shard`
//! writes them as `[xmin, ymin, xmax + 1, ymax + 1]`, which satisfies this.
//!
//! # Output space
//! Resize maps the shorter side to `floor(input_size / crop_pct)` (timm) and the longer side to
//! `floor(short * long / short_orig)` (torchvision's rule); the centre crop starts at
//! `round_half_even((resized - input_size) / 2)` (torchvision's `CenterCrop`). An output pixel
//! `u` is foreground for a box when its centre, mapped back to the original image, lies in
//! `[x0, x1)`: `u >= ceil(x0 * rw / w - crop_x - 0.5)` and `u < ceil(x1 * rw / w - crop_x -
//! 0.5)`, evaluated in f64 in exactly that order (the Python reference in `tests/` does the
//! same, so masks are pixel-exact).

use serde::{Deserialize, Serialize};

use crate::error::ItemError;

/// `[x0, y0, x1, y1]`, see the module docs for the convention.
pub type BBox = [f64; 4];

/// Checks boxes against the image size; returns them unchanged when valid.
pub fn validate_boxes(boxes: &[BBox], width: usize, height: usize) -> Result<(), ItemError> {
    if boxes.is_empty() {
        return Err(ItemError::NoBoxes);
    }
    let (w, h) = (width as f64, height as f64);
    for (index, b) in boxes.iter().enumerate() {
        let [x0, y0, x1, y1] = *b;
        let reason = if b.iter().any(|v| !v.is_finite()) {
            Some("not finite".to_string())
        } else if x0 < 0.0 || y0 < 0.0 {
            Some(format!("negative coordinate in {b:?}"))
        } else if x1 <= x0 || y1 <= y0 {
            Some(format!("empty or inverted {b:?}"))
        } else if x1 > w || y1 > h {
            Some(format!("{b:?} extends beyond the {width}x{height} image"))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ItemError::BadBox { index, reason });
        }
    }
    Ok(())
}

/// Area of the union of the boxes divided by the image area (boxes assumed valid).
/// Exact for any number of boxes: coordinate compression over the box edges.
pub fn foreground_fraction(boxes: &[BBox], width: usize, height: usize) -> f64 {
    let mut xs: Vec<f64> = boxes.iter().flat_map(|b| [b[0], b[2]]).collect();
    let mut ys: Vec<f64> = boxes.iter().flat_map(|b| [b[1], b[3]]).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    ys.sort_by(f64::total_cmp);
    ys.dedup();
    let mut area = 0.0;
    for xw in xs.windows(2) {
        for yw in ys.windows(2) {
            let (cx, cy) = ((xw[0] + xw[1]) / 2.0, (yw[0] + yw[1]) / 2.0);
            if boxes
                .iter()
                .any(|b| b[0] <= cx && cx < b[2] && b[1] <= cy && cy < b[3])
            {
                area += (xw[1] - xw[0]) * (yw[1] - yw[0]);
            }
        }
    }
    area / (width as f64 * height as f64)
}

/// Resampling filter of a model's preprocessing (Pillow / timm names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
}

/// One model preprocessing; models with equal `Preprocess` share the resize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    pub input_size: usize,
    pub crop_pct: f64,
    pub interpolation: Interpolation,
}

impl Preprocess {
    /// Target of the shorter side before the centre crop.
    pub fn resize_short(&self) -> usize {
        // timm's eval transform (`math.floor(img_size / crop_pct)`) and torchvision's
        // reference scripts floor it: 224 at crop 0.95 is 235, not 236.
        (self.input_size as f64 / self.crop_pct).floor() as usize
    }

    /// Hashable identity (crop_pct by bits) for grouping models.
    pub fn key(&self) -> (usize, u64, Interpolation) {
        (self.input_size, self.crop_pct.to_bits(), self.interpolation)
    }
}

/// Where the crop sits in the resized image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub src_w: usize,
    pub src_h: usize,
    pub resized_w: usize,
    pub resized_h: usize,
    pub crop_x: usize,
    pub crop_y: usize,
    pub size: usize,
}

/// Integer rectangle in output pixels, `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Rect {
    pub fn is_empty(&self) -> bool {
        self.x0 >= self.x1 || self.y0 >= self.y1
    }
}

impl Geometry {
    pub fn new(src_w: usize, src_h: usize, p: &Preprocess) -> Result<Self, ItemError> {
        let short = p.resize_short();
        let (resized_w, resized_h) = if src_w <= src_h {
            (short, (short as f64 * src_h as f64 / src_w as f64) as usize)
        } else {
            ((short as f64 * src_w as f64 / src_h as f64) as usize, short)
        };
        if resized_w < p.input_size || resized_h < p.input_size {
            return Err(ItemError::TooSmall {
                width: src_w,
                height: src_h,
            });
        }
        let centre = |r: usize| ((r - p.input_size) as f64 / 2.0).round_ties_even() as usize;
        Ok(Geometry {
            src_w,
            src_h,
            resized_w,
            resized_h,
            crop_x: centre(resized_w),
            crop_y: centre(resized_h),
            size: p.input_size,
        })
    }

    /// The crop as a rectangle in source coordinates (for resampling the crop directly).
    pub fn source_crop(&self) -> (f64, f64, f64, f64) {
        let sx = self.src_w as f64 / self.resized_w as f64;
        let sy = self.src_h as f64 / self.resized_h as f64;
        (
            self.crop_x as f64 * sx,
            self.crop_y as f64 * sy,
            self.size as f64 * sx,
            self.size as f64 * sy,
        )
    }

    fn map_edge(&self, v: f64, resized: usize, src: usize, crop: usize) -> usize {
        let u = (v * resized as f64 / src as f64 - crop as f64 - 0.5).ceil();
        u.clamp(0.0, self.size as f64) as usize
    }

    /// Maps a box into output pixels (may be empty if the crop cut it away).
    pub fn map_box(&self, b: &BBox) -> Rect {
        Rect {
            x0: self.map_edge(b[0], self.resized_w, self.src_w, self.crop_x),
            y0: self.map_edge(b[1], self.resized_h, self.src_h, self.crop_y),
            x1: self.map_edge(b[2], self.resized_w, self.src_w, self.crop_x),
            y1: self.map_edge(b[3], self.resized_h, self.src_h, self.crop_y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LITE0: Preprocess = Preprocess {
        input_size: 224,
        crop_pct: 224.0 / 256.0,
        interpolation: Interpolation::Bicubic,
    };

    #[test]
    fn union_counts_overlap_once() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]];
        let f = foreground_fraction(&boxes, 20, 20);
        assert!((f - 175.0 / 400.0).abs() < 1e-12, "{f}");
        assert_eq!(foreground_fraction(&[[0.0, 0.0, 20.0, 20.0]], 20, 20), 1.0);
    }

    #[test]
    fn geometry_follows_torchvision() {
        // 500x375 -> shorter side 256 -> 341x256, crop x = round((341-224)/2) = round(58.5) = 58
        let g = Geometry::new(500, 375, &LITE0).unwrap();
        assert_eq!(
            (g.resized_w, g.resized_h, g.crop_x, g.crop_y),
            (341, 256, 58, 16)
        );
        let g = Geometry::new(375, 500, &LITE0).unwrap();
        assert_eq!(
            (g.resized_w, g.resized_h, g.crop_x, g.crop_y),
            (256, 341, 16, 58)
        );
    }

    #[test]
    fn whole_image_box_covers_whole_crop_and_edges_round_trip() {
        let g = Geometry::new(500, 375, &LITE0).unwrap();
        let r = g.map_box(&[0.0, 0.0, 500.0, 375.0]);
        assert_eq!(
            r,
            Rect {
                x0: 0,
                y0: 0,
                x1: 224,
                y1: 224
            }
        );
        // A box entirely left of the crop maps to nothing.
        assert!(g.map_box(&[0.0, 0.0, 20.0, 375.0]).is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// The closed-form rectangle equals the per-pixel definition: output pixel u is
        /// inside when its centre, mapped back to the original image, is in [x0, x1).
        #[test]
        fn mapped_box_matches_the_pixel_centre_definition(
            w in 8usize..1500, h in 8usize..1500,
            size in 8usize..300, pct in 0.5f64..=1.0,
            fx0 in 0.0f64..1.0, fy0 in 0.0f64..1.0, fw in 0.0f64..1.0, fh in 0.0f64..1.0,
        ) {
            let p = Preprocess { input_size: size, crop_pct: pct, interpolation: Interpolation::Bilinear };
            let g = Geometry::new(w, h, &p).unwrap();
            proptest::prop_assert!(g.crop_x + size <= g.resized_w && g.crop_y + size <= g.resized_h);
            let x0 = (fx0 * w as f64).floor();
            let y0 = (fy0 * h as f64).floor();
            let x1 = (x0 + 1.0 + (fw * (w as f64 - x0 - 1.0)).floor()).min(w as f64);
            let y1 = (y0 + 1.0 + (fh * (h as f64 - y0 - 1.0)).floor()).min(h as f64);
            let r = g.map_box(&[x0, y0, x1, y1]);
            proptest::prop_assert!(r.x1 <= size && r.y1 <= size);
            // (centre of output pixel u in original coordinates, expected inside)
            let centre = |u: usize, crop: usize, resized: usize, src: usize| {
                (u as f64 + crop as f64 + 0.5) * src as f64 / resized as f64
            };
            for u in 0..size {
                let c = centre(u, g.crop_x, g.resized_w, w);
                // Exact ties (a centre on an edge) may round either way in f64.
                if (c - x0).abs() > 1e-9 && (c - x1).abs() > 1e-9 {
                    proptest::prop_assert_eq!((r.x0..r.x1).contains(&u), x0 <= c && c < x1, "column {}", u);
                }
            }
            for v in 0..size {
                let c = centre(v, g.crop_y, g.resized_h, h);
                if (c - y0).abs() > 1e-9 && (c - y1).abs() > 1e-9 {
                    proptest::prop_assert_eq!((r.y0..r.y1).contains(&v), y0 <= c && c < y1, "row {}", v);
                }
            }
        }
    }

    #[test]
    fn box_validation_names_the_problem() {
        assert_eq!(validate_boxes(&[], 10, 10).unwrap_err().code(), "no_boxes");
        for b in [
            [5.0, 0.0, 2.0, 3.0],
            [-1.0, 0.0, 2.0, 3.0],
            [0.0, 0.0, 11.0, 3.0],
            [0.0, 0.0, f64::NAN, 3.0],
        ] {
            assert_eq!(
                validate_boxes(&[b], 10, 10).unwrap_err().code(),
                "bad_box",
                "{b:?}"
            );
        }
        validate_boxes(&[[0.0, 0.0, 10.0, 10.0]], 10, 10).unwrap();
    }
}
