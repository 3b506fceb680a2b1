//! Mask files for `bgstream shard`: grayscale PNGs kept as they are, NumPy `.npy` arrays
//! (ImageNet-9's `fg_mask/`) converted to 8-bit PNGs (0 / 255), each with the bounding box
//! of its foreground.
//!
//! Bounds: a file is read through [`limits::MASK_FILE`]; a PNG's header and an `.npy`'s
//! shape are checked against [`limits::MASK_PIXELS`] (and the `.npy` data against its file's
//! length) before anything of that size is allocated. The `.npy` header is parsed here (a
//! Python dict literal), with checked arithmetic, rather than by a crate whose shape
//! product overflows on `(2**62, 2**62)`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::limits::{self, OverLimit};
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

/// Reads `path`: `.npy` is converted, anything else must be a grayscale PNG. The error
/// names the file.
pub fn load_mask(path: &Path) -> Result<MaskFile, String> {
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let bytes = std::fs::File::open(path)
        .and_then(|f| limits::read_all(f, limits::MASK_FILE))
        .map_err(|e| named(&e))?;
    let is_npy = path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("npy"));
    if is_npy {
        mask_from_npy(&bytes).map_err(|e| named(&e))
    } else {
        mask_from_png(bytes).map_err(|e| named(&e))
    }
}

/// A `.npy` mask (see [`npy_flags`]) as a PNG.
pub fn mask_from_npy(bytes: &[u8]) -> Result<MaskFile, String> {
    let pixels = npy_header(bytes).ok().and_then(|(header, _)| {
        let mut sides = header.shape.iter().take(2);
        sides.next()?.checked_mul(*sides.next()?)
    });
    let _turn = pixels.and_then(big_mask_turn);
    let (width, height, flags) = npy_flags(bytes)?;
    Ok(MaskFile {
        png: try_encode_png(width, height, &flags)?,
        width,
        height,
        bbox: bounding_box(width, &flags),
    })
}

/// A grayscale PNG mask, kept as it is; its size (from the IHDR chunk, which PNG puts
/// first) is checked before it is decoded.
pub fn mask_from_png(png: Vec<u8>) -> Result<MaskFile, String> {
    let _turn = match png_size(&png) {
        Some((w, h)) => big_mask_turn(check_pixels(w, h, "mask PNG")?),
        None => None,
    };
    let (width, height, flags) = decode_mask_png(&png)?;
    Ok(MaskFile {
        bbox: bounding_box(width, &flags),
        png,
        width,
        height,
    })
}

/// The width and height of a PNG's IHDR; `None` when it does not start like a PNG (the
/// decoder then says why).
fn png_size(png: &[u8]) -> Option<(u64, u64)> {
    let be = |at: usize| -> Option<u64> {
        let b: [u8; 4] = png.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_be_bytes(b).into())
    };
    (png.get(..8)? == b"\x89PNG\r\n\x1a\n" && png.get(12..16)? == b"IHDR").then_some(())?;
    Some((be(16)?, be(20)?))
}

/// Masks over this many pixels are converted one at a time (a lock), so that the reader
/// threads together hold at most one mask of up to [`limits::MASK_PIXELS`] (about 0.5 GB
/// decoded as 16-bit gray and alpha) and smaller ones beside it. ImageNet's largest
/// validation image is 18.2 MP (3646x5005).
const BIG_MASK_PIXELS: u64 = 20_000_000;

static BIG_MASKS: Mutex<()> = Mutex::new(());

/// The big-mask lock, held while a mask of `pixels` is decoded; none for smaller masks.
fn big_mask_turn(pixels: u64) -> Option<MutexGuard<'static, ()>> {
    (pixels > BIG_MASK_PIXELS).then(|| BIG_MASKS.lock().unwrap_or_else(PoisonError::into_inner))
}

/// `width x height` within [`limits::MASK_PIXELS`] (checked: the sides come from a file).
fn check_pixels(width: u64, height: u64, what: &str) -> Result<u64, String> {
    let over = |n: String| {
        format!(
            "{what} is {width}x{height} ({n} pixels), {}",
            OverLimit(limits::MASK_PIXELS)
        )
    };
    let n = width
        .checked_mul(height)
        .ok_or_else(|| over("more than 2^64".into()))?;
    limits::MASK_PIXELS
        .check(n)
        .map_err(|_| over(n.to_string()))?;
    Ok(n)
}

/// The box around the polygons' points (finite ones), clipped to the `width`×`height`
/// image; `None` when nothing of them is inside.
pub fn polygons_bbox(polygons: &[Vec<f64>], width: usize, height: usize) -> Option<BBox> {
    let pts = polygons
        .iter()
        .flat_map(|p| p.chunks_exact(2))
        .filter_map(|p| match *p {
            [x, y] if x.is_finite() && y.is_finite() => Some((x, y)),
            _ => None,
        });
    let mut b: Option<BBox> = None;
    for (x, y) in pts {
        let r = b.get_or_insert([x, y, x, y]);
        *r = [r[0].min(x), r[1].min(y), r[2].max(x), r[3].max(y)];
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

/// The box around the `true`s of a row-major `width`-wide grid.
fn bounding_box(width: usize, flags: &[bool]) -> Option<BBox> {
    let mut b: Option<[usize; 4]> = None;
    for (y, row) in flags.chunks(width.max(1)).enumerate() {
        let (Some(x0), Some(x1)) = (row.iter().position(|&f| f), row.iter().rposition(|&f| f))
        else {
            continue;
        };
        let r = b.get_or_insert([x0, y, x1, y]);
        *r = [r[0].min(x0), r[1], r[2].max(x1), y];
    }
    b.map(|[x0, y0, x1, y1]| [x0 as f64, y0 as f64, x1 as f64 + 1.0, y1 as f64 + 1.0])
}

/// An 8-bit grayscale PNG, 255 on the foreground, for sizes the caller chose (benches,
/// tests). Panics where PNG cannot hold the size; input goes through [`try_encode_png`].
#[allow(clippy::expect_used)] // not reachable from input: see above
pub fn encode_png(width: usize, height: usize, flags: &[bool]) -> Vec<u8> {
    try_encode_png(width, height, flags).expect("a size PNG can hold")
}

/// An 8-bit grayscale PNG, 255 on the foreground.
pub fn try_encode_png(width: usize, height: usize, flags: &[bool]) -> Result<Vec<u8>, String> {
    let side = |n: usize| u32::try_from(n).map_err(|_| format!("a side of {n} pixels"));
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, side(width)?, side(height)?);
    e.set_color(png::ColorType::Grayscale);
    e.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = flags.iter().map(|&f| if f { 255 } else { 0 }).collect();
    e.write_header()
        .and_then(|mut w| w.write_image_data(&data))
        .map_err(|e| format!("encoding the mask PNG: {e}"))?;
    Ok(out)
}

/// What an `.npy` header says.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    /// The dtype string, e.g. `<f8`, `|b1`.
    descr: String,
    fortran: bool,
    shape: Vec<u64>,
}

/// A boolean or numeric `.npy` array of shape `(H, W)` or `(H, W, C)` (C or Fortran
/// order); nonzero in any channel is foreground. The shape is checked against
/// [`limits::MASK_PIXELS`] and [`limits::NPY_VALUES`], and the data's length against it,
/// before the mask is allocated.
pub fn npy_flags(bytes: &[u8]) -> Result<(usize, usize, Vec<bool>), String> {
    let (header, data) = npy_header(bytes)?;
    let shape = &header.shape;
    let (h, w, c) = match *shape.as_slice() {
        [h, w] => (h, w, 1),
        [h, w, c] => (h, w, c),
        _ => return Err(format!(".npy mask has shape {shape:?}, expected (H, W)")),
    };
    if h == 0 || w == 0 || c == 0 {
        return Err(format!(".npy mask has shape {shape:?}"));
    }
    let pixels = check_pixels(w, h, ".npy mask")?;
    let values = pixels
        .checked_mul(c)
        .filter(|&n| limits::NPY_VALUES.check(n).is_ok())
        .ok_or_else(|| {
            format!(
                ".npy mask shape {shape:?}: {}",
                OverLimit(limits::NPY_VALUES)
            )
        })?;
    let (item, nonzero) = dtype(&header.descr)?;
    let need = values.saturating_mul(item as u64);
    if (data.len() as u64) < need {
        return Err(format!(
            ".npy data is {} bytes, its shape {shape:?} of {} needs {need}",
            data.len(),
            header.descr
        ));
    }
    // Within MASK_PIXELS and NPY_VALUES (checked above): these fit usize.
    let to_usize = |n: u64| usize::try_from(n).map_err(|_| format!(".npy size {n}"));
    let (h, w, c) = (to_usize(h)?, to_usize(w)?, to_usize(c)?);
    let mut flags = vec![false; to_usize(pixels)?];
    let items = data.chunks_exact(item);
    if header.fortran {
        // Item i is (y, x, k) with i = y + h * (x + w * k): rows run fastest.
        for (i, v) in items.enumerate() {
            if nonzero(v) {
                set(&mut flags, fortran_pixel(i, h, w));
            }
        }
    } else {
        // Item i is (y, x, k) with i = (y * w + x) * c + k: pixel i / c.
        for (i, v) in items.enumerate() {
            if nonzero(v) {
                set(&mut flags, i.checked_div(c));
            }
        }
    }
    Ok((w, h, flags))
}

/// The row-major pixel of item `i` of a Fortran-order `(h, w, c)` array.
fn fortran_pixel(i: usize, h: usize, w: usize) -> Option<usize> {
    let (y, rest) = (i.checked_rem(h)?, i.checked_div(h)?);
    let x = rest.checked_rem(w)?;
    y.checked_mul(w)?.checked_add(x)
}

fn set(flags: &mut [bool], pixel: Option<usize>) {
    if let Some(f) = pixel.and_then(|p| flags.get_mut(p)) {
        *f = true;
    }
}

/// The header of an `.npy` file (format 1.0, 2.0 or 3.0) and its data.
fn npy_header(bytes: &[u8]) -> Result<(NpyHeader, &[u8]), String> {
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or(".npy: no \\x93NUMPY magic")?;
    let (len, at) = match rest {
        [1, _, a, b, ..] => (usize::from(u16::from_le_bytes([*a, *b])), 10usize),
        [2 | 3, _, a, b, c, d, ..] => {
            let n = u32::from_le_bytes([*a, *b, *c, *d]);
            (usize::try_from(n).map_err(|_| ".npy: header length")?, 12)
        }
        [v, ..] => return Err(format!(".npy: format version {v}")),
        [] => return Err(".npy: cut short".into()),
    };
    let end = at.checked_add(len).ok_or(".npy: header length")?;
    let text = bytes
        .get(at..end)
        .ok_or_else(|| format!(".npy: header of {len} bytes, the file ends before"))?;
    let data = bytes.get(end..).unwrap_or_default();
    let text = std::str::from_utf8(text).map_err(|_| ".npy: header is not text")?;
    Ok((parse_header_dict(text)?, data))
}

/// `{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }`, as NumPy writes it.
fn parse_header_dict(text: &str) -> Result<NpyHeader, String> {
    let bad = |why: &str| format!(".npy header {:?}: {why}", text.trim_end());
    let body = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| bad("not a dict"))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let (key, after) = quoted(rest).ok_or_else(|| bad("a key is not a string"))?;
        let after = after
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(|| bad("no ':' after a key"))?
            .trim_start();
        let after = match key {
            "descr" => {
                let (d, after) = quoted(after).ok_or_else(|| {
                    bad("descr is not a string (structured dtypes are not masks)")
                })?;
                descr = Some(d.to_string());
                after
            }
            "fortran_order" => {
                let (b, after) = match after.strip_prefix("True") {
                    Some(a) => (true, a),
                    None => (
                        false,
                        after
                            .strip_prefix("False")
                            .ok_or_else(|| bad("fortran_order is not True or False"))?,
                    ),
                };
                fortran = Some(b);
                after
            }
            "shape" => {
                let (s, after) =
                    tuple(after).ok_or_else(|| bad("shape is not a tuple of whole numbers"))?;
                shape = Some(s);
                after
            }
            _ => return Err(bad("unknown key")),
        };
        let after = after.trim_start();
        rest = after.strip_prefix(',').unwrap_or(after).trim_start();
        if rest.len() == after.len() && !rest.is_empty() {
            return Err(bad("no ',' between entries"));
        }
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran), Some(shape)) => Ok(NpyHeader {
            descr,
            fortran,
            shape,
        }),
        _ => Err(bad("descr, fortran_order or shape is missing")),
    }
}

/// A `'...'` or `"..."` string at the start of `s`, and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = s.get(1..)?;
    let end = body.find(q)?;
    Some((body.get(..end)?, body.get(end.checked_add(1)?..)?))
}

/// A tuple of whole numbers `(2, 3)`, `(6,)`, `()` at the start of `s`, and what follows.
fn tuple(s: &str) -> Option<(Vec<u64>, &str)> {
    let body = s.strip_prefix('(')?;
    let end = body.find(')')?;
    let numbers = body
        .get(..end)?
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.strip_suffix('L').unwrap_or(t).parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some((numbers, body.get(end.checked_add(1)?..)?))
}

/// Whether one item's bytes are a nonzero value.
type IsNonzero = fn(&[u8]) -> bool;

/// A dtype's item size and its nonzero test. Nonzero is any set bit, but a float's sign
/// bit (so that -0.0 is zero, and NaN is foreground as in NumPy's `!= 0`).
fn dtype(descr: &str) -> Result<(usize, IsNonzero), String> {
    let unsupported = || format!(".npy mask has dtype {descr:?}, not bool, int, uint or float");
    let (order, rest) = match descr.chars().next() {
        Some(o @ ('<' | '>' | '|' | '=')) => (o, descr.get(1..).unwrap_or_default()),
        _ => ('=', descr),
    };
    let big = order == '>' || (order == '=' && cfg!(target_endian = "big"));
    let kind = rest.chars().next().ok_or_else(unsupported)?;
    let size: usize = rest
        .get(1..)
        .unwrap_or_default()
        .parse()
        .map_err(|_| unsupported())?;
    fn any(v: &[u8]) -> bool {
        v.iter().any(|&b| b != 0)
    }
    fn float_le(v: &[u8]) -> bool {
        match v.split_last() {
            Some((top, low)) => top & 0x7F != 0 || any(low),
            None => false,
        }
    }
    fn float_be(v: &[u8]) -> bool {
        match v.split_first() {
            Some((top, low)) => top & 0x7F != 0 || any(low),
            None => false,
        }
    }
    match (kind, size) {
        ('b' | '?', 1) | ('i' | 'u', 1 | 2 | 4 | 8) => Ok((size, any)),
        ('f', 2 | 4 | 8) if big => Ok((size, float_be)),
        ('f', 2 | 4 | 8) => Ok((size, float_le)),
        _ => Err(unsupported()),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
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
    fn big_masks_take_their_turn_and_convert() {
        // 5000 x 4001 (over BIG_MASK_PIXELS), one foreground pixel; two at once.
        let (h, w) = (5000usize, 4001usize);
        let mut data = vec![0u8; h * w];
        data[1234 * w + 77] = 1;
        let file = npy("|u1", false, &format!("({h}, {w})"), &data);
        let masks: Vec<MaskFile> = std::thread::scope(|s| {
            let a = s.spawn(|| mask_from_npy(&file).unwrap());
            let b = s.spawn(|| mask_from_npy(&file).unwrap());
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        for m in masks {
            assert_eq!((m.width, m.height), (w, h));
            assert_eq!(m.bbox, Some([77.0, 1234.0, 78.0, 1235.0]));
        }
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
