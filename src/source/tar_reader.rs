//! Streams one tar shard into [`Sample`]s, grouping consecutive members by key.
//!
//! Problems become per-sample errors, never panics or silently missing samples: a member
//! repeated within a sample, a key with a dot (`a.b.jpg`), a key seen before in the shard
//! (renamed `KEY#dupN` so that every row stays unique), a member cut short by a truncated
//! shard. What cannot be tied to a sample (a symlink or device member, a member without a
//! key, an unreadable or truncated archive) is counted in the [`ShardReport`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use super::Sample;
use crate::error::ItemError;

/// How reading one shard ended, besides the samples it produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardReport {
    pub samples: u64,
    /// Members skipped because they are not regular files or have no key.
    pub skipped_members: u64,
    /// Set when the shard could not be read to its end (truncated, unreadable).
    pub error: Option<String>,
    /// The consumer asked to stop before the end of the shard.
    pub stopped: bool,
}

const IMAGE_EXTS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Largest member read into memory. A header may declare any size (PAX `size=`, GNU
/// base-256): nothing is allocated from the declaration, and a member over this is not read.
pub const MAX_MEMBER_BYTES: u64 = 1 << 30;

/// Splits a member path into `(key, extension)`: the key is the path up to the first dot
/// of the file name after its first character (so `.n01.jpg` is the sample `.n01`); the
/// extension is what follows, lower-cased.
pub fn split_key(path: &str) -> Option<(&str, String)> {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let first = path[name_start..].chars().next()?.len_utf8();
    let dot = path[name_start + first..].find('.')? + name_start + first;
    let (key, ext) = (&path[..dot], &path[dot + 1..]);
    (!key.is_empty() && !ext.is_empty()).then(|| (key, ext.to_ascii_lowercase()))
}

fn attach(sample: &mut Sample, member: &str, ext: &str, data: Vec<u8>) {
    if ext == "mask.png" {
        if sample.mask.replace(data).is_some() {
            sample
                .problem
                .get_or_insert(ItemError::BadAnnotation(format!(
                    "member {member} repeats a member of this sample"
                )));
        }
        return;
    }
    let last = ext.rsplit('.').next().unwrap_or(ext);
    if ext.contains('.') && (IMAGE_EXTS.contains(&last) || matches!(last, "cls" | "json")) {
        sample.problem.get_or_insert(ItemError::BadKey {
            member: member.to_string(),
        });
        return;
    }
    let slot = match ext {
        "jpg" | "jpeg" | "png" => &mut sample.image,
        "cls" => &mut sample.cls,
        "json" => &mut sample.json,
        _ => return,
    };
    if slot.is_some() {
        sample
            .problem
            .get_or_insert(ItemError::BadAnnotation(format!(
                "member {member} repeats a member of this sample"
            )));
    }
    *slot = Some(data);
}

/// Reads `path`, calling `emit` for each sample in order. `emit` returns `false` to stop
/// early (the consumer went away or the run is stopping). I/O and format errors end the
/// shard and are reported, after every sample before them has been emitted.
/// A gzip-compressed shard (`.tar.gz`, `.tgz`, whatever its name) is read through a
/// streaming decoder; other compressions are named in the error.
pub fn read_shard(path: &Path, emit: impl FnMut(Sample) -> bool) -> ShardReport {
    let fail = |error: String| ShardReport {
        error: Some(error),
        ..Default::default()
    };
    let mut file = match File::open(path) {
        Ok(file) => BufReader::with_capacity(1 << 20, file),
        Err(e) => return fail(format!("cannot open: {e}")),
    };
    let magic = match std::io::BufRead::fill_buf(&mut file) {
        Ok(buf) => buf[..buf.len().min(6)].to_vec(),
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    let shard: Arc<str> = path.display().to_string().into();
    match compression(&magic) {
        None => read_archive(file, shard, emit),
        Some("gzip") => read_archive(flate2::bufread::MultiGzDecoder::new(file), shard, emit),
        Some(other) => fail(format!(
            "the shard is {other}-compressed; bgstream reads plain and gzip-compressed tar \
             shards (decompress it, or recompress it with gzip)"
        )),
    }
}

/// The compression a file starts with, by its magic bytes.
fn compression(magic: &[u8]) -> Option<&'static str> {
    [
        (&b"\x1f\x8b"[..], "gzip"),
        (&b"\x28\xb5\x2f\xfd"[..], "zstd"),
        (&b"BZh"[..], "bzip2"),
        (&b"\xfd7zXZ\x00"[..], "xz"),
        (&b"\x04\x22\x4d\x18"[..], "lz4"),
    ]
    .into_iter()
    .find(|(m, _)| magic.starts_with(m))
    .map(|(_, name)| name)
}

/// [`read_shard`] over any reader (the fuzz target feeds it raw bytes).
pub fn read_archive(
    reader: impl Read,
    shard: Arc<str>,
    mut emit: impl FnMut(Sample) -> bool,
) -> ShardReport {
    let mut report = ShardReport::default();
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            report.error = Some(format!("not a tar archive: {e}"));
            return report;
        }
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut current: Option<Sample> = None;
    let new_sample = |key: &str, seen: &mut HashMap<String, usize>| {
        let n = seen.entry(key.to_string()).or_default();
        *n += 1;
        let mut s = Sample {
            shard: shard.clone(),
            key: key.to_string(),
            ..Default::default()
        };
        if *n > 1 {
            s.key = format!("{key}#dup{n}");
            s.problem = Some(ItemError::DuplicateKey {
                key: key.to_string(),
                n: *n,
            });
        }
        s
    };
    // Emits a finished sample; false when the consumer wants no more.
    let mut flush = |s: Option<Sample>, report: &mut ShardReport| -> bool {
        match s {
            Some(s) => {
                report.samples += 1;
                let go_on = emit(s);
                report.stopped |= !go_on;
                go_on
            }
            None => true,
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                report.error = Some(format!("tar read failed: {e}"));
                // The sample being assembled may have lost members: say so.
                if let Some(s) = current.as_mut() {
                    s.problem = Some(ItemError::Truncated(format!(
                        "shard ends inside this sample: {e}"
                    )));
                }
                break;
            }
        };
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            if !kind.is_dir() {
                report.skipped_members += 1;
            }
            continue;
        }
        let member = member_name(&entry.path_bytes());
        let Some((key, ext)) = split_key(&member) else {
            report.skipped_members += 1;
            continue;
        };
        let same_sample = current.as_ref().is_some_and(|s| {
            s.key == key || s.key.starts_with(key) && s.key[key.len()..].starts_with("#dup")
        });
        if !same_sample {
            if !flush(current.take(), &mut report) {
                return report;
            }
            current = Some(new_sample(key, &mut seen));
        }
        let sample = current.as_mut().expect("set above");
        let expected = entry.size();
        if expected > MAX_MEMBER_BYTES {
            // Not read: the archive skips its declared bytes, which ends the shard with a
            // read error when the declaration was a lie.
            sample.problem.get_or_insert(ItemError::MemberTooLarge {
                member: member.clone(),
                bytes: expected,
                limit: MAX_MEMBER_BYTES,
            });
            continue;
        }
        // Grows with the bytes that really arrive, not with the declared size.
        let mut data = Vec::with_capacity(expected.min(1 << 20) as usize);
        let read = entry.read_to_end(&mut data).and_then(|n| {
            if n as u64 == expected {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{n} of {expected} bytes"),
                ))
            }
        });
        if let Err(e) = read {
            report.error = Some(format!("member {member} is truncated: {e}"));
            sample.problem = Some(ItemError::Truncated(format!(
                "member {member} is cut short: {e}"
            )));
            flush(current.take(), &mut report);
            return report;
        }
        attach(sample, &member, &ext, data);
    }
    flush(current.take(), &mut report);
    report
}

/// A member path as text. Bytes that are not UTF-8 are written `\xNN`, so two different
/// names never become one key (a lossy conversion maps them all to U+FFFD).
fn member_name(bytes: &[u8]) -> String {
    let mut name = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        name.push_str(chunk.valid());
        for b in chunk.invalid() {
            name.push_str(&format!("\\x{b:02x}"));
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_first_dot_of_the_name() {
        assert_eq!(split_key("a/b.c/k.JPG"), Some(("a/b.c/k", "jpg".into())));
        assert_eq!(split_key("k.seg.png"), Some(("k", "seg.png".into())));
        assert_eq!(split_key("noext"), None);
        assert_eq!(split_key(".hidden"), None);
        assert_eq!(split_key("d/.n01.jpg"), Some(("d/.n01", "jpg".into())));
        assert_eq!(split_key("é.jpg"), Some(("é", "jpg".into())));
    }

    #[test]
    fn names_that_are_not_utf8_stay_distinct() {
        assert_eq!(member_name(b"a\xffb.jpg"), "a\\xffb.jpg");
        assert_ne!(member_name(b"\xfe.jpg"), member_name(b"\xff.jpg"));
        assert_eq!(member_name("ü.jpg".as_bytes()), "ü.jpg");
    }
}
