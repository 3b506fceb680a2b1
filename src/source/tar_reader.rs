//! Streams one tar shard into [`Sample`]s, grouping consecutive members by key.
//!
//! Problems become per-sample errors, never panics or silently missing samples: a member
//! repeated within a sample, a key with a dot (`a.b.jpg`), a sample member whose name has
//! no key (`dir/.jpg`), a key seen before in the shard (renamed `KEY#dupN` so that every
//! row stays unique), a member cut short by a truncated shard, a sample over the byte
//! limit. What cannot be tied to a sample (a symlink or device member, a member without a
//! key and without a sample extension, an unreadable or truncated archive) is counted in
//! the [`ShardReport`].
//!
//! Memory: every member is paid for from a [`Budget`] before it is read (its declared
//! size, at most the per-sample limit), and the sample carries the payment until it is
//! dropped; see [`super::budget`]. The shard's raw bytes are hashed as they stream past,
//! so a shard read to its end is known by its content ([`ShardContent`]) without a second
//! pass.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use super::budget::{Permit, ReadLimits};
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
    /// Size and hash of the file's bytes, when it was read to its end without an error.
    pub content: Option<ShardContent>,
}

/// A shard file known by its content: what `--resume` and `aggregate --shards` compare.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardContent {
    pub bytes: u64,
    /// XXH3-128 of the file's bytes, 32 hex digits.
    pub xxh3: String,
}

impl ShardContent {
    /// Hashes `path` whole (what a reader of the shard would have computed).
    pub fn of_file(path: &Path) -> std::io::Result<ShardContent> {
        let mut r = Hashing::new(File::open(path)?);
        std::io::copy(&mut r, &mut std::io::sink())?;
        Ok(r.content())
    }
}

/// How many samples a plain tar shard holds, from its headers alone (member data is
/// skipped by seeking: a fraction of a second per shard). `None` for a gzip shard (it would
/// have to be decompressed) or one that cannot be read: the count only feeds progress.
pub fn count_samples(path: &Path) -> Option<u64> {
    let mut file = BufReader::new(File::open(path).ok()?);
    let magic = std::io::BufRead::fill_buf(&mut file).ok()?;
    if compression(&magic[..magic.len().min(6)]).is_some() {
        return None;
    }
    let mut archive = tar::Archive::new(file);
    let mut last: Option<String> = None;
    let mut n = 0;
    for entry in archive.entries_with_seek().ok()? {
        let entry = entry.ok()?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = member_name(&entry.path_bytes());
        let key = match split_key(&member) {
            Some((key, _)) => key.to_string(),
            None => match keyless_sample_member(&member) {
                Some(key) => key,
                None => continue,
            },
        };
        if last.as_deref() != Some(key.as_str()) {
            n += 1;
            last = Some(key);
        }
    }
    Some(n)
}

/// [`ShardContent::of_file`] of every path, on all cores, in order.
pub fn contents<'a>(paths: impl Iterator<Item = &'a Path>) -> Vec<std::io::Result<ShardContent>> {
    let paths: Vec<&Path> = paths.collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = (paths.chunks(per))
            .map(|c| {
                let h = s.spawn(|| c.iter().map(|p| ShardContent::of_file(p)).collect());
                (c.len(), h)
            })
            .collect();
        // A result per path whatever happens: a shorter list would skip a check.
        (parts.into_iter())
            .flat_map(|(n, h)| {
                h.join().unwrap_or_else(|_| {
                    (0..n)
                        .map(|_| Err(std::io::Error::other("hashing thread panicked")))
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    })
}

/// Passes bytes through, hashing them.
struct Hashing<R> {
    inner: R,
    hasher: Xxh3,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Xxh3::new(),
            bytes: 0,
        }
    }

    fn content(&self) -> ShardContent {
        ShardContent {
            bytes: self.bytes,
            xxh3: format!("{:032x}", self.hasher.digest128()),
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

const IMAGE_EXTS: [&str; 3] = ["jpg", "jpeg", "png"];

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

/// A member that [`split_key`] gives no key but whose extension says it belongs to a
/// sample (`dir/.jpg`, `.cls`): the key it would have had, the path up to its file name,
/// or the whole path when that is empty. Such a sample is recorded as `bad_key`, not
/// dropped.
fn keyless_sample_member(path: &str) -> Option<String> {
    let ext = path.rsplit('.').next()?.to_ascii_lowercase();
    let sample_ext = IMAGE_EXTS.contains(&ext.as_str()) || matches!(ext.as_str(), "cls" | "json");
    if !sample_ext || !path.contains('.') {
        return None;
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Some(if dir.is_empty() { path } else { dir }.to_string())
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

/// [`read_shard_with`] with the default limits and nothing to stop it.
pub fn read_shard(path: &Path, emit: impl FnMut(Sample) -> bool) -> ShardReport {
    read_shard_with(path, &ReadLimits::default(), &|| false, emit)
}

/// Reads `path`, calling `emit` for each sample in order. `emit` returns `false` to stop
/// early (the consumer went away or the run is stopping); `stop` ends a wait for the
/// memory budget. I/O and format errors end the shard and are reported, after every
/// sample before them has been emitted.
/// A gzip-compressed shard (`.tar.gz`, `.tgz`, whatever its name) is read through a
/// streaming decoder; other compressions are named in the error.
pub fn read_shard_with(
    path: &Path,
    limits: &ReadLimits,
    stop: &dyn Fn() -> bool,
    emit: impl FnMut(Sample) -> bool,
) -> ShardReport {
    let fail = |error: String| ShardReport {
        error: Some(error),
        ..Default::default()
    };
    let mut file = match File::open(path) {
        Ok(file) => BufReader::with_capacity(1 << 20, Hashing::new(file)),
        Err(e) => return fail(format!("cannot open: {e}")),
    };
    let magic = match std::io::BufRead::fill_buf(&mut file) {
        Ok(buf) => buf[..buf.len().min(6)].to_vec(),
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    let shard: Arc<str> = path.display().to_string().into();
    let mut report = match compression(&magic) {
        None => read_entries(&mut file, shard, limits, stop, emit),
        Some("gzip") => {
            let mut gz = flate2::bufread::MultiGzDecoder::new(&mut file);
            let mut report = read_entries(&mut gz, shard, limits, stop, emit);
            finish(&mut gz, &mut report);
            report
        }
        Some(other) => {
            return fail(format!(
                "the shard is {other}-compressed; bgstream reads plain and gzip-compressed \
                 tar shards (decompress it, or recompress it with gzip)"
            ))
        }
    };
    // The bytes after the archive's end (tar's zero blocks, padding) belong to the file.
    finish(&mut file, &mut report);
    if report.error.is_none() && !report.stopped {
        report.content = Some(file.get_ref().content());
    }
    report
}

/// Reads what is left of `r` (so that every byte of the file passes the hash); a read
/// error is the shard's error.
fn finish(r: &mut impl Read, report: &mut ShardReport) {
    if report.error.is_some() || report.stopped {
        return;
    }
    if let Err(e) = std::io::copy(r, &mut std::io::sink()) {
        report.error = Some(format!("reading past the archive's end failed: {e}"));
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

/// [`read_shard`] over any reader (the fuzz target feeds it raw bytes), with the default
/// limits.
pub fn read_archive(
    reader: impl Read,
    shard: Arc<str>,
    emit: impl FnMut(Sample) -> bool,
) -> ShardReport {
    let mut reader = reader;
    read_entries(&mut reader, shard, &ReadLimits::default(), &|| false, emit)
}

/// The sample being assembled: its members so far, what they cost, and their permit.
struct Pending {
    sample: Sample,
    bytes: u64,
    permit: Option<Permit>,
}

/// Groups the archive's members into samples (see the module docs).
struct Grouper<'a, F> {
    shard: Arc<str>,
    limits: &'a ReadLimits,
    stop: &'a dyn Fn() -> bool,
    emit: F,
    seen: HashMap<String, usize>,
    current: Option<Pending>,
    report: ShardReport,
}

impl<F: FnMut(Sample) -> bool> Grouper<'_, F> {
    fn start(&mut self, key: &str) -> Pending {
        let n = self.seen.entry(key.to_string()).or_default();
        *n += 1;
        let mut s = Sample {
            shard: self.shard.clone(),
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
        Pending {
            sample: s,
            bytes: 0,
            permit: None,
        }
    }

    /// Emits the sample being assembled, if any; false when the consumer wants no more.
    fn flush(&mut self) -> bool {
        let Some(mut p) = self.current.take() else {
            return true;
        };
        p.sample.permit = p.permit.map(Arc::new);
        self.report.samples += 1;
        let go_on = (self.emit)(p.sample);
        self.report.stopped |= !go_on;
        go_on
    }

    /// Makes `key` the current sample (emitting the previous one); false to stop.
    fn switch_to(&mut self, key: &str) -> bool {
        let same = self.current.as_ref().is_some_and(|p| {
            let k = &p.sample.key;
            k == key || k.starts_with(key) && k[key.len()..].starts_with("#dup")
        });
        if same {
            return true;
        }
        if !self.flush() {
            return false;
        }
        self.current = Some(self.start(key));
        true
    }

    /// Reads one member of the current sample within its limits. `Err` ends the shard.
    fn read_member(
        &mut self,
        entry: &mut impl Read,
        member: &str,
        ext: &str,
        declared: u64,
    ) -> Result<(), ()> {
        let limit = self.limits.sample_bytes;
        let p = self.current.as_mut().expect("switch_to made one");
        let total = p.bytes.saturating_add(declared);
        if total > limit {
            // Not read: the archive skips its declared bytes, which ends the shard with a
            // read error when the declaration was a lie.
            p.sample.problem.get_or_insert(ItemError::MemberTooLarge {
                member: member.to_string(),
                bytes: total,
                limit,
            });
            return Ok(());
        }
        let Some(paid) = self.limits.budget.acquire(declared, self.stop) else {
            self.report.stopped = true;
            return Err(());
        };
        p.bytes = total;
        match &mut p.permit {
            Some(permit) => permit.absorb(paid),
            None => p.permit = Some(paid),
        }
        // Grows with the bytes that really arrive, not with the declared size.
        let mut data = Vec::with_capacity(declared.min(1 << 20) as usize);
        let read = entry.read_to_end(&mut data).and_then(|n| {
            if n as u64 == declared {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{n} of {declared} bytes"),
                ))
            }
        });
        if let Err(e) = read {
            self.report.error = Some(format!("member {member} is truncated: {e}"));
            p.sample.problem = Some(ItemError::Truncated(format!(
                "member {member} is cut short: {e}"
            )));
            self.flush();
            return Err(());
        }
        attach(&mut p.sample, member, ext, data);
        Ok(())
    }
}

fn read_entries(
    reader: &mut impl Read,
    shard: Arc<str>,
    limits: &ReadLimits,
    stop: &dyn Fn() -> bool,
    emit: impl FnMut(Sample) -> bool,
) -> ShardReport {
    let mut g = Grouper {
        shard,
        limits,
        stop,
        emit,
        seen: HashMap::new(),
        current: None,
        report: ShardReport::default(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            g.report.error = Some(format!("not a tar archive: {e}"));
            return g.report;
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                g.report.error = Some(format!("tar read failed: {e}"));
                // The sample being assembled may have lost members: say so.
                if let Some(p) = g.current.as_mut() {
                    p.sample.problem = Some(ItemError::Truncated(format!(
                        "shard ends inside this sample: {e}"
                    )));
                }
                break;
            }
        };
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            if !kind.is_dir() {
                g.report.skipped_members += 1;
            }
            continue;
        }
        let member = member_name(&entry.path_bytes());
        let (key, ext) = match split_key(&member) {
            Some((key, ext)) => (key.to_string(), ext),
            None => match keyless_sample_member(&member) {
                Some(key) => {
                    if !g.switch_to(&key) {
                        return g.report;
                    }
                    let p = g.current.as_mut().expect("switch_to made one");
                    (p.sample.problem).get_or_insert(ItemError::BadKey {
                        member: member.clone(),
                    });
                    continue;
                }
                None => {
                    g.report.skipped_members += 1;
                    continue;
                }
            },
        };
        if !g.switch_to(&key) {
            return g.report;
        }
        let declared = entry.size();
        if g.read_member(&mut entry, &member, &ext, declared).is_err() {
            return g.report;
        }
    }
    g.flush();
    g.report
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
    use crate::source::budget::Budget;

    #[test]
    fn keys_split_at_first_dot_of_the_name() {
        assert_eq!(split_key("a/b.c/k.JPG"), Some(("a/b.c/k", "jpg".into())));
        assert_eq!(split_key("k.seg.png"), Some(("k", "seg.png".into())));
        assert_eq!(split_key("noext"), None);
        assert_eq!(split_key(".hidden"), None);
        assert_eq!(split_key("d/.n01.jpg"), Some(("d/.n01", "jpg".into())));
        assert_eq!(split_key("é.jpg"), Some(("é", "jpg".into())));
    }

    /// A gzip shard of `n` samples of one `member`-byte image each.
    fn bomb(n: usize, member: usize) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let gz = flate2::write::GzEncoder::new(f.reopen().unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let zeros = vec![0u8; member];
        for i in 0..n {
            let mut h = tar::Header::new_gnu();
            h.set_size(member as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("k{i}.jpg"), &zeros[..])
                .unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        f
    }

    #[test]
    fn samples_held_downstream_stop_the_reader_at_the_cap() {
        let f = bomb(6, 3 << 20);
        // Samples of 3 MiB, a 10 MiB cap: a consumer that keeps every sample gets three,
        // then the reader waits (here: gives up when asked to stop) instead of reading on.
        let limits = ReadLimits {
            sample_bytes: 4 << 20,
            budget: Budget::new(10 << 20),
        };
        let held = std::cell::RefCell::new(Vec::new());
        let waits = std::cell::Cell::new(0);
        let stop = || {
            waits.set(waits.get() + 1);
            waits.get() > 3
        };
        let report = read_shard_with(f.path(), &limits, &stop, |s| {
            held.borrow_mut().push(s);
            true
        });
        assert!(report.stopped && report.content.is_none(), "{report:?}");
        assert_eq!(held.borrow().len(), 3);
        assert_eq!(limits.budget.used(), 9 << 20);
        held.borrow_mut().clear();
        assert_eq!(limits.budget.used(), 0, "dropping the samples pays back");
        // Consumed as they come, the whole shard goes through the same cap, and is hashed.
        let report = read_shard_with(f.path(), &limits, &|| false, |_| true);
        assert_eq!(report.samples, 6);
        let content = report.content.unwrap();
        assert_eq!(content, ShardContent::of_file(f.path()).unwrap());
        assert_eq!(content.bytes, std::fs::metadata(f.path()).unwrap().len());
    }

    #[test]
    fn a_sample_over_its_limit_is_recorded_not_read() {
        let f = bomb(2, 5 << 20);
        let limits = ReadLimits::for_readers(1, 4 << 20, 8 << 20);
        let mut problems = Vec::new();
        let report = read_shard_with(f.path(), &limits, &|| false, |s| {
            assert!(s.image.is_none(), "not read");
            problems.push(s.problem.map(|p| p.code()));
            true
        });
        assert_eq!(problems, [Some("too_large"), Some("too_large")]);
        assert!(
            report.error.is_none() && report.content.is_some(),
            "{report:?}"
        );
    }

    #[test]
    fn headers_alone_count_the_samples_of_a_plain_tar() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for name in [
            "a.jpg", "a.cls", "b.jpg", "odd/.jpg", "README", "c.json", "c.jpg",
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &b"abc"[..]).unwrap();
        }
        b.finish().unwrap();
        drop(b);
        let read = read_shard(f.path(), |_| true).samples;
        assert_eq!((count_samples(f.path()), read), (Some(4), 4));
        assert_eq!(count_samples(bomb(1, 10).path()), None, "gzip: not counted");
    }

    #[test]
    fn keyless_members_of_a_sample_are_named_not_dropped() {
        assert_eq!(split_key("abc/.jpg"), None);
        assert_eq!(keyless_sample_member("abc/.jpg"), Some("abc/".into()));
        assert_eq!(keyless_sample_member("abc/.CLS"), Some("abc/".into()));
        assert_eq!(keyless_sample_member(".json"), Some(".json".into()));
        assert_eq!(keyless_sample_member("README"), None);
        assert_eq!(keyless_sample_member("dir/.txt"), None);
    }

    #[test]
    fn names_that_are_not_utf8_stay_distinct() {
        assert_eq!(member_name(b"a\xffb.jpg"), "a\\xffb.jpg");
        assert_ne!(member_name(b"\xfe.jpg"), member_name(b"\xff.jpg"));
        assert_eq!(member_name("ü.jpg".as_bytes()), "ü.jpg");
    }
}
