//! Streams one tar shard into [`Sample`]s, grouping consecutive members by key.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use super::Sample;

/// How reading one shard ended, besides the samples it produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShardReport {
    pub samples: u64,
    /// Members skipped because they are not regular files or have no key.
    pub skipped_members: u64,
    /// Set when the shard could not be read to its end (truncated, unreadable).
    pub error: Option<String>,
}

/// Splits a member path into `(key, extension)`: the key is the path up to the first dot
/// of the file name; the extension is what follows, lower-cased.
pub fn split_key(path: &str) -> Option<(&str, String)> {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let dot = path[name_start..].find('.')? + name_start;
    let (key, ext) = (&path[..dot], &path[dot + 1..]);
    (!key.is_empty() && !ext.is_empty()).then(|| (key, ext.to_ascii_lowercase()))
}

fn attach(sample: &mut Sample, ext: &str, data: Vec<u8>) {
    let slot = match ext {
        "jpg" | "jpeg" | "png" => &mut sample.image,
        "cls" => &mut sample.cls,
        "json" => &mut sample.json,
        _ => return,
    };
    if slot.is_some() {
        sample.problem = Some(format!(
            "member {}.{ext} repeats a member of this sample",
            sample.key
        ));
    }
    *slot = Some(data);
}

/// Reads `path`, calling `emit` for each sample in order. `emit` returns `false` to stop
/// early (the consumer went away). I/O and format errors end the shard and are reported,
/// after every complete sample before them has been emitted.
pub fn read_shard(path: &Path, mut emit: impl FnMut(Sample) -> bool) -> ShardReport {
    let shard: Arc<str> = path.display().to_string().into();
    let mut report = ShardReport::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            report.error = Some(format!("cannot open: {e}"));
            return report;
        }
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            report.error = Some(format!("not a tar archive: {e}"));
            return report;
        }
    };
    let mut current: Option<Sample> = None;
    let mut flush = |s: Option<Sample>, report: &mut ShardReport| -> bool {
        match s {
            Some(s) => {
                report.samples += 1;
                emit(s)
            }
            None => true,
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                report.error = Some(format!("tar read failed: {e}"));
                break;
            }
        };
        if !entry.header().entry_type().is_file() {
            if !entry.header().entry_type().is_dir() {
                report.skipped_members += 1;
            }
            continue;
        }
        let member = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(_) => {
                report.skipped_members += 1;
                continue;
            }
        };
        let Some((key, ext)) = split_key(&member) else {
            report.skipped_members += 1;
            continue;
        };
        let mut data = Vec::with_capacity(entry.size() as usize);
        if let Err(e) = entry.read_to_end(&mut data) {
            report.error = Some(format!("member {member} is truncated: {e}"));
            // The sample this member belonged to is incomplete: report it broken.
            let mut s = match current.take() {
                Some(s) if s.key == key => s,
                other => {
                    if !flush(other, &mut report) {
                        return report;
                    }
                    Sample {
                        shard: shard.clone(),
                        key: key.to_string(),
                        ..Default::default()
                    }
                }
            };
            s.problem = Some(format!("member {member} is truncated"));
            flush(Some(s), &mut report);
            return report;
        }
        if current.as_ref().is_some_and(|s| s.key != key) && !flush(current.take(), &mut report) {
            return report;
        }
        let sample = current.get_or_insert_with(|| Sample {
            shard: shard.clone(),
            key: key.to_string(),
            ..Default::default()
        });
        attach(sample, &ext, data);
    }
    flush(current.take(), &mut report);
    report
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
    }
}
