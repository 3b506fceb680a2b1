//! Issue 27, item 1: torch.jit.trace bakes cuDNN's benchmark and TF32 flags into every
//! convolution, so run-time settings never reach them. Every model this project exports
//! must call convolutions that read the settings when they run, and a run must refuse a
//! model that still carries baked flags unless its sidecar says so.

use std::path::Path;

use bgstream::infer::graph::{conv_sites, ConvSites};
use bgstream::sidecar::{ConvFlags, Sidecar};

use crate::common::{self, path_str};

/// Asserts that `pt` has convolutions, none of them with baked flags, in its archive's
/// code and (by torch's own graph) in its inlined graph, and that its sidecar says so.
fn assert_runtime(pt: &Path) {
    let sites = conv_sites(pt).unwrap();
    assert!(
        sites.baked == 0 && sites.runtime > 0,
        "{}: {sites:?}",
        pt.display()
    );
    assert_eq!(
        Sidecar::read(pt).unwrap().conv_flags,
        Some(ConvFlags::Runtime),
        "{}",
        pt.display()
    );
}

#[test]
fn every_export_calls_convolutions_that_read_the_run_time_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = path_str(dir.path());
    let export = |extra: &[&str]| {
        let mut args = vec![
            "examples/export_models.py",
            "--out",
            out,
            "--random-weights",
        ];
        args.extend(extra);
        common::python_stdout(&args)
    };
    // Two timm architectures, one of them channels-last, and a frozen bf16 copy.
    export(&["resnet18"]);
    export(&["--channels-last", "mobilenetv3_small_100"]);
    let resnet = dir.path().join("resnet18.pt");
    let frozen = dir.path().join("resnet18-frozen-bf16.pt");
    common::python_stdout(&[
        "examples/freeze_model.py",
        path_str(&resnet),
        "--precision",
        "bf16",
        "--device",
        "cpu",
        "--out",
        path_str(&frozen),
    ]);
    let mut models = vec![resnet, dir.path().join("mobilenetv3_small_100.pt"), frozen];
    for name in [
        "tiny",
        "efficientnet-lite0",
        "efficientnet-lite1",
        "efficientnet-lite2",
    ] {
        models.push(common::model(name));
    }
    for pt in &models {
        assert_runtime(pt);
    }
    // torch's own view: no aten::_convolution node left in any inlined graph.
    let mut args = vec!["-c", COUNT_NODES];
    args.extend(models.iter().map(|p| path_str(p)));
    let counts = String::from_utf8(common::python_stdout(&args)).unwrap();
    for line in counts.lines() {
        let (baked, runtime) = line.split_once(' ').unwrap();
        assert!(baked == "0" && runtime != "0", "{counts}");
    }
    assert_eq!(counts.lines().count(), models.len(), "{counts}");
}

/// Per model argument: its (baked, runtime) convolution nodes, by torch.
const COUNT_NODES: &str = "
import sys, torch
sys.path.insert(0, 'examples')
from runtime_conv import count
for p in sys.argv[1:]:
    print(*count(torch.jit.load(p)))
";

/// Traces tiny's architecture the plain way (flags baked) into `dir/plain.pt`, with tiny's
/// sidecar under another name, and prints its logits on a fixed batch.
const PLAIN_TRACE: &str = "
import json, os, sys, torch
sys.path.insert(0, 'examples')
from export_models import tiny_model
from runtime_conv import count
out = sys.argv[1]
model, meta = tiny_model()
model.eval()
with torch.no_grad():
    traced = torch.jit.trace(model, torch.zeros(2, 3, 64, 64), check_trace=False)
assert count(traced)[0] > 0, 'trace bakes the flags'
traced.save(os.path.join(out, 'plain.pt'))
meta['name'] = 'plain'
json.dump(meta, open(os.path.join(out, 'plain.json'), 'w'))
";

/// The largest |difference| of two models' logits on one fixed batch.
const SAME_LOGITS: &str = "
import sys, torch
torch.manual_seed(0)
x = torch.randn(4, 3, 64, 64)
a, b = (torch.jit.load(p) for p in sys.argv[1:3])
with torch.no_grad():
    print(float((a(x) - b(x)).abs().max()))
";

#[test]
fn a_model_with_baked_flags_is_refused_until_rewritten_or_declared() {
    let dir = tempfile::tempdir().unwrap();
    let (out, plain) = (dir.path(), dir.path().join("plain.pt"));
    common::python_stdout(&["-c", PLAIN_TRACE, path_str(out)]);
    let sites = conv_sites(&plain).unwrap();
    assert!(sites.baked > 0, "{sites:?}");

    // A run refuses it, says why and what to do, and reads no image.
    let shards = out.join("shards");
    std::fs::create_dir(&shards).unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(shards.join("s-0.tar")).unwrap());
    common::tar_add(&mut b, "a.jpg", &common::jpeg(80, 60, 1));
    common::tar_add(&mut b, "a.cls", b"3");
    common::tar_add(&mut b, "a.json", br#"{"boxes": [[10, 10, 50, 40]]}"#);
    b.finish().unwrap();
    let pattern = format!("{}/s-*.tar", shards.display());
    let run = |results: &str| {
        let res = out.join(results);
        common::bgstream(&[
            "--shards",
            &pattern,
            "--model",
            path_str(&plain),
            "--out",
            path_str(&res),
            "--device",
            "cpu",
        ])
    };
    let (code, _, err) = run("refused");
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("baked in by torch.jit.trace") && err.contains("runtime_conv.py"),
        "{err}"
    );

    // Declared in the sidecar: it runs as it is.
    let side = Sidecar::path_for(&plain);
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&side).unwrap()).unwrap();
    meta["conv_flags"] = "baked".into();
    std::fs::write(&side, meta.to_string()).unwrap();
    let (code, _, err) = run("declared");
    assert_eq!(code, 0, "{err}");

    // Rewritten: no baked site left, the sidecar says runtime, the logits are the same.
    let before = out.join("before.pt");
    std::fs::copy(&plain, &before).unwrap();
    common::python_stdout(&["examples/runtime_conv.py", path_str(&plain)]);
    assert_eq!(
        conv_sites(&plain).unwrap(),
        ConvSites {
            baked: 0,
            runtime: sites.baked
        }
    );
    assert_eq!(
        Sidecar::read(&plain).unwrap().conv_flags,
        Some(ConvFlags::Runtime)
    );
    let diff = common::python_stdout(&["-c", SAME_LOGITS, path_str(&before), path_str(&plain)]);
    assert_eq!(String::from_utf8(diff).unwrap().trim(), "0.0");
    let (code, _, err) = run("rewritten");
    assert_eq!(code, 0, "{err}");
}

/// `--dump-logits` beside `--dump-inputs`, read by `scripts/agree_logits.py` (gpu-check's
/// agreement check): on CPU, bgstream's logits equal PyTorch's on the same frames to well
/// under 1e-3, over full batches; fewer full batches than asked for is a failure.
#[test]
fn dumped_logits_agree_with_pytorch_on_the_same_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = crate::resume::shards_n(tmp.path(), 3);
    let (inputs, logits) = (tmp.path().join("in"), tmp.path().join("log"));
    let lite0 = crate::common::model("efficientnet-lite0");
    let (code, _, stderr) = crate::common::bgstream(&[
        "--shards",
        &glob,
        "--model",
        path_str(&lite0),
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--variants",
        "original,bg_only,fg_white",
        "--no-progress",
        "--out",
        path_str(&tmp.path().join("out")),
        "--dump-inputs",
        path_str(&inputs),
        "--dump-logits",
        path_str(&logits),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let check = |min_batches: &str| {
        let out = std::process::Command::new(crate::common::python())
            .arg(crate::common::root().join("scripts/agree_logits.py"))
            .args(["--logits", path_str(&logits.join("efficientnet-lite0"))])
            .args(["--inputs", path_str(&inputs), "--model", path_str(&lite0)])
            .args([
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "--min-batches",
                min_batches,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let last: serde_json::Value =
            serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap();
        (out.status.code(), last, text)
    };
    // 12 images x 3 variants in batches of 8: 4 full batches and one of 4 rows.
    let (code, figures, text) = check("4");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(figures["full_batches"], 4, "{text}");
    assert_eq!(figures["rows"], 36, "{text}");
    assert!(
        figures["max_abs_logit_diff"].as_f64().unwrap() < 1e-4,
        "{text}"
    );
    assert_eq!(figures["top1_differs"], 0, "{text}");
    let (code, _, text) = check("5");
    assert_eq!(code, Some(1), "too few full batches must fail: {text}");
}
