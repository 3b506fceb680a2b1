use bgstream::ops::decode::Limits;
use bgstream::ops::geometry::{Interpolation, Preprocess};
use bgstream::ops::textures::TextureSet;
use bgstream::ops::variants::Variant;
use bgstream::stage::prepare::PrepareConfig;

/// Every variant, two preprocessings, small limits so that inputs stay cheap.
pub fn config() -> PrepareConfig {
    let groups = vec![
        Preprocess { input_size: 32, crop_pct: 0.875, interpolation: Interpolation::Bicubic },
        Preprocess { input_size: 24, crop_pct: 1.0, interpolation: Interpolation::Bilinear },
    ];
    let mut textures = TextureSet::load(None).expect("built-in textures");
    for p in &groups {
        textures.prepare(p.input_size, p.interpolation).expect("prepare");
    }
    PrepareConfig {
        groups,
        variants: Variant::parse_list(
            "original,bg_only,fg_white,fg_texture,fg_gauss,fg_uniform,fg_color:1,2,3,bg_tiled,only_fg,no_fg",
        )
        .expect("variants"),
        textures,
        seed: 1,
        min_fg: 0.0,
        max_fg: 1.0,
        limits: Limits { max_pixels: 4_000_000 },
        num_classes: 1000,
        class_map: None,
        donors: None,
        original_all: false,
    }
}
