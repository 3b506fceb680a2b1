//! `bgstream shard --format caltech101` on Caltech101's layout, written by the test from real
//! photos with real-format `.mat` annotations (scipy): labels in torchvision's order, the
//! renamed annotation folders mapped, 1-based inclusive boxes made exclusive and clamped,
//! outlines made polygons in pixel-edge coordinates, and every left-out file named.

use std::collections::BTreeMap;
use std::process::Command;

use bgstream::source::tar_reader::read_shard;

use crate::common::{self, path_str};

/// Writes the layout under `root` and returns what each sample must become, as Python
/// (numpy, scipy, Pillow) computes it: key -> (label, [x0, y0, x1, y1] exclusive).
const WRITE: &str = r#"
import json, os, shutil, sys
import numpy as np, scipy.io
from PIL import Image
photos, root = sys.argv[1], sys.argv[2]
jpgs = sorted(f for f in os.listdir(photos) if f.endswith('.JPEG'))
imgs, anns = os.path.join(root, '101_ObjectCategories'), os.path.join(root, 'Annotations')
# image folder -> annotation folder (Caltech101's renamed ones) and how many images
layout = {'Faces_easy': 'Faces_3', 'accordion': 'accordion', 'airplanes': 'Airplanes_Side_2',
          'BACKGROUND_Google': None}
classes = sorted(c for c in layout if c != 'BACKGROUND_Google')
want, i = {}, 0
for cls, ann in layout.items():
    os.makedirs(os.path.join(imgs, cls))
    if ann:
        os.makedirs(os.path.join(anns, ann), exist_ok=True)
    for n in range(1, 4):
        src = os.path.join(photos, jpgs[i]); i += 1
        shutil.copy(src, os.path.join(imgs, cls, f'image_{n:04d}.jpg'))
        if not ann:
            continue
        key = f'{cls}/image_{n:04d}'
        mat = os.path.join(anns, ann, f'annotation_{n:04d}.mat')
        if cls == 'accordion' and n == 3:
            continue  # an image without annotation
        w, h = Image.open(src).size
        top, bottom, left, right = 7 + n, h - 5, 3 + n, w - 9
        if cls == 'airplanes' and n == 2:
            right = w + 2  # past the image: clamped to w
        if cls == 'Faces_easy' and n == 3:
            scipy.io.savemat(mat, {'obj_contour': np.zeros((2, 5))})  # no box_coord
            continue
        dtype = np.uint16 if n == 1 else np.float64
        box = np.array([[top, bottom, left, right]], dtype=dtype)
        contour = np.array([[0.0, 10.0 + n, 10.5, 0.0, 3.0], [0.0, 0.0, 10.0, 12.0 + n, 4.0]])
        scipy.io.savemat(mat, {'box_coord': box, 'obj_contour': contour})
        # The outline in pixel-edge coordinates: MATLAB's pixel centres are 1, 2, ...
        poly = np.stack([contour[0] + left - 0.5, contour[1] + top - 0.5], 1).ravel()
        want[key] = [classes.index(cls), [left - 1, top - 1, min(right, w), bottom],
                     [poly.tolist()]]
# an annotation whose image is absent
scipy.io.savemat(os.path.join(anns, 'accordion', 'annotation_0009.mat'),
                 {'box_coord': np.array([[1, 2, 3, 4]])})
print(json.dumps(want))
"#;

#[test]
fn caltech101_layout_becomes_shards() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("caltech");
    let out = Command::new(common::python())
        .args(["-c", WRITE])
        .arg(data.join("imagenet-val/images"))
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    type Want = BTreeMap<String, (i64, [f64; 4], Vec<Vec<f64>>)>;
    let want: Want = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(want.len(), 7);

    let (images, annotations) = (root.join("101_ObjectCategories"), root.join("Annotations"));
    for format in [Some("caltech101"), None] {
        let shards = tmp
            .path()
            .join(format!("shards-{}", format.unwrap_or("detected")));
        let mut args = vec![
            "shard",
            "--images",
            path_str(&images),
            "--annotations",
            path_str(&annotations),
            "--out",
            path_str(&shards),
            "--shard-size",
            "4",
        ];
        if let Some(f) = format {
            args.extend(["--format", f]);
        }
        let (code, stdout, stderr) = common::bgstream(&args);
        assert_eq!(code, 0, "{stdout}{stderr}");
        for note in [
            "annotations: caltech101",
            "3 classes",
            "annotation folders mapped: Faces_3 -> Faces_easy, Airplanes_Side_2 -> airplanes",
            "BACKGROUND_Google skipped",
            "1 box(es) clamped",
            "outlines -> polygons, 7 of 7 samples",
            "wrote 7 samples",
        ] {
            assert!(stdout.contains(note), "{note:?} missing:\n{stdout}");
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(shards.join("shard.summary.json")).unwrap())
                .unwrap();
        let list = |k: &str| -> Vec<String> {
            summary[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(list("images_without_annotation"), ["accordion/image_0003"]);
        assert_eq!(list("annotations_without_image"), ["accordion/image_0009"]);
        let skipped = list("without_objects");
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].starts_with("Faces_easy/image_0003: ")
                && skipped[0].ends_with("Faces_3/annotation_0003.mat: no box_coord"),
            "{skipped:?}"
        );

        let mut got = BTreeMap::new();
        let mut paths: Vec<_> = std::fs::read_dir(&shards)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect();
        paths.sort();
        for p in &paths {
            read_shard(p, |s| {
                let a = s.annotation().unwrap();
                let b = a.boxes[0];
                got.insert(s.key.clone(), (a.label, b, a.polygons));
                true
            });
        }
        assert_eq!(got, want, "{}", shards.display());
    }
    // The usual protocol's split: the first 30 of each class train, the rest test; here
    // every class has fewer than 30, so test is empty and train is everything.
    for (split, n) in [("train", 7), ("test", 0)] {
        let out = tmp.path().join(format!("split-{split}"));
        let (code, stdout, stderr) = common::bgstream(&[
            "shard",
            "--images",
            path_str(&images),
            "--annotations",
            path_str(&annotations),
            "--split",
            split,
            "--out",
            path_str(&out),
        ]);
        if n == 0 {
            assert_eq!(code, 1, "{stdout}{stderr}");
        } else {
            assert_eq!(code, 0, "{stdout}{stderr}");
            assert!(stdout.contains(&format!("wrote {n} samples")), "{stdout}");
        }
    }
    // Not an error to name: a folder without class folders.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("Annotations")).unwrap();
    std::fs::create_dir_all(empty.join("101_ObjectCategories")).unwrap();
    let (code, _, stderr) = common::bgstream(&[
        "shard",
        "--format",
        "caltech101",
        "--images",
        path_str(&empty.join("101_ObjectCategories")),
        "--annotations",
        path_str(&empty.join("Annotations")),
        "--out",
        path_str(&tmp.path().join("none")),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no class folders"), "{stderr}");
}
