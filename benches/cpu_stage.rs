//! Side-by-side CPU-stage benchmark, one core each, in one run: bgstream's per-sample stage
//! (decode once, crop-resize once, 8 variants) against the same work in Python (Pillow +
//! numpy), on real ImageNet JPEGs. Prints a table with the ratios and the decode share.
//!
//!     cargo bench --bench cpu_stage [-- SECONDS]

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use bgstream::ops::decode::{decode_into, Limits};
use bgstream::ops::geometry::{Geometry, Interpolation, Preprocess};
use bgstream::ops::resize::CropResizer;
use bgstream::ops::variants::Variant;
use bgstream::stage::prepare::{prepare, Scratch};

const VARIANTS: &str =
    "original,bg_only,fg_white,fg_texture,fg_gauss,fg_uniform,fg_color:green,fg_color:grey";
const P: Preprocess = Preprocess {
    input_size: 224,
    crop_pct: 0.875,
    interpolation: Interpolation::Bicubic,
};

/// Images per second of `f` over `n` images, repeated for at least `secs`.
fn rate(n: usize, secs: f64, mut f: impl FnMut()) -> f64 {
    f(); // warm caches and buffers
    let (start, mut reps) = (Instant::now(), 0);
    while start.elapsed().as_secs_f64() < secs || reps == 0 {
        f();
        reps += 1;
    }
    (reps * n) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let entries = common::entries();
    let n = entries.len();
    let files: Vec<Vec<u8>> = entries.iter().map(|e| e.image.read().unwrap()).collect();
    let limits = Limits::default();
    let variants = Variant::parse_list(VARIANTS).unwrap();
    let v = variants.len();
    let cfg = common::prepare_config(P, variants);
    let samples = common::samples(&entries, &files);

    let mut buf = Vec::new();
    let decode = rate(n, secs, || {
        for f in &files {
            black_box(decode_into(f, &mut buf, &limits).unwrap());
        }
    });
    let mut resizer = CropResizer::new();
    let mut crop = vec![0u8; 224 * 224 * 3];
    let decode_resize = rate(n, secs, || {
        for f in &files {
            let (w, h) = decode_into(f, &mut buf, &limits).unwrap();
            let g = Geometry::new(w, h, &P).unwrap();
            resizer
                .resize_crop(&buf, &g, P.interpolation, &mut crop)
                .unwrap();
        }
    });
    let mut scratch = Scratch::default();
    let stage = rate(n, secs, || {
        for s in &samples {
            black_box(prepare(s, &cfg, &mut scratch));
        }
    });

    let (py_per_variant, py_once) = python_baseline(&entries, secs);

    println!("\nCPU stage, one core, {n} real JPEGs, {v} variants, 224 bicubic (images/s; variant-images/s = x{v})");
    println!(
        "{:<46} {:>10} {:>16} {:>10}",
        "pipeline", "images/s", "variant-imgs/s", "bgstream x"
    );
    let row = |name: &str, r: f64| {
        println!(
            "{name:<46} {r:>10.1} {:>16.1} {:>10.2}",
            r * v as f64,
            stage / r
        );
    };
    row("bgstream prepare (decode once + 8 variants)", stage);
    row(
        "python: Pillow+numpy, one dataset per variant",
        py_per_variant,
    );
    row("python: Pillow+numpy, decode once", py_once);
    println!("\nbgstream decode only:          {decode:>8.1} images/s");
    println!("bgstream decode + resize/crop: {decode_resize:>8.1} images/s");
    println!(
        "decode share of the CPU stage: {:.0}%   (decode+resize share: {:.0}%)",
        100.0 * stage / decode,
        100.0 * stage / decode_resize
    );
}

/// The same work in Python (benches/python_cpu_baseline.py) on one core: images/s with one
/// dataset per variant, and with one decode per image.
fn python_baseline(entries: &[bgstream::shard::Entry], secs: f64) -> (f64, f64) {
    let items: Vec<_> = entries
        .iter()
        .map(|e| serde_json::json!({"path": e.image.path(), "key": e.key, "boxes": e.annotation.boxes}))
        .collect();
    let root = common::root();
    let mut child = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("benches/python_cpu_baseline.py"))
        .arg(secs.to_string())
        // One core, like the Rust side: no BLAS thread pools.
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run scripts/setup first (needs .venv)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&items).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python baseline failed");
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        py["per_variant"].as_f64().unwrap(),
        py["decode_once"].as_f64().unwrap(),
    )
}
