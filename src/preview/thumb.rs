//! Image files from RGB frames: lossless PNG for exact tiles, small JPEG for the report.

use std::path::Path;

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::error::FatalError;

/// Why a thumbnail could not be made: the library's error, as it is.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    /// The frame is not an image of its size.
    #[error(transparent)]
    Frame(#[from] fast_image_resize::ImageBufferError),
    #[error(transparent)]
    Resize(#[from] fast_image_resize::ResizeError),
    #[error(transparent)]
    Jpeg(#[from] jpeg_encoder::EncodingError),
}

/// `rgb` (`w * h * 3` bytes) as a PNG file, byte-exact (deflate-compressed: zune-png's
/// encoder stores: the demo sheet is 3.5 MB this way, 20 MB stored).
pub fn png(rgb: &[u8], w: usize, h: usize) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Default);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

/// Writes `rgb` as a PNG file, atomically.
pub fn write_png(path: &Path, rgb: &[u8], w: usize, h: usize) -> Result<(), FatalError> {
    let bytes = png(rgb, w, h).map_err(|e| FatalError::output(path, e))?;
    crate::atomic::write_file(path, &bytes)
}

/// A JPEG of the square frame `rgb` (`size * size * 3`), scaled down to `side` pixels
/// when larger: report thumbnails, a few kB each.
pub fn jpeg_thumb(
    rgb: &[u8],
    size: usize,
    side: usize,
    quality: u8,
) -> Result<Vec<u8>, ThumbError> {
    let side = side.clamp(1, size.max(1));
    let small;
    let pixels = if side < size {
        let src = Image::from_vec_u8(size as u32, size as u32, rgb.to_vec(), PixelType::U8x3)?;
        let mut dst = Image::new(side as u32, side as u32, PixelType::U8x3);
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        Resizer::new().resize(&src, &mut dst, &opts)?;
        small = dst.into_vec();
        &small[..]
    } else {
        rgb
    };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality).encode(
        pixels,
        side as u16,
        side as u16,
        jpeg_encoder::ColorType::Rgb,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_exactly_and_thumbs_are_small_jpegs() {
        let (w, h) = (7, 5);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let bytes = png(&rgb, w, h).unwrap();
        let mut d = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(&bytes));
        assert_eq!(d.decode_raw().unwrap(), rgb);

        let frame: Vec<u8> = (0..224 * 224 * 3).map(|i| (i % 256) as u8).collect();
        let jpg = jpeg_thumb(&frame, 224, 96, 80).unwrap();
        assert_eq!(&jpg[..2], &[0xFF, 0xD8]);
        let mut d = zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(&jpg));
        d.decode_headers().unwrap();
        assert_eq!(d.dimensions(), Some((96, 96)));
        // Never scaled up.
        let jpg = jpeg_thumb(&frame[..8 * 8 * 3], 8, 96, 80).unwrap();
        let mut d = zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(&jpg));
        d.decode_headers().unwrap();
        assert_eq!(d.dimensions(), Some((8, 8)));
    }
}
