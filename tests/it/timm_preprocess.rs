//! Numbers that match timm (issue 25): the sidecar `export_models.py` writes for a timm name
//! carries timm's test-time preprocessing, and bgstream's crop of a real JPEG under it equals
//! `timm.data.create_transform(**resolve_data_config(..., use_test_size=True))` within the
//! documented resampling tolerance — for crops 0.875, 0.95 and 1.0, bilinear and bicubic.

use bgstream::ops::decode::{decode_into, Limits};
use bgstream::ops::geometry::{Geometry, Interpolation, Preprocess};
use bgstream::ops::resize::CropResizer;

use crate::common::{self, path_str};

/// resnet18.tv_in1k: 224, crop 0.875, bilinear; resnet26d.bt_in1k: test 288, crop 0.95,
/// bicubic; resnet50 (timm resolves it to a1_in1k): test 288, crop 1.0, bicubic;
/// deit_small_patch16_224.fb_in1k: 224, crop 0.9, bicubic, where the shorter side is
/// floor(248.9) = 248 (rounding would give 249).
const NAMES: [&str; 4] = [
    "resnet18.tv_in1k",
    "resnet26d.bt_in1k",
    "resnet50",
    "deit_small_patch16_224.fb_in1k",
];

#[test]
fn crops_equal_timms_eval_transform_at_its_test_size() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(data.join("imagenet-val/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // Every 6th of the 66: 11 images, the grayscale val 34 among them.
    let files: Vec<_> = files.into_iter().step_by(6).collect();
    let mut args = vec!["sidecars"];
    args.extend(NAMES);
    let sidecars = common::python_report("tests/timm_reference.py", &args);
    // The bare name is recorded by the weights it stands for.
    assert_eq!(
        sidecars["resnet50"]["name"], "resnet50.a1_in1k",
        "{sidecars}"
    );
    assert_eq!(sidecars["resnet50"]["input_size"], 288, "test-time size");

    let tmp = tempfile::tempdir().unwrap();
    let list: Vec<&str> = files.iter().map(|p| path_str(p)).collect();
    std::fs::write(
        tmp.path().join("files.json"),
        serde_json::to_vec(&list).unwrap(),
    )
    .unwrap();
    let mut resizer = CropResizer::new();
    for name in NAMES {
        let meta = &sidecars[name];
        let p = Preprocess {
            input_size: meta["input_size"].as_u64().unwrap() as usize,
            crop_pct: meta["crop_pct"].as_f64().unwrap(),
            interpolation: serde_json::from_value::<Interpolation>(meta["interpolation"].clone())
                .unwrap(),
        };
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in &files {
            let mut rgb = Vec::new();
            let (w, h) =
                decode_into(&std::fs::read(f).unwrap(), &mut rgb, &Limits::default()).unwrap();
            let g = Geometry::new(w, h, &p).unwrap();
            let mut out = vec![0; g.size * g.size * 3];
            resizer
                .resize_crop(&rgb, &g, p.interpolation, &mut out)
                .unwrap();
            let file = format!("{}.rgb", f.file_name().unwrap().to_str().unwrap());
            std::fs::write(dir.join(file), out).unwrap();
        }
    }
    let mut args = vec!["compare", path_str(tmp.path())];
    args.extend(NAMES);
    let report = common::python_report("tests/timm_reference.py", &args);
    eprintln!("bgstream vs timm's eval transform (grey levels): {report}");
    for name in NAMES {
        assert_eq!(report[name]["ok"], true, "{name}: {report}");
    }
}

/// A pretrained name whose weights are not cached, with no way to the Hub: one line naming
/// the way out (`--random-weights`), exit 2, no traceback, and nothing written (it used to
/// retry for about 50 s, then print huggingface_hub's traceback). The Hub is made
/// unreachable on purpose (a refused local port) and the cache empty, whatever the machine.
#[test]
fn an_uncached_pretrained_name_offline_fails_at_once_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("models");
    let run = std::process::Command::new(common::python())
        .arg(common::root().join("examples/export_models.py"))
        .args(["--out", path_str(&out), "resnet34"])
        .env("HF_HOME", tmp.path().join("hf"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("Traceback"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("resnet34")
            && stderr.contains("--random-weights")
            && stderr.contains("--checkpoint"),
        "{stderr}"
    );
    assert!(!out.join("resnet34.pt").exists());
}
