//! Background textures for `fg_texture`.
//!
//! Resolution order: `--textures DIR`, else `$BGSTREAM_TEXTURES`, else the built-in set:
//! scikit-image's CC0 brick, grass and gravel photos embedded in the binary. Nothing depends
//! on the working directory: the same command gives the same rows from anywhere.
//! A folder is read recursively for `.jpg`, `.jpeg` and `.png` files, in sorted path order
//! so that the texture index a key hashes to is stable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::decode::{decode_into, Limits};
use super::geometry::{Geometry, Interpolation, Preprocess};
use super::resize::CropResizer;
use super::Rgb8;
use crate::error::FatalError;

const BUILTIN: [(&str, &[u8]); 3] = [
    (
        "builtin:brick",
        include_bytes!("../../assets/textures/brick.png"),
    ),
    (
        "builtin:grass",
        include_bytes!("../../assets/textures/grass.png"),
    ),
    (
        "builtin:gravel",
        include_bytes!("../../assets/textures/gravel.png"),
    ),
];

/// Decoded textures, pre-cropped to every output size the run needs.
#[derive(Debug, Default)]
pub struct TextureSet {
    pub names: Vec<String>,
    /// xxh3 over every texture's name and file bytes: the run identity records it, so a
    /// `--resume` with other texture files (same names) is refused.
    pub content_hash: u64,
    /// (size, interpolation) -> one `size*size*3` image per texture.
    prepared: HashMap<(usize, Interpolation), Vec<Vec<u8>>>,
    originals: Vec<Rgb8>,
}

/// The texture folder: `--textures`, else `$BGSTREAM_TEXTURES` (read through `env`, so
/// tests never touch the real environment); `None` means the built-in set.
pub fn texture_dir(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| {
        env("BGSTREAM_TEXTURES")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if matches!(
            path.extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .as_deref(),
            Some("jpg" | "jpeg" | "png")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

impl TextureSet {
    /// Loads the textures of `dir`, or the built-in set when `dir` is `None`.
    pub fn load(dir: Option<&Path>) -> Result<Self, FatalError> {
        let limits = Limits::default();
        let mut set = TextureSet::default();
        let mut buf = Vec::new();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut add = |name: String, bytes: &[u8], set: &mut TextureSet| {
            hasher.update(name.as_bytes());
            hasher.update(&[0]);
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
            let (width, height) = decode_into(bytes, &mut buf, &limits).map_err(|source| {
                FatalError::TexturesFrom {
                    path: PathBuf::from(&name),
                    source,
                }
            })?;
            set.names.push(name);
            set.originals.push(Rgb8 {
                width,
                height,
                data: buf.clone(),
            });
            Ok::<_, FatalError>(())
        };
        match dir {
            Some(dir) => {
                let mut paths = Vec::new();
                collect(dir, &mut paths).map_err(|e| FatalError::io(dir, e))?;
                paths.sort();
                for p in paths {
                    let bytes = std::fs::read(&p).map_err(|e| FatalError::io(&p, e))?;
                    // Named relative to the folder: the names go into rows and run identity.
                    let name = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                    add(name, &bytes, &mut set)?;
                }
                if set.names.is_empty() {
                    return Err(FatalError::Textures {
                        path: dir.to_path_buf(),
                        reason: "no .jpg/.jpeg/.png files".into(),
                    });
                }
            }
            None => {
                for (name, bytes) in BUILTIN {
                    add(name.to_string(), bytes, &mut set)?;
                }
            }
        }
        set.content_hash = hasher.digest();
        Ok(set)
    }

    /// Crops every texture to `size x size` (shorter side to `size`, centre crop).
    pub fn prepare(&mut self, size: usize, interpolation: Interpolation) -> Result<(), FatalError> {
        if self.prepared.contains_key(&(size, interpolation)) {
            return Ok(());
        }
        let fill = Preprocess {
            input_size: size,
            crop_pct: 1.0,
            interpolation,
        };
        let mut resizer = CropResizer::new();
        let mut all = Vec::with_capacity(self.originals.len());
        for (img, name) in self.originals.iter().zip(&self.names) {
            let fail = |source| FatalError::TexturesFrom {
                path: PathBuf::from(name),
                source,
            };
            let g = Geometry::new(img.width, img.height, &fill).map_err(fail)?;
            let mut out = vec![0; size * size * 3];
            resizer
                .resize_crop(&img.data, &g, interpolation, &mut out)
                .map_err(fail)?;
            all.push(out);
        }
        self.prepared.insert((size, interpolation), all);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The prepared texture `index` at `size` (call [`prepare`](Self::prepare) first).
    pub fn get(&self, size: usize, interpolation: Interpolation, index: usize) -> Option<&[u8]> {
        self.prepared
            .get(&(size, interpolation))
            .and_then(|v| v.get(index))
            .map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texture_dir_is_the_flag_then_the_variable_never_the_cwd() {
        let env = |v: &'static str| move |k: &str| (k == "BGSTREAM_TEXTURES").then(|| v.into());
        let none = |_: &str| None;
        assert_eq!(texture_dir(None, none), None);
        assert_eq!(texture_dir(None, env("")), None);
        assert_eq!(texture_dir(None, env("/t")), Some(PathBuf::from("/t")));
        assert_eq!(
            texture_dir(Some(Path::new("/flag")), env("/t")),
            Some(PathBuf::from("/flag"))
        );
    }

    #[test]
    fn builtin_set_loads_and_prepares() {
        let mut set = TextureSet::load(None).unwrap();
        assert_eq!(set.len(), 3);
        set.prepare(32, Interpolation::Bilinear).unwrap();
        let t = set.get(32, Interpolation::Bilinear, 2).unwrap();
        assert_eq!(t.len(), 32 * 32 * 3);
        // grayscale photo expanded to RGB: channels equal, and not a flat image
        assert!(t.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        assert!(t.iter().any(|&v| v != t[0]));
    }
}
