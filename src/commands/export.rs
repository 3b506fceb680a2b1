//! `bgstream export`: the Python exporter (`examples/export_models.py` and the module it
//! imports, carried inside the binary so that an installed bgstream needs no checkout) run
//! with the venv's torch, then every model it wrote loaded as a run loads it: sidecar,
//! convolution flags, class map, one forward pass on the CPU.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::cli::ExportArgs;

/// The exporter's files, as this binary was built with them.
const SCRIPTS: [(&str, &str); 2] = [
    (
        "export_models.py",
        include_str!("../../examples/export_models.py"),
    ),
    (
        "runtime_conv.py",
        include_str!("../../examples/runtime_conv.py"),
    ),
];

pub fn run(a: &ExportArgs) -> anyhow::Result<u8> {
    let python = python();
    let dir = tempfile::tempdir().context("creating a temporary folder for the exporter")?;
    for (name, text) in SCRIPTS {
        std::fs::write(dir.path().join(name), text)
            .with_context(|| format!("writing {}", dir.path().join(name).display()))?;
    }
    let record = dir.path().join("exported.txt");
    let status = Command::new(&python)
        .arg(dir.path().join("export_models.py"))
        .args(&a.args)
        .arg("--record")
        .arg(&record)
        .env("BGSTREAM_EXPORT_PROG", "bgstream export")
        .status()
        .with_context(|| {
            format!(
                "starting the exporter with {} (set BGSTREAM_PYTHON to a Python with torch \
                 2.11 and timm)",
                Path::new(&python).display()
            )
        })?;
    if !status.success() {
        // The exporter's own exit code: 2 is a usage or input problem it has explained.
        return Ok(status.code().map_or(1, |c| c.clamp(1, 255) as u8));
    }
    let written = std::fs::read_to_string(&record).unwrap_or_default();
    for pt in written.lines().filter(|l| !l.is_empty()) {
        check(Path::new(pt))?;
    }
    Ok(0)
}

/// The Python to run the exporter with: `$BGSTREAM_PYTHON`; the one beside this binary (a
/// venv it was installed into); the checkout's `.venv` (a `target/release` build);
/// `python3`.
fn python() -> OsString {
    if let Some(p) = std::env::var_os("BGSTREAM_PYTHON") {
        return p;
    }
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    let candidates: Vec<PathBuf> = dir
        .map(|d| {
            vec![
                d.join("python3"),
                d.join("python"),
                d.join("../../.venv/bin/python"),
            ]
        })
        .unwrap_or_default();
    (candidates.into_iter().find(|p| p.is_file()))
        .map_or_else(|| "python3".into(), PathBuf::into_os_string)
}

/// Loads `pt` as a run would (CPU, fp32) and says what it is.
#[cfg(feature = "torch")]
fn check(pt: &Path) -> anyhow::Result<()> {
    let model =
        bgstream::infer::Model::load(pt, tch::Device::Cpu, bgstream::precision::Precision::Fp32)
            .with_context(|| {
                format!(
                    "the exported {} does not load as a run loads it",
                    pt.display()
                )
            })?;
    let s = &model.sidecar;
    let classes = match &s.class_map {
        Some(m) => format!(
            "{} classes mapped to ImageNet-1k by {:?}",
            s.num_classes, m.name
        ),
        None => format!("{} classes", s.num_classes),
    };
    eprintln!(
        "checked {}: {} ({classes}, input {}, weights {})",
        pt.display(),
        s.name,
        s.input_size,
        s.weights
    );
    Ok(())
}

/// Without libtorch only the sidecar can be checked.
#[cfg(not(feature = "torch"))]
fn check(pt: &Path) -> anyhow::Result<()> {
    let s = bgstream::sidecar::Sidecar::read(pt)?;
    eprintln!(
        "checked {} (sidecar only: built without libtorch): {}",
        pt.display(),
        s.name
    );
    Ok(())
}
