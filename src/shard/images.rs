//! Where `bgstream shard` finds images by key: a folder searched recursively (flat, the
//! ImageFolder tree `val/<wnid>/KEY.JPEG`, Kaggle's `CLS-LOC/val/`), or the members of an
//! uncompressed tar such as `ILSVRC2012_img_val.tar`, read in place without unpacking.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{bad, key_from_path, limits};
use crate::error::FatalError;

/// One image's bytes: a file, or a member of a tar read at its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    File(PathBuf),
    Member {
        tar: Arc<Path>,
        /// The member's path inside the tar.
        name: String,
        offset: u64,
        size: u64,
    },
}

impl ImageRef {
    /// The image's bytes, at most [`limits::IMAGE_FILE`]: a member's declared size is checked
    /// before anything is allocated for it.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            ImageRef::File(path) => limits::read_all(File::open(path)?, limits::IMAGE_FILE),
            ImageRef::Member {
                tar, offset, size, ..
            } => {
                if limits::IMAGE_FILE.check(*size).is_err() {
                    return Err(limits::IMAGE_FILE.exceeded());
                }
                let len = usize::try_from(*size).map_err(|_| limits::IMAGE_FILE.exceeded())?;
                let mut buf = vec![0; len];
                File::open(tar)?.read_exact_at(&mut buf, *offset)?;
                Ok(buf)
            }
        }
    }

    /// The image's size in bytes as its file or tar header says (0 when unknown).
    pub fn size(&self) -> u64 {
        match self {
            ImageRef::File(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
            ImageRef::Member { size, .. } => *size,
        }
    }

    /// The file, or the tar holding the member.
    pub fn path(&self) -> &Path {
        match self {
            ImageRef::File(p) => p,
            ImageRef::Member { tar, .. } => tar,
        }
    }

    /// The image's own name (file or member path): its extension names the format.
    pub fn name(&self) -> &str {
        match self {
            ImageRef::File(p) => p.to_str().unwrap_or_default(),
            ImageRef::Member { name, .. } => name,
        }
    }

    /// `path` or `tar:member`, for messages.
    pub fn describe(&self) -> String {
        match self {
            ImageRef::File(p) => p.display().to_string(),
            ImageRef::Member { tar, name, .. } => format!("{}:{name}", tar.display()),
        }
    }
}

/// How the images were laid out (told in `shard`'s one-line report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagesLayout {
    /// Every image directly in the folder.
    Flat,
    /// `DIR/<class>/<image>`: each image one folder down.
    ImageFolder { folders: usize },
    /// Images at several depths.
    Tree,
    /// Members of an uncompressed tar.
    Tar,
}

/// The images of a folder or tar, by key (file name up to its first dot).
#[derive(Debug)]
pub struct ImageIndex {
    pub root: PathBuf,
    pub layout: ImagesLayout,
    pub by_key: HashMap<String, ImageRef>,
    /// ImageFolder layout: the folder each image sits in (the class it was filed under).
    pub folder: HashMap<String, String>,
}

impl ImageIndex {
    /// Indexes `root`: a tar file, or a folder searched recursively.
    pub fn open(root: &Path) -> Result<Self, FatalError> {
        if root.is_dir() {
            index_folder(root)
        } else if root.is_file() {
            index_tar(root)
        } else {
            Err(FatalError::io(
                root,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ))
        }
    }

    pub fn describe(&self) -> String {
        let n = self.by_key.len();
        match self.layout {
            ImagesLayout::Flat => format!("flat folder ({n} images)"),
            ImagesLayout::ImageFolder { folders } => {
                format!("ImageFolder tree ({n} images in {folders} class folders)")
            }
            ImagesLayout::Tree => format!("folder tree ({n} images)"),
            ImagesLayout::Tar => format!("tar, read in place ({n} images)"),
        }
    }
}

fn is_image(name: &str) -> bool {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    ["jpg", "jpeg", "png"]
        .iter()
        .any(|x| ext.eq_ignore_ascii_case(x))
}

/// A config error naming both places a key was found.
fn twice(root: &Path, key: &str, a: &ImageRef, b: &ImageRef) -> FatalError {
    bad(
        root,
        format!(
            "two images have the key {key:?}: {} and {} (keys must be unique)",
            a.describe(),
            b.describe()
        ),
    )
}

fn insert(
    index: &mut HashMap<String, ImageRef>,
    root: &Path,
    key: String,
    image: ImageRef,
) -> Result<(), FatalError> {
    match index.get(&key) {
        Some(first) => Err(twice(root, &key, first, &image)),
        None => {
            index.insert(key, image);
            Ok(())
        }
    }
}

fn index_folder(root: &Path) -> Result<ImageIndex, FatalError> {
    let mut by_key = HashMap::new();
    let mut folder = HashMap::new();
    let mut depths = [false; 3]; // depth 1, depth 2, deeper
    for entry in walkdir::WalkDir::new(root).follow_links(true).min_depth(1) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            FatalError::io(path, e.into())
        })?;
        let name = entry.file_name().to_str().unwrap_or_default();
        if !entry.file_type().is_file() || !is_image(name) {
            continue;
        }
        // depth >= 1 (min_depth above): slots 0, 1, 2 for depths 1, 2 and deeper.
        if let Some(d) = depths.get_mut(entry.depth().clamp(1, 3).saturating_sub(1)) {
            *d = true;
        }
        let key = key_from_path(entry.path());
        if entry.depth() == 2 {
            if let Some(parent) = entry.path().parent().and_then(|p| p.file_name()) {
                folder.insert(key.clone(), parent.to_string_lossy().into_owned());
            }
        }
        insert(
            &mut by_key,
            root,
            key,
            ImageRef::File(entry.path().to_path_buf()),
        )?;
    }
    let layout = match depths {
        [_, false, false] => ImagesLayout::Flat,
        [false, true, false] => ImagesLayout::ImageFolder {
            folders: folder
                .values()
                .collect::<std::collections::HashSet<_>>()
                .len(),
        },
        _ => ImagesLayout::Tree,
    };
    if !matches!(layout, ImagesLayout::ImageFolder { .. }) {
        folder.clear();
    }
    Ok(ImageIndex {
        root: root.to_path_buf(),
        layout,
        by_key,
        folder,
    })
}

/// Indexes the image members of an uncompressed tar by their offsets: only headers are
/// read here (seeking past the data), the bytes later by [`ImageRef::read`].
fn index_tar(path: &Path) -> Result<ImageIndex, FatalError> {
    let io = |e| FatalError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(io)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        return Err(bad(
            path,
            "a gzip-compressed tar of images cannot be read in place; use the uncompressed \
             .tar (as ILSVRC2012_img_val.tar is) or unpack it into a folder",
        ));
    }
    let file = File::open(path).map_err(io)?;
    let tar: Arc<Path> = Arc::from(path);
    let mut archive = tar::Archive::new(file);
    let mut by_key = HashMap::new();
    let entries = archive
        .entries_with_seek()
        .map_err(|e| FatalError::input_from(path, "not a tar", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FatalError::input_from(path, "bad tar entry", e))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| FatalError::input_from(path, "bad member name", e))?
            .to_string_lossy()
            .into_owned();
        if !is_image(&name) {
            continue;
        }
        let image = ImageRef::Member {
            tar: tar.clone(),
            offset: entry.raw_file_position(),
            size: entry.size(),
            name: name.clone(),
        };
        insert(&mut by_key, path, key_from_path(Path::new(&name)), image)?;
    }
    Ok(ImageIndex {
        root: path.to_path_buf(),
        layout: ImagesLayout::Tar,
        by_key,
        folder: HashMap::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn tar_members_are_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{}/b.JPEG", "d".repeat(120)); // a GNU long name
        let tar = dir.path().join("val.tar");
        std::fs::write(
            &tar,
            tar_of(&[
                ("a.JPEG", b"first"),
                ("notes.txt", b"x"),
                (&long, b"second image"),
            ]),
        )
        .unwrap();
        let index = ImageIndex::open(&tar).unwrap();
        assert_eq!(index.layout, ImagesLayout::Tar);
        assert_eq!(index.by_key.len(), 2);
        assert_eq!(index.by_key["a"].read().unwrap(), b"first");
        assert_eq!(index.by_key["b"].read().unwrap(), b"second image");
        assert_eq!(index.by_key["b"].name(), long);

        let dup = dir.path().join("dup.tar");
        std::fs::write(&dup, tar_of(&[("x/a.jpg", b"1"), ("y/a.png", b"2")])).unwrap();
        let e = ImageIndex::open(&dup).unwrap_err().to_string();
        assert!(e.contains("two images have the key \"a\""), "{e}");
    }

    #[test]
    fn folder_layouts_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let flat = dir.path().join("flat");
        std::fs::create_dir_all(&flat).unwrap();
        std::fs::write(flat.join("a.JPEG"), b"1").unwrap();
        std::fs::write(flat.join("readme.txt"), b"1").unwrap();
        let index = ImageIndex::open(&flat).unwrap();
        assert_eq!((index.layout, index.by_key.len()), (ImagesLayout::Flat, 1));

        let tree = dir.path().join("tree");
        for (wnid, key) in [("n01", "a"), ("n01", "b"), ("n02", "c")] {
            std::fs::create_dir_all(tree.join(wnid)).unwrap();
            std::fs::write(tree.join(wnid).join(format!("{key}.JPEG")), b"1").unwrap();
        }
        let index = ImageIndex::open(&tree).unwrap();
        assert_eq!(index.layout, ImagesLayout::ImageFolder { folders: 2 });
        assert_eq!(index.folder["c"], "n02");
        std::fs::write(tree.join("d.jpg"), b"1").unwrap();
        assert_eq!(ImageIndex::open(&tree).unwrap().layout, ImagesLayout::Tree);
        std::fs::write(tree.join("n02/a.png"), b"1").unwrap();
        let e = ImageIndex::open(&tree).unwrap_err().to_string();
        assert!(e.contains("key \"a\""), "{e}");
        let gz = dir.path().join("x.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        let e = ImageIndex::open(&gz).unwrap_err().to_string();
        assert!(e.contains("gzip-compressed"), "{e}");
    }
}
