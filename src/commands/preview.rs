//! `bgstream preview`: contact sheets of what the models see.

use bgstream::error::FatalError;
use bgstream::infer::device::{self, DeviceRequest};
use bgstream::ops::decode::Limits;
use bgstream::ops::variants::Variant;
use bgstream::precision::{Autotune, Precision};
use bgstream::preview::command::PreviewConfig;
use bgstream::preview::Want;
use bgstream::source::expand_shards;

use crate::cli::PreviewArgs;

pub fn run(a: &PreviewArgs) -> anyhow::Result<u8> {
    let out = bgstream::preview::command::run(&preview_config(a)?)?;
    println!(
        "{} image(s), {} tile(s); index {}",
        out.images,
        out.tiles,
        out.index.display()
    );
    for s in &out.sheets {
        println!("wrote {}", s.display());
    }
    Ok(0)
}

/// The flags checked, then the device opened (fp32 as in a run: TF32 forbidden first).
fn preview_config(a: &PreviewArgs) -> Result<PreviewConfig, FatalError> {
    if a.keys.is_empty() && a.n == 0 {
        return Err(FatalError::Config("--n must be at least 1".into()));
    }
    let i = &a.image;
    let variants = Variant::parse_list(&i.variants).map_err(FatalError::Config)?;
    let shards = expand_shards(&a.shards)?;
    let donor_shards = if i.donor_shards.is_empty() {
        shards.clone()
    } else {
        expand_shards(&i.donor_shards)?
    };
    let device = (device::open(&DeviceRequest {
        spec: a.device.clone(),
        local_rank: None,
        precision: Precision::Fp32,
        allow_tf32: false,
        autotune: Autotune::Auto,
    })?)
    .first();
    Ok(PreviewConfig {
        shards,
        models: a.models.clone(),
        device,
        variants,
        want: if a.keys.is_empty() {
            Want::First(a.n)
        } else {
            Want::Keys(a.keys.clone())
        },
        out: a.out.clone(),
        input_size: a.input_size,
        crop_pct: a.crop_pct,
        class_names: a.class_names.clone(),
        textures: i.textures.clone(),
        class_map: i.class_map.clone(),
        donor_shards,
        donors: i.donors,
        seed: i.seed,
        min_fg: i.min_fg,
        max_fg: i.max_fg,
        limits: Limits {
            max_pixels: i.max_pixels,
        },
    })
}
