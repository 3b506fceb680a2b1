//! The output folder of `bgstream shard`: one shard set per folder, so that a later
//! `--shards 'OUT/*.tar'` reads exactly what one `shard` wrote.
//!
//! Before writing anything, `shard` records in [`MANIFEST`] every file it is going to write
//! (the shards and the summary). A folder that is not empty is refused unless
//! `--overwrite`, which removes exactly the files an earlier manifest lists (and their
//! temporaries) and nothing else: if anything else is left, the folder is refused all the
//! same, naming what is there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::FatalError;

/// The list of files a `shard` run writes into its folder.
pub const MANIFEST: &str = "_shards.json";

#[derive(Debug, Serialize, Deserialize)]
struct Listed {
    /// File names (no folders) inside the output folder.
    files: Vec<String>,
}

/// The names `shard` will write for `samples` samples: shards, then the summary.
pub fn planned(prefix: &str, samples: usize, shard_size: usize) -> Vec<String> {
    let n = samples.div_ceil(shard_size.max(1));
    let mut files: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:06}.tar")).collect();
    files.push(format!("{prefix}.summary.json"));
    files
}

/// Readies `out` for a shard set of `files` (see the module docs) and records them.
pub fn claim(out: &Path, files: &[String], overwrite: bool) -> Result<(), FatalError> {
    std::fs::create_dir_all(out).map_err(|e| FatalError::output(out, e))?;
    if overwrite {
        remove_listed(out)?;
    }
    let left = entries(out)?;
    if !left.is_empty() {
        let shown: Vec<String> = left.iter().take(5).cloned().collect();
        return Err(FatalError::OutputInUse {
            path: out.to_path_buf(),
            reason: format!(
                "holds {} file(s) ({}{}){}: a later --shards 'DIR/*.tar' would mix them with \
                 the new shards; choose an empty or new folder{}",
                left.len(),
                shown.join(", "),
                if left.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                },
                if overwrite {
                    " that no earlier `bgstream shard` listed in its _shards.json"
                } else {
                    ""
                },
                if overwrite {
                    ""
                } else {
                    ", or pass --overwrite to replace an earlier `bgstream shard` output there"
                }
            ),
        });
    }
    let path = out.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&Listed {
        files: files.to_vec(),
    })
    .map_err(|e| FatalError::output(&path, e))?;
    crate::atomic::write_file(&path, &json)
}

fn entries(out: &Path) -> Result<Vec<String>, FatalError> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .map_err(|e| FatalError::io(out, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Removes the files (and `NAME.tmp`s) the manifest in `out` lists, then the manifest.
fn remove_listed(out: &Path) -> Result<(), FatalError> {
    let path = out.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FatalError::io(&path, e)),
    };
    let listed: Listed = serde_json::from_slice(&bytes).map_err(|e| FatalError::Input {
        path: path.clone(),
        reason: format!("not a list of shard files ({e}); remove the folder by hand"),
    })?;
    for name in &listed.files {
        // Names only: a manifest cannot make --overwrite delete outside the folder.
        if name.contains('/') || matches!(name.as_str(), "" | "." | "..") {
            return Err(FatalError::Input {
                path: path.clone(),
                reason: format!("lists {name:?}, which is not a file name"),
            });
        }
        for victim in [out.join(name), crate::atomic::tmp_path(&out.join(name))] {
            remove_if_there(&victim)?;
        }
    }
    remove_if_there(&path)
}

fn remove_if_there(p: &PathBuf) -> Result<(), FatalError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FatalError::output(p, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_removes_exactly_what_was_listed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("s");
        let first = planned("p", 5, 2);
        assert_eq!(
            first,
            [
                "p-000000.tar",
                "p-000001.tar",
                "p-000002.tar",
                "p.summary.json"
            ]
        );
        claim(&out, &first, false).unwrap();
        for f in &first {
            std::fs::write(out.join(f), b"x").unwrap();
        }
        std::fs::write(out.join("p-000003.tar.tmp"), b"x").unwrap();
        // Not empty: refused without --overwrite, nothing touched.
        let e = claim(&out, &planned("p", 1, 2), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--overwrite") && e.contains("p-000000.tar"),
            "{e}"
        );
        assert_eq!(entries(&out).unwrap().len(), 6);
        // A stray file (not listed) survives --overwrite, and the folder is refused.
        let e = claim(&out, &planned("p", 1, 2), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("p-000003.tar.tmp"), "{e}");
        assert_eq!(entries(&out).unwrap(), ["p-000003.tar.tmp"]);
        std::fs::remove_file(out.join("p-000003.tar.tmp")).unwrap();
        // A smaller set replaces a larger one: no old shard is left behind.
        let second = planned("p", 1, 2);
        claim(&out, &second, true).unwrap();
        assert_eq!(entries(&out).unwrap(), [MANIFEST]);
        // A manifest naming a path outside the folder is refused, nothing removed.
        std::fs::write(out.join(MANIFEST), r#"{"files": ["../x"]}"#).unwrap();
        assert!(claim(&out, &second, true).is_err());
    }
}
