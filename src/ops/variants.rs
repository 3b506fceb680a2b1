//! The paper's image variants, composed in the cropped output space.
//!
//! | name | definition |
//! |---|---|
//! | `original` | the resized, centre-cropped image |
//! | `bg_only` | every foreground box filled white (255, 255, 255) — paper §3 |
//! | `fg_white` | every pixel outside the union of boxes white — paper §4 |
//! | `fg_texture` | outside the boxes, texture number `xxh3(key, seed ^ TEXTURE_SALT) % n` of the texture set, shorter side resized to the crop and centre-cropped |
//! | `fg_gauss` | outside the boxes, per channel `clamp(round(N(128, 64²)), 0, 255)` |
//! | `fg_uniform` | outside the boxes, per channel a uniform integer in `0..=255` |
//! | `fg_color:NAME` or `fg_color:R,G,B` | outside the boxes one colour; names: green (0,255,0), yellow (255,255,0), grey/gray (128,128,128), red, blue, black, white |
//! | `bg_only_black` | every box filled black (ImageNet-9 "Only-BG-B") |
//! | `bg_tiled` | every box pixel replaced by tiling the largest box-free rectangle of the crop, tiles anchored at its corner; black if the boxes cover the crop (ImageNet-9 "Only-BG-T") |
//! | `mixed_same` | this image's boxes pasted where they are onto the `bg_tiled` crop of another image of the same class (ImageNet-9 "Mixed-Same"); donors in [`crate::stage::donors`] |
//! | `mixed_rand` | ... of an image of a random other class ("Mixed-Rand") |
//! | `mixed_next` | ... of an image of the next class, `(class + 1) mod classes` ("Mixed-Next") |
//! | `worst_bg:K` | K rows per image and model: this image's boxes on K candidate backgrounds (the texture set, then donors of other classes); `bgstream aggregate` counts the image correct only if every candidate leaves it correct |
//! | `only_fg` | the mask's foreground on black (ImageNet-9 "Only-FG"); samples without a mask get `no_mask` rows |
//! | `no_fg` | the mask's foreground black (ImageNet-9 "No-FG"); `no_mask` rows without a mask |
//!
//! "Boxes" above means the sample's foreground: its mask when it has one, else the union of
//! its boxes ([`super::mask`]). With a mask, `bg_tiled` tiles the largest rectangle of the
//! crop free of mask pixels, and `mixed_*` / `worst_bg:K` paste the mask's pixels.
//!
//! Noise comes from ChaCha8 seeded with `xxh3(key ++ "/" ++ variant name, seed)`, so each
//! image gets its own noise, identical on every run with the same `--seed` and independent
//! of the boxes, the thread and the order of images.

use std::sync::OnceLock;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::mask::Foreground;
pub use crate::variant::{
    is_multi_row, keeps_foreground, Variant, DEFAULT_VARIANTS, EXTRA_VARIANTS, MAX_WORST_K,
    ORIGINAL_ALL, WORST_BG,
};

/// Salt that separates the texture choice from the noise streams.
pub const TEXTURE_SALT: u64 = 0x7465_7874_7572_6521;

/// Per-image inputs to [`render`].
pub struct RenderCtx<'a> {
    pub key: &'a str,
    pub seed: u64,
    /// Prepared textures at this output size (`size*size*3` each); may be empty when
    /// `fg_texture` is not requested.
    pub textures: &'a [&'a [u8]],
}

/// Which texture an image gets (documented in the module table).
pub fn texture_index(key: &str, seed: u64, n: usize) -> usize {
    (xxh3_64_with_seed(key.as_bytes(), seed ^ TEXTURE_SALT) % n as u64) as usize
}

fn noise_rng(key: &str, variant: &str, seed: u64) -> ChaCha8Rng {
    let mut material = Vec::with_capacity(key.len() + variant.len() + 1);
    material.extend_from_slice(key.as_bytes());
    material.push(b'/');
    material.extend_from_slice(variant.as_bytes());
    ChaCha8Rng::seed_from_u64(xxh3_64_with_seed(&material, seed))
}

/// Inverse-CDF table of `clamp(round(N(128, 64²)), 0, 255)` over 16-bit uniforms: entry `i`
/// is the smallest `k` whose cumulative probability exceeds `(i + 0.5) / 65536`. One table
/// lookup per channel is ~10x cheaper than sampling a normal, with the exact quantised law
/// up to the 1/65536 resolution.
fn gauss_table() -> &'static [u8; 65536] {
    static TABLE: OnceLock<Box<[u8; 65536]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let cdf = |x: f64| 0.5 * (1.0 + libm::erf((x - 128.0) / (64.0 * std::f64::consts::SQRT_2)));
        // cumulative probability of the quantised, clamped value k: P(N < k + 0.5)
        let upper: Vec<f64> = (0..256)
            .map(|k| if k == 255 { 1.0 } else { cdf(k as f64 + 0.5) })
            .collect();
        let mut t = Box::new([0u8; 65536]);
        let mut k = 0;
        for (i, slot) in t.iter_mut().enumerate() {
            let u = (i as f64 + 0.5) / 65536.0;
            while upper[k] <= u {
                k += 1;
            }
            *slot = k as u8;
        }
        t
    })
}

fn fill(px: &mut [u8], rgb: [u8; 3]) {
    for p in px.chunks_exact_mut(3) {
        p.copy_from_slice(&rgb);
    }
}

/// Writes `variant` of `src` (`size*size*3`, the cropped image) into `out`. `fg` is the
/// foreground in output pixels (boxes or mask). Variants that need donors are composed by
/// the caller with [`super::background::paste_foreground`]; here they leave `out` black.
/// `only_fg` / `no_fg` are rendered from whatever `fg` is: the caller records `no_mask`
/// rows for samples without a mask.
pub fn render(variant: &Variant, src: &[u8], fg: &Foreground, ctx: &RenderCtx<'_>, out: &mut [u8]) {
    let size = fg.size();
    debug_assert_eq!(src.len(), size * size * 3);
    debug_assert_eq!(out.len(), src.len());
    match variant {
        Variant::Original => {
            out.copy_from_slice(src);
            return;
        }
        Variant::BgOnly | Variant::BgOnlyBlack | Variant::NoFg => {
            let v = if *variant == Variant::BgOnly { 255 } else { 0 };
            out.copy_from_slice(src);
            for r in fg.byte_ranges() {
                fill(&mut out[r], [v; 3]);
            }
            return;
        }
        Variant::BgTiled => {
            super::background::tile_background(src, fg, out);
            return;
        }
        Variant::MixedSame | Variant::MixedRand | Variant::MixedNext | Variant::WorstBg { .. } => {
            debug_assert!(false, "{} is composed from donors", variant.name());
            out.fill(0);
            return;
        }
        Variant::FgWhite => out.fill(255),
        Variant::OnlyFg => out.fill(0),
        Variant::FgColor { rgb, .. } => fill(out, *rgb),
        Variant::FgTexture => {
            let t = ctx.textures[texture_index(ctx.key, ctx.seed, ctx.textures.len())];
            out.copy_from_slice(t);
        }
        Variant::FgUniform => noise_rng(ctx.key, "fg_uniform", ctx.seed).fill_bytes(out),
        Variant::FgGauss => {
            let table = gauss_table();
            let mut rng = noise_rng(ctx.key, "fg_gauss", ctx.seed);
            let mut bits = [0u8; 4096];
            for chunk in out.chunks_mut(bits.len() / 2) {
                let bits = &mut bits[..chunk.len() * 2];
                rng.fill_bytes(bits);
                for (v, b) in chunk.iter_mut().zip(bits.chunks_exact(2)) {
                    *v = table[u16::from_le_bytes([b[0], b[1]]) as usize];
                }
            }
        }
    }
    // Foreground back on top of the new background.
    for r in fg.byte_ranges() {
        out[r.clone()].copy_from_slice(&src[r]);
    }
}

/// Draws a random `u8` (used by tests to build images).
pub fn random_image(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..size * size * 3).map(|_| rng.random::<u8>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(textures: &'a [&'a [u8]]) -> RenderCtx<'a> {
        RenderCtx {
            key: "img",
            seed: 7,
            textures,
        }
    }

    #[test]
    fn parse_list_handles_rgb_triples_and_names() {
        let v = Variant::parse_list("original,fg_color:1,2,3,bg_only,fg_color:green").unwrap();
        let names: Vec<_> = v.iter().map(Variant::name).collect();
        assert_eq!(
            names,
            ["original", "fg_color:1,2,3", "bg_only", "fg_color:green"]
        );
        assert!(Variant::parse_list("original,nope").is_err());
        assert!(Variant::parse_list("original,original").is_err());
        assert!(Variant::parse_list("fg_color:300,0,0").is_err());
        assert_eq!(Variant::parse_list(DEFAULT_VARIANTS).unwrap().len(), 9);
        let extra = Variant::parse_list(&format!("{EXTRA_VARIANTS},worst_bg:5")).unwrap();
        assert_eq!(extra.len(), 8);
        assert!(extra
            .iter()
            .all(|v| v.name().parse::<Variant>().as_ref() == Ok(v)));
        assert_eq!(extra[7].slots(), 5);
        assert!(extra[5].needs_mask() && extra[6].needs_mask() && !extra[0].needs_mask());
        assert!(Variant::parse_list("worst_bg:0").is_err());
        assert!(Variant::parse_list("worst_bg:x").is_err());
    }

    #[test]
    fn masks_split_the_frame_exactly() {
        let size = 16;
        let src = random_image(size, 1);
        let fg = Foreground::from_rects(
            size,
            &[crate::ops::geometry::Rect {
                x0: 2,
                y0: 3,
                x1: 9,
                y1: 7,
            }],
        );
        let inside = |x: usize, y: usize| (2..9).contains(&x) && (3..7).contains(&y);
        let tex = vec![42u8; size * size * 3];
        let textures = [tex.as_slice()];
        let mut out = vec![0; src.len()];
        let list = format!("{DEFAULT_VARIANTS},only_fg,no_fg,bg_only_black");
        for v in Variant::parse_list(&list).unwrap() {
            render(&v, &src, &fg, &ctx(&textures), &mut out);
            for y in 0..size {
                for x in 0..size {
                    let i = (y * size + x) * 3;
                    let (o, s) = (&out[i..i + 3], &src[i..i + 3]);
                    match (&v, inside(x, y)) {
                        (Variant::Original, _) => assert_eq!(o, s),
                        (Variant::BgOnly, true) => assert_eq!(o, [255; 3]),
                        (Variant::BgOnly, false) => assert_eq!(o, s),
                        (Variant::NoFg | Variant::BgOnlyBlack, true) => assert_eq!(o, [0; 3]),
                        (Variant::NoFg | Variant::BgOnlyBlack, false) => assert_eq!(o, s),
                        (Variant::OnlyFg, false) => assert_eq!(o, [0; 3]),
                        (_, true) => assert_eq!(o, s, "{} keeps the foreground", v.name()),
                        (Variant::FgWhite, false) => assert_eq!(o, [255; 3]),
                        (Variant::FgTexture, false) => assert_eq!(o, [42; 3]),
                        (Variant::FgColor { rgb, .. }, false) => assert_eq!(o, rgb),
                        _ => {}
                    }
                }
            }
        }
    }

    #[test]
    fn noise_is_seeded_per_image_and_shaped_right() {
        let size = 64;
        let src = vec![0u8; size * size * 3];
        let render_gauss = |key: &str, seed| {
            let mut out = vec![0; src.len()];
            let c = RenderCtx {
                key,
                seed,
                textures: &[],
            };
            render(
                &Variant::FgGauss,
                &src,
                &Foreground::from_rects(size, &[]),
                &c,
                &mut out,
            );
            out
        };
        let a = render_gauss("a", 1);
        assert_eq!(a, render_gauss("a", 1));
        assert_ne!(a, render_gauss("b", 1));
        assert_ne!(a, render_gauss("a", 2));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!((mean - 128.0).abs() < 2.0, "mean {mean}");
        // clipping at 0 and 255 trims the 64 a little
        assert!((55.0..65.0).contains(&var.sqrt()), "std {}", var.sqrt());
    }
}
