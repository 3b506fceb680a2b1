//! Pure, synchronous image operations over caller-owned buffers: no tokio, no tch.
//!
//! The order is the card's: [`decode`] once per image, [`resize`] once per distinct model
//! preprocessing (with the centre crop folded into the resampling), then [`variants`]
//! composes every variant in the cropped output space over the foreground, boxes mapped by
//! [`geometry`] or a mask by [`mask`];
//! [`background`] builds backgrounds from the image itself and pastes foregrounds.

pub mod background;
pub mod decode;
pub mod geometry;
pub mod mask;
pub mod resize;
pub mod textures;
pub mod variants;

/// An RGB8 image, rows packed, `data.len() == width * height * 3`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb8 {
    pub fn new(width: usize, height: usize) -> Self {
        Rgb8 {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }
}
