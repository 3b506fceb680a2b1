//! JPEG (zune-jpeg) and PNG (zune-png) decoding to RGB8 into reused buffers.
//!
//! Grayscale, CMYK and YCCK JPEGs come out as RGB: zune-jpeg converts when asked for an
//! RGB output colour space. The format is sniffed from the bytes, not the member name.

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;
use zune_png::PngDecoder;

use crate::error::ItemError;

/// Limits applied before any pixel is decoded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest `width * height` accepted (decompression-bomb guard).
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // 100 MP: far above any ImageNet image (the largest validation image is ~ 9 MP).
        Limits {
            max_pixels: 100_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

/// Sniffs the container from magic bytes.
pub fn sniff(bytes: &[u8]) -> Result<Format, ItemError> {
    match bytes {
        [] => Err(ItemError::Decode("zero-length image".into())),
        [0xFF, 0xD8, ..] => Ok(Format::Jpeg),
        [0x89, b'P', b'N', b'G', ..] => Ok(Format::Png),
        [b'G', b'I', b'F', ..] => Err(ItemError::UnsupportedFormat("GIF".into())),
        [b'R', b'I', b'F', b'F', ..] => Err(ItemError::UnsupportedFormat("RIFF/WebP".into())),
        [b'B', b'M', ..] => Err(ItemError::UnsupportedFormat("BMP".into())),
        _ => Err(ItemError::UnsupportedFormat(
            "not a JPEG or PNG (unknown magic bytes)".into(),
        )),
    }
}

fn options(limits: &Limits) -> DecoderOptions {
    // zune refuses sides above these before allocating; the product is checked below.
    let side = limits.max_pixels.min(1 << 24) as usize;
    DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(side)
        .set_max_height(side)
        .png_set_strip_to_8bit(true)
}

fn check_size(width: usize, height: usize, limits: &Limits) -> Result<(), ItemError> {
    if width == 0 || height == 0 {
        return Err(ItemError::Decode(format!("empty image {width}x{height}")));
    }
    if (width as u64) * (height as u64) > limits.max_pixels {
        return Err(ItemError::TooLarge {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

/// Reads only the headers: `(width, height)`. Cheap; used by the foreground filter so that
/// filtered images are never decoded.
pub fn dimensions(bytes: &[u8], limits: &Limits) -> Result<(usize, usize), ItemError> {
    let (w, h) = match sniff(bytes)? {
        Format::Jpeg => {
            let mut d = JpegDecoder::new_with_options(ZCursor::new(bytes), options(limits));
            d.decode_headers().map_err(|e| jpeg_err(bytes, e))?;
            let info = d
                .info()
                .ok_or_else(|| ItemError::Decode("no JPEG header".into()))?;
            (info.width as usize, info.height as usize)
        }
        Format::Png => {
            let mut d = PngDecoder::new_with_options(ZCursor::new(bytes), options(limits));
            d.decode_headers().map_err(png_err)?;
            d.dimensions()
                .ok_or_else(|| ItemError::Decode("no PNG header".into()))?
        }
    };
    check_size(w, h, limits)?;
    Ok((w, h))
}

/// Decodes `bytes` into `out` (resized to fit, capacity reused) as packed RGB8.
pub fn decode_into(
    bytes: &[u8],
    out: &mut Vec<u8>,
    limits: &Limits,
) -> Result<(usize, usize), ItemError> {
    match sniff(bytes)? {
        Format::Jpeg => decode_jpeg(bytes, out, limits),
        Format::Png => decode_png(bytes, out, limits),
    }
}

/// The frame header of a JPEG: `(SOF index n of marker 0xFFC0+n, sample precision)`, found
/// by walking the marker segments. Used to name what zune-jpeg cannot decode (arithmetic
/// coding, lossless, 12/16-bit) instead of reporting it as corruption.
pub fn jpeg_frame(bytes: &[u8]) -> Option<(u8, u8)> {
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return Some((marker - 0xC0, *bytes.get(i + 4)?));
        }
        if marker == 0xDA {
            return None; // scan data before any frame header
        }
        i += 2 + len;
    }
    None
}

fn jpeg_err(bytes: &[u8], e: zune_jpeg::errors::DecodeErrors) -> ItemError {
    let unsupported = |what: &str| ItemError::UnsupportedFormat(format!("JPEG: {what} ({e})"));
    match jpeg_frame(bytes) {
        Some((n @ (9..=11 | 13..=15), _)) => unsupported(&format!("arithmetic coding (SOF{n})")),
        Some((n @ (3 | 5..=7), _)) => {
            unsupported(&format!("lossless or hierarchical coding (SOF{n})"))
        }
        Some((_, p)) if p != 8 => unsupported(&format!("{p}-bit samples")),
        _ if matches!(e, zune_jpeg::errors::DecodeErrors::Unsupported(_)) => {
            unsupported("unsupported coding")
        }
        _ => ItemError::Decode(format!("JPEG: {e}")),
    }
}

fn png_err(e: zune_png::error::PngDecodeErrors) -> ItemError {
    ItemError::Decode(format!("PNG: {e:?}"))
}

/// zune-jpeg's lenient mode fills a scan that ends early with grey and reports success,
/// which would turn a truncated file into an `ok` row. So a JPEG must end its scan data
/// with an end-of-image marker, and is decoded strictly first; when strict decoding fails
/// for any other reason than a premature end (a harmless quirk), the lenient result is kept.
fn decode_jpeg(
    bytes: &[u8],
    out: &mut Vec<u8>,
    limits: &Limits,
) -> Result<(usize, usize), ItemError> {
    if !jpeg_has_end(bytes) {
        // Headers first: a file cut inside them is reported as what it is.
        dimensions(bytes, limits)?;
        return Err(ItemError::Decode(
            "truncated JPEG: no end-of-image marker after the scan data".into(),
        ));
    }
    let strict = match decode_jpeg_with(bytes, out, limits, true) {
        Ok(dims) => return Ok(dims),
        Err(e) => e,
    };
    if strict
        .to_string()
        .to_ascii_lowercase()
        .contains("premature")
    {
        return Err(ItemError::Decode(format!("truncated JPEG ({strict})")));
    }
    decode_jpeg_with(bytes, out, limits, false)
}

/// Whether an end-of-image marker (0xFFD9) follows the first scan header of the main image.
/// Entropy-coded data escapes every 0xFF, so a marker there is real; the segments before
/// the scan are walked by their lengths, so an embedded EXIF thumbnail does not count.
pub fn jpeg_has_end(bytes: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        match bytes[i + 1] {
            0xFF => i += 1,
            // From the end: the marker is almost always the last two bytes.
            0xDA => return bytes[i..].windows(2).rev().any(|w| w == [0xFF, 0xD9]),
            _ => i += 2 + u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize,
        }
    }
    false
}

fn decode_jpeg_with(
    bytes: &[u8],
    out: &mut Vec<u8>,
    limits: &Limits,
    strict: bool,
) -> Result<(usize, usize), ItemError> {
    let options = options(limits).set_strict_mode(strict);
    let mut d = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    d.decode_headers().map_err(|e| jpeg_err(bytes, e))?;
    let info = d
        .info()
        .ok_or_else(|| ItemError::Decode("no JPEG header".into()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    check_size(w, h, limits)?;
    let size = d
        .output_buffer_size()
        .ok_or_else(|| ItemError::Decode("no JPEG output size".into()))?;
    if size != w * h * 3 {
        return Err(ItemError::UnsupportedFormat(format!(
            "JPEG output is {size} bytes, not RGB8 for {w}x{h} ({:?})",
            d.output_colorspace()
        )));
    }
    out.resize(size, 0);
    d.decode_into(out).map_err(|e| jpeg_err(bytes, e))?;
    Ok((w, h))
}

fn decode_png(
    bytes: &[u8],
    out: &mut Vec<u8>,
    limits: &Limits,
) -> Result<(usize, usize), ItemError> {
    let mut d = PngDecoder::new_with_options(ZCursor::new(bytes), options(limits));
    d.decode_headers().map_err(png_err)?;
    let (w, h) = d
        .dimensions()
        .ok_or_else(|| ItemError::Decode("no PNG header".into()))?;
    check_size(w, h, limits)?;
    let colorspace = d
        .colorspace()
        .ok_or_else(|| ItemError::Decode("no PNG colour space".into()))?;
    let raw = d.decode_raw().map_err(png_err)?;
    let channels = colorspace.num_components();
    if raw.len() != w * h * channels {
        return Err(ItemError::Decode(format!(
            "PNG gave {} bytes for {w}x{h}x{channels}",
            raw.len()
        )));
    }
    out.clear();
    out.reserve(w * h * 3);
    match channels {
        3 => out.extend_from_slice(&raw),
        // Alpha is dropped, not composited: ImageNet-style inputs have none.
        4 => raw
            .chunks_exact(4)
            .for_each(|p| out.extend_from_slice(&p[..3])),
        1 => raw.iter().for_each(|&v| out.extend_from_slice(&[v, v, v])),
        2 => raw
            .chunks_exact(2)
            .for_each(|p| out.extend_from_slice(&[p[0], p[0], p[0]])),
        n => {
            return Err(ItemError::UnsupportedFormat(format!(
                "PNG with {n} channels"
            )))
        }
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_rejects_empty_and_unknown() {
        assert_eq!(
            sniff(&[]).unwrap_err().code(),
            "decode_error",
            "zero bytes is a decode error"
        );
        assert_eq!(sniff(b"GIF89a").unwrap_err().code(), "unsupported_format");
        assert_eq!(sniff(b"hello").unwrap_err().code(), "unsupported_format");
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF]).unwrap(), Format::Jpeg);
    }

    #[test]
    fn truncated_jpeg_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        let err = decode_into(
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00],
            &mut out,
            &Limits::default(),
        );
        assert_eq!(err.unwrap_err().code(), "decode_error");
    }
}
