//! What a TorchScript archive's code says of its convolutions, read from the zip without
//! libtorch. `torch.jit.trace` writes each convolution as `torch._convolution(...)` with
//! cuDNN's benchmark, deterministic and TF32 flags as constants, so run-time settings
//! (`--cudnn-benchmark`, the TF32 policy) never reach it; `torch.convolution` and
//! `torch.convNd` read them from the process at every call.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{panic_message, FatalError};

/// How much of one code file is read (TorchScript code files are kilobytes).
const CODE_FILE_LIMIT: u64 = 16 << 20;
/// How many code files are read before the archive is refused as a bomb.
const CODE_FILES_LIMIT: usize = 100_000;

/// Calls whose convolutions read cuDNN's settings when they run.
const RUNTIME_CALLS: [&str; 5] = [
    "torch.convolution(",
    "torch.conv1d(",
    "torch.conv2d(",
    "torch.conv3d(",
    "torch.conv_transpose",
];

/// Convolution call sites in an archive's code (one per distinct module class, not per
/// layer: a class's code is shared by its instances).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvSites {
    /// `torch._convolution(`: flags baked in.
    pub baked: usize,
    /// `torch.convolution(`, `torch.conv1d/2d/3d(`, `torch.conv_transpose...(`: flags read
    /// at run time.
    pub runtime: usize,
}

impl ConvSites {
    /// Counts the call sites in one code file's text.
    pub fn of_code(text: &str) -> Self {
        let baked = text.matches("torch._convolution(").count();
        let runtime = RUNTIME_CALLS.iter().map(|p| text.matches(p).count()).sum();
        ConvSites { baked, runtime }
    }

    fn add(&mut self, other: ConvSites) {
        self.baked += other.baked;
        self.runtime += other.runtime;
    }
}

/// The convolution call sites of the TorchScript archive at `path` (its `code/**.py`).
pub fn conv_sites(path: &Path) -> Result<ConvSites, FatalError> {
    let bad = |reason: String| FatalError::Model {
        path: path.to_path_buf(),
        reason,
    };
    // The zip reader trusts the archive's directory; a hostile one must not take the run
    // down with a panic.
    std::panic::catch_unwind(|| read_sites(path)).map_err(|p| {
        bad(format!(
            "not a readable TorchScript archive ({})",
            panic_message(&*p)
        ))
    })?
}

fn read_sites(path: &Path) -> Result<ConvSites, FatalError> {
    let file = File::open(path).map_err(|e| FatalError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| FatalError::ModelFrom {
        path: path.to_path_buf(),
        what: "not a TorchScript archive (zip)".into(),
        source: e.into(),
    })?;
    let mut sites = ConvSites::default();
    let mut read = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| FatalError::ModelFrom {
            path: path.to_path_buf(),
            what: format!("zip entry {i}"),
            source: e.into(),
        })?;
        if !is_code(entry.name()) {
            continue;
        }
        read += 1;
        if read > CODE_FILES_LIMIT {
            return Err(FatalError::Model {
                path: path.to_path_buf(),
                reason: format!("more than {CODE_FILES_LIMIT} code files"),
            });
        }
        let mut text = Vec::new();
        (&mut entry)
            .take(CODE_FILE_LIMIT)
            .read_to_end(&mut text)
            .map_err(|e| FatalError::ModelFrom {
                path: path.to_path_buf(),
                what: format!("code file {}", entry.name()),
                source: e.into(),
            })?;
        sites.add(ConvSites::of_code(&String::from_utf8_lossy(&text)));
    }
    Ok(sites)
}

/// `ARCHIVE/code/...py` (not its `.debug_pkl` twins, not the weights under `data/`).
fn is_code(name: &str) -> bool {
    name.split('/').nth(1) == Some("code") && name.ends_with(".py")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baked_and_runtime_sites_are_told_apart() {
        let traced = "input = torch._convolution(x, w, None, [2, 2], [1, 1], [1, 1], False, \
                      [0, 0], 1, False, False, True, True)";
        assert_eq!(
            ConvSites::of_code(traced),
            ConvSites {
                baked: 1,
                runtime: 0
            }
        );
        let rewritten = "_0 = torch.convolution(x, w, None, [2, 2], [1, 1], [1, 1], False, \
                         [0, 0], 1)\n_1 = torch.conv2d(x, w)";
        assert_eq!(
            ConvSites::of_code(rewritten),
            ConvSites {
                baked: 0,
                runtime: 2
            }
        );
        assert!(is_code("m/code/__torch__/torch/nn/modules/conv.py"));
        assert!(!is_code(
            "m/code/__torch__/torch/nn/modules/conv.py.debug_pkl"
        ));
        assert!(!is_code("m/data/0"));
    }

    #[test]
    fn what_is_not_a_zip_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.pt");
        for bytes in [&b""[..], b"PK\x05\x06 truncated", &[0xff; 300]] {
            std::fs::write(&path, bytes).unwrap();
            let e = conv_sites(&path).unwrap_err();
            assert!(e.to_string().contains("m.pt"), "{e}");
        }
    }
}
