//! Mask files for `bgstream shard`: grayscale PNGs kept as they are, NumPy `.npy` arrays
//! (ImageNet-9's `fg_mask/`) converted to 8-bit PNGs (0 / 255), each with the bounding box
//! of its foreground.

use std::path::Path;

use npyz::{NpyFile, Order, TypeChar};

use crate::ops::geometry::BBox;
use crate::ops::mask::decode_mask_png;

/// A mask ready to be written as `<key>.mask.png`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskFile {
    pub png: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// `[x0, y0, x1, y1]` (exclusive) around the foreground; `None` when it is empty.
    pub bbox: Option<BBox>,
}

/// Reads `path`: `.npy` is converted, anything else must be a grayscale PNG.
pub fn load_mask(path: &Path) -> Result<MaskFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_npy = path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("npy"));
    let (width, height, flags, png) = if is_npy {
        let (w, h, flags) = npy_flags(&bytes)?;
        let png = encode_png(w, h, &flags);
        (w, h, flags, png)
    } else {
        let (w, h, flags) = decode_mask_png(&bytes)?;
        (w, h, flags, bytes)
    };
    Ok(MaskFile {
        png,
        width,
        height,
        bbox: bounding_box(width, &flags),
    })
}

/// The box around the polygons' points (finite ones), clipped to the `width`×`height`
/// image; `None` when nothing of them is inside.
pub fn polygons_bbox(polygons: &[Vec<f64>], width: usize, height: usize) -> Option<BBox> {
    let pts = polygons
        .iter()
        .flat_map(|p| p.chunks_exact(2))
        .filter(|p| p[0].is_finite() && p[1].is_finite());
    let mut b: Option<BBox> = None;
    for p in pts {
        let r = b.get_or_insert([p[0], p[1], p[0], p[1]]);
        *r = [
            r[0].min(p[0]),
            r[1].min(p[1]),
            r[2].max(p[0]),
            r[3].max(p[1]),
        ];
    }
    let [x0, y0, x1, y1] = b?;
    let (w, h) = (width as f64, height as f64);
    let b = [
        x0.clamp(0.0, w),
        y0.clamp(0.0, h),
        x1.clamp(0.0, w),
        y1.clamp(0.0, h),
    ];
    (b[2] > b[0] && b[3] > b[1]).then_some(b)
}

fn bounding_box(width: usize, flags: &[bool]) -> Option<BBox> {
    let mut b: Option<[usize; 4]> = None;
    for (i, _) in flags.iter().enumerate().filter(|(_, f)| **f) {
        let (x, y) = (i % width, i / width);
        let r = b.get_or_insert([x, y, x, y]);
        *r = [r[0].min(x), r[1].min(y), r[2].max(x), r[3].max(y)];
    }
    b.map(|[x0, y0, x1, y1]| [x0 as f64, y0 as f64, x1 as f64 + 1.0, y1 as f64 + 1.0])
}

/// An 8-bit grayscale PNG, 255 on the foreground.
pub fn encode_png(width: usize, height: usize, flags: &[bool]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, width as u32, height as u32);
    e.set_color(png::ColorType::Grayscale);
    e.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = flags.iter().map(|&f| if f { 255 } else { 0 }).collect();
    e.write_header()
        .and_then(|mut w| w.write_image_data(&data))
        .expect("encoding a PNG into memory");
    out
}

/// A boolean or numeric `.npy` array of shape `(H, W)` or `(H, W, C)` (C or Fortran
/// order); nonzero in any channel is foreground.
fn npy_flags(bytes: &[u8]) -> Result<(usize, usize, Vec<bool>), String> {
    let npy = NpyFile::new(bytes).map_err(|e| format!(".npy: {e}"))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let (h, w, c) = match shape[..] {
        [h, w] => (h, w, 1),
        [h, w, c] => (h, w, c),
        _ => return Err(format!(".npy mask has shape {shape:?}, expected (H, W)")),
    };
    if h == 0 || w == 0 || c == 0 {
        return Err(format!(".npy mask has shape {shape:?}"));
    }
    let fortran = npy.order() == Order::Fortran;
    let dtype = npy.dtype();
    let npyz::DType::Plain(ts) = &dtype else {
        return Err(format!(".npy mask has dtype {}", dtype.descr()));
    };
    let err = |e: std::io::Error| format!(".npy: {e}");
    let nonzero: Vec<bool> = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Bool, _) => npy.into_vec::<bool>().map_err(err)?,
        (TypeChar::Uint, 1) => nz(npy.into_vec::<u8>().map_err(err)?),
        (TypeChar::Int, 1) => nz(npy.into_vec::<i8>().map_err(err)?),
        (TypeChar::Uint, 2) => nz(npy.into_vec::<u16>().map_err(err)?),
        (TypeChar::Int, 2) => nz(npy.into_vec::<i16>().map_err(err)?),
        (TypeChar::Uint, 4) => nz(npy.into_vec::<u32>().map_err(err)?),
        (TypeChar::Int, 4) => nz(npy.into_vec::<i32>().map_err(err)?),
        (TypeChar::Uint, 8) => nz(npy.into_vec::<u64>().map_err(err)?),
        (TypeChar::Int, 8) => nz(npy.into_vec::<i64>().map_err(err)?),
        (TypeChar::Float, 4) => nz(npy.into_vec::<f32>().map_err(err)?),
        (TypeChar::Float, 8) => nz(npy.into_vec::<f64>().map_err(err)?),
        _ => return Err(format!(".npy mask has dtype {}", dtype.descr())),
    };
    if nonzero.len() != h * w * c {
        return Err(format!(
            ".npy holds {} values for shape {shape:?}",
            nonzero.len()
        ));
    }
    let at = |y: usize, x: usize, k: usize| {
        if fortran {
            nonzero[y + h * (x + w * k)]
        } else {
            nonzero[(y * w + x) * c + k]
        }
    };
    let flags = (0..h * w)
        .map(|i| (0..c).any(|k| at(i / w, i % w, k)))
        .collect();
    Ok((w, h, flags))
}

fn nz<T: Default + PartialEq>(v: Vec<T>) -> Vec<bool> {
    let zero = T::default();
    v.into_iter().map(|x| x != zero).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.npy` file as NumPy writes it (format 1.0, header padded to 64 bytes).
    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn npy_masks_of_any_order_and_type() {
        // 2 x 3, foreground at (row 0, col 2) and (row 1, col 0).
        let c_order = npy("|b1", false, "(2, 3)", &[0, 0, 1, 1, 0, 0]);
        let (w, h, f) = npy_flags(&c_order).unwrap();
        assert_eq!((w, h), (3, 2));
        assert_eq!(f, [false, false, true, true, false, false]);
        let fortran = npy("|u1", true, "(2, 3)", &[0, 7, 0, 0, 7, 0]);
        assert_eq!(npy_flags(&fortran).unwrap().2, f);
        let f64s: Vec<u8> = [0.0f64, 0.0, 0.5, 2.0, 0.0, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(npy_flags(&npy("<f8", false, "(2, 3)", &f64s)).unwrap().2, f);
        assert!(npy_flags(&npy("|b1", false, "(6,)", &[0; 6])).is_err());
        assert!(npy_flags(b"\x93NUMPY garbage").is_err());
        assert_eq!(bounding_box(3, &f), Some([0.0, 0.0, 3.0, 2.0]));
        assert_eq!(bounding_box(3, &[false; 6]), None);
        let png = encode_png(3, 2, &f);
        assert_eq!(decode_mask_png(&png).unwrap(), (3, 2, f));
        let polys = [
            vec![-5.0, 2.0, 8.5, 1.0, 3.0, 40.0],
            vec![f64::NAN, 0.0, 1.0, 0.5],
        ];
        assert_eq!(polygons_bbox(&polys, 10, 20), Some([0.0, 0.5, 8.5, 20.0]));
        assert_eq!(
            polygons_bbox(&[vec![20.0, 1.0, 30.0, 2.0, 25.0, 9.0]], 10, 20),
            None
        );
    }
}
