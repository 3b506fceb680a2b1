//! Arbitrary bytes as polygons: byte 0 even = a box CSV with a `polygons` column, odd = a
//! JSON manifest; the polygons read -> their box -> the mask rasterised over a 40x32
//! image and mapped through a crop (seeds: COCO-style outlines, empty and degenerate ones).
#![no_main]

use std::sync::OnceLock;

use bgstream::ops::geometry::{Geometry, Interpolation, Preprocess};
use bgstream::ops::mask::SourceMask;
use bgstream::shard::manifest::parse_manifest;
use bgstream::shard::masks::polygons_bbox;
use bgstream::shard::parse_box_csv;
use libfuzzer_sys::fuzz_target;

fn rasterise(polygons: &[Vec<f64>]) {
    static GEOMETRY: OnceLock<Geometry> = OnceLock::new();
    let g = GEOMETRY.get_or_init(|| {
        let p = Preprocess {
            input_size: 24,
            crop_pct: 0.875,
            interpolation: Interpolation::Bilinear,
        };
        Geometry::new(40, 32, &p).expect("a 40x32 geometry")
    });
    if let Some([x0, y0, x1, y1]) = polygons_bbox(polygons, 40, 32) {
        assert!(0.0 <= x0 && x0 < x1 && x1 <= 40.0 && 0.0 <= y0 && y0 < y1 && y1 <= 32.0);
    }
    if let Ok(mask) = SourceMask::new(None, polygons, 40, 32) {
        let _ = mask.area_fraction();
        let _ = mask.map(g);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(images) = parse_box_csv(rest, &[]) {
            for image in images {
                rasterise(&image.polygons);
            }
        }
    } else if let Ok(m) = parse_manifest(rest) {
        for s in m.samples {
            rasterise(&s.polygons);
        }
    }
});
