//! The numeric arrays of a MATLAB v5 `.mat` file (what Caltech101's annotations hold), read
//! within [`limits::MAT_FILE`]: compressed (`miCOMPRESSED`, MATLAB's `-v7` default) elements
//! are inflated through that limit, counted together with the file, so a zlib bomb stops
//! at 1 MiB. Every size and offset in the file is checked before it is used.
//!
//! Layout (MathWorks, "MAT-File Format", v5): a 128-byte header ending in the version
//! (`0x0100`) and the endian indicator `IM` (little-endian) or `MI`; then data elements, each
//! an 8-byte tag (type, byte count) and its data padded to 8 bytes, or a "small" element
//! (type and count in one 4-byte word, data in the next 4). A numeric array is an
//! `miMATRIX` of subelements: array flags (class), dimensions, name, real part (stored in
//! any integer or float type, whatever the class), and an imaginary part (ignored).
//! Cell, struct, object, char and sparse arrays are skipped.

use std::io::Read;

use super::limits::{self, OverLimit};

/// One numeric array.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    pub name: String,
    pub dims: Vec<usize>,
    /// Column-major, as f64 whatever the stored type.
    pub values: Vec<f64>,
}

const MI_INT8: u32 = 1;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
/// Array classes 6 (double) to 15 (uint64) are numeric.
const NUMERIC_CLASSES: std::ops::RangeInclusive<u32> = 6..=15;
const HEADER: usize = 128;

#[derive(Clone, Copy)]
struct Endian {
    big: bool,
}

impl Endian {
    fn u32(self, b: &[u8], at: usize) -> Result<u32, String> {
        let end = at.checked_add(4).ok_or("offset overflow")?;
        let bytes: [u8; 4] = b
            .get(at..end)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("cut short at byte {at}"))?;
        Ok(self.word(bytes))
    }

    fn word(self, bytes: [u8; 4]) -> u32 {
        if self.big {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    }
}

/// One data element: its type, its data, and where the next one starts.
struct Element<'a> {
    kind: u32,
    data: &'a [u8],
    /// Past the data padded to 8 bytes, as every element but the top-level compressed ones
    /// (which MATLAB writes back to back) is.
    next: usize,
    /// Right past the data.
    end: usize,
}

/// The element at `at` of `b`.
fn element(b: &[u8], at: usize, e: Endian) -> Result<Element<'_>, String> {
    let first = e.u32(b, at)?;
    let small_size = first >> 16;
    let (kind, size, start) = if small_size != 0 {
        if small_size > 4 {
            return Err(format!(
                "element at byte {at}: small element of {small_size} bytes"
            ));
        }
        (first & 0xFFFF, small_size, at.checked_add(4))
    } else {
        (
            first,
            e.u32(b, at.checked_add(4).ok_or("offset overflow")?)?,
            at.checked_add(8),
        )
    };
    let start = start.ok_or("offset overflow")?;
    let size = usize::try_from(size).map_err(|_| "size overflow")?;
    let end = start.checked_add(size).ok_or("size overflow")?;
    let data = b.get(start..end).ok_or_else(|| {
        format!("element at byte {at} declares {size} bytes, the file ends before")
    })?;
    let next = if small_size != 0 {
        start.checked_add(4)
    } else {
        size.checked_next_multiple_of(8)
            .and_then(|padded| start.checked_add(padded))
    }
    .ok_or("offset overflow")?;
    Ok(Element {
        kind,
        data,
        next,
        end,
    })
}

/// The numeric arrays of a `.mat` file of at most [`limits::MAT_FILE`] bytes.
pub fn parse_mat(bytes: &[u8]) -> Result<Vec<MatArray>, String> {
    limits::MAT_FILE
        .check(bytes.len() as u64)
        .map_err(|e| e.to_string())?;
    let header = bytes
        .get(..HEADER)
        .ok_or("not a MAT file: shorter than its header")?;
    if header.starts_with(b"MATLAB 7.3") || bytes.get(512..520) == Some(b"\x89HDF\r\n\x1a\n") {
        return Err("a MATLAB 7.3 (HDF5) file; save it with -v7 or -v6".into());
    }
    let e = match header.get(126..128) {
        Some(b"IM") => Endian { big: false },
        Some(b"MI") => Endian { big: true },
        _ => return Err("not a MAT v5 file (no IM/MI endian indicator)".into()),
    };
    let version = match header.get(124..126) {
        Some(&[a, b]) if e.big => u16::from_be_bytes([a, b]),
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => 0,
    };
    if version != 0x0100 {
        return Err(format!("MAT version {version:#06x}, expected 0x0100"));
    }
    let mut inflated = bytes.len() as u64;
    let mut arrays = Vec::new();
    let mut at = HEADER;
    while at < bytes.len() {
        let el = element(bytes, at, e)?;
        match el.kind {
            MI_MATRIX => arrays.extend(matrix(el.data, e)?),
            MI_COMPRESSED => {
                let data = inflate(el.data, &mut inflated)?;
                let mut inner = 0;
                while inner < data.len() {
                    let el = element(&data, inner, e)?;
                    if el.kind == MI_MATRIX {
                        arrays.extend(matrix(el.data, e)?);
                    }
                    inner = el.next;
                }
            }
            _ => {}
        }
        at = if el.kind == MI_COMPRESSED {
            el.end
        } else {
            el.next
        };
    }
    Ok(arrays)
}

/// A zlib stream inflated within what is left of [`limits::MAT_FILE`] (`used` so far).
fn inflate(data: &[u8], used: &mut u64) -> Result<Vec<u8>, String> {
    let left = limits::MAT_FILE.max.saturating_sub(*used);
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(left.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("compressed element: {e}"))?;
    *used = used.saturating_add(out.len() as u64);
    if *used > limits::MAT_FILE.max {
        return Err(format!("inflating: {}", OverLimit(limits::MAT_FILE)));
    }
    Ok(out)
}

/// An `miMATRIX`'s data: `Some` for a numeric array, `None` for another class.
fn matrix(b: &[u8], e: Endian) -> Result<Option<MatArray>, String> {
    let flags = element(b, 0, e)?;
    if flags.kind != MI_UINT32 {
        return Err("array flags are not uint32".into());
    }
    let class = e.u32(flags.data, 0)? & 0xFF;
    if !NUMERIC_CLASSES.contains(&class) {
        return Ok(None);
    }
    let dims_el = element(b, flags.next, e)?;
    if dims_el.kind != MI_INT32 {
        return Err("dimensions are not int32".into());
    }
    let dims = dims_el
        .data
        .chunks_exact(4)
        .filter_map(|c| c.try_into().ok())
        .map(|c| {
            let d = e.word(c) as i32;
            usize::try_from(d).map_err(|_| format!("dimension {d} is negative"))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let name_el = element(b, dims_el.next, e)?;
    if name_el.kind != MI_INT8 {
        return Err("array name is not int8".into());
    }
    let name = String::from_utf8_lossy(name_el.data).into_owned();
    let real = element(b, name_el.next, e)?;
    let values = numbers(real.kind, real.data, e).map_err(|r| format!("{name}: {r}"))?;
    let n = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("{name}: dimensions {dims:?} overflow"))?;
    if values.len() != n {
        return Err(format!(
            "{name}: {} values for dimensions {dims:?}",
            values.len()
        ));
    }
    Ok(Some(MatArray { name, dims, values }))
}

/// Numbers stored as `kind` (miINT8 ... miUINT64), as f64.
fn numbers(kind: u32, b: &[u8], e: Endian) -> Result<Vec<f64>, String> {
    fn each<const N: usize>(b: &[u8], f: impl Fn([u8; N]) -> f64) -> Result<Vec<f64>, String> {
        let items = b.chunks_exact(N);
        if !items.remainder().is_empty() {
            return Err(format!(
                "{} bytes are not a whole number of {N}-byte values",
                b.len()
            ));
        }
        Ok(items.filter_map(|c| c.try_into().ok()).map(f).collect())
    }
    let big = e.big;
    macro_rules! num {
        ($t:ty) => {
            each(b, |x| {
                (if big {
                    <$t>::from_be_bytes(x)
                } else {
                    <$t>::from_le_bytes(x)
                }) as f64
            })
        };
    }
    match kind {
        1 => num!(i8),
        2 => num!(u8),
        3 => num!(i16),
        4 => num!(u16),
        5 => num!(i32),
        6 => num!(u32),
        7 => num!(f32),
        9 => num!(f64),
        12 => num!(i64),
        13 => num!(u64),
        k => Err(format!("values of type {k}, not a number type")),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A tag and its data padded to 8 bytes, little-endian.
    fn el(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_le_bytes().to_vec();
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out.resize(out.len().next_multiple_of(8), 0);
        out
    }

    /// An miMATRIX of class double: `dims`, `name`, `values` stored as f64.
    pub(crate) fn double_matrix(name: &str, dims: &[i32], values: &[f64]) -> Vec<u8> {
        let mut m = el(MI_UINT32, &[6, 0, 0, 0, 0, 0, 0, 0]);
        m.extend(el(
            MI_INT32,
            &dims
                .iter()
                .flat_map(|d| d.to_le_bytes())
                .collect::<Vec<_>>(),
        ));
        m.extend(el(MI_INT8, name.as_bytes()));
        m.extend(el(
            9,
            &values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        ));
        el(MI_MATRIX, &m)
    }

    pub(crate) fn header() -> Vec<u8> {
        let mut h = b"MATLAB 5.0 MAT-file, written by a test".to_vec();
        h.resize(124, b' ');
        h.extend([0x00, 0x01]);
        h.extend(b"IM");
        h
    }

    /// An element compressed as MATLAB -v7 does.
    pub(crate) fn compressed(element: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(element).unwrap();
        let z = z.finish().unwrap();
        let mut out = MI_COMPRESSED.to_le_bytes().to_vec();
        out.extend((z.len() as u32).to_le_bytes());
        out.extend(z);
        out
    }

    #[test]
    fn numeric_arrays_plain_and_compressed() {
        let mut file = header();
        file.extend(double_matrix(
            "box_coord",
            &[1, 4],
            &[8.0, 100.0, 4.0, 90.0],
        ));
        file.extend(compressed(&double_matrix(
            "obj_contour",
            &[2, 3],
            &[0.0, 0.0, 9.0, 0.0, 0.0, 9.0],
        )));
        let a = parse_mat(&file).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].name.as_str(), a[0].dims.as_slice()),
            ("box_coord", &[1, 4][..])
        );
        assert_eq!(a[0].values, [8.0, 100.0, 4.0, 90.0]);
        assert_eq!(a[1].values[2], 9.0);
    }

    #[test]
    fn lies_and_bombs_are_errors() {
        let mut file = header();
        file.extend(double_matrix("x", &[2, 3], &[1.0, 2.0]));
        assert!(parse_mat(&file)
            .unwrap_err()
            .contains("2 values for dimensions [2, 3]"));
        let mut file = header();
        file.extend(double_matrix("x", &[i32::MAX, i32::MAX, i32::MAX], &[]));
        let e = parse_mat(&file).unwrap_err();
        assert!(e.contains("overflow") || e.contains("values"), "{e}");
        let mut file = header();
        file.extend(double_matrix("x", &[-1, 2], &[]));
        assert!(parse_mat(&file).unwrap_err().contains("negative"));
        // A tag that claims more than the file holds.
        let mut file = header();
        file.extend(MI_MATRIX.to_le_bytes());
        file.extend(u32::MAX.to_le_bytes());
        assert!(parse_mat(&file)
            .unwrap_err()
            .contains("the file ends before"));
        // 8 MiB of zeros in a compressed element: stops at the limit.
        let mut file = header();
        file.extend(compressed(&double_matrix(
            "x",
            &[1, 1 << 20],
            &vec![0.0; 1 << 20],
        )));
        let e = parse_mat(&file).unwrap_err();
        assert!(e.contains("MAT_FILE_LIMIT"), "{e}");
        assert!(parse_mat(b"MATLAB 7.3 MAT-file")
            .unwrap_err()
            .contains("shorter"));
        assert!(parse_mat(&[0; 200]).unwrap_err().contains("endian"));
    }
}
