//! Hostile inputs to `bgstream shard`, generated here: decompression bombs (a `.tgz` whose
//! XML member inflates to 1 GiB, a Caltech101 `.mat` whose zlib element inflates to
//! 1.2 GB) and lying headers (an ImageNet-9 `.npy` of shape `(2**62, 2**62)`, a PNG mask
//! claiming 100000x100000). The real binary runs under a data limit (`RLIMIT_DATA`) and
//! its peak RSS is measured (`wait4`): each must end with the clear error that names the
//! file and the limit, never exit 101, leave no `.tmp`, and stay under [`PEAK_RSS_KB`].
//!
//! The bombs are built in milliseconds: deflate with a full flush resets the compressor,
//! so one compressed 1 MiB block of zeros (or spaces) can be repeated as often as needed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use bgstream::source::tar_reader::read_shard;
use flate2::{Compress, Compression, Crc, FlushCompress};

use crate::common::{self, path_str};

/// The bound asserted on each bomb's peak RSS. Before the limits these runs took 4.6 and
/// 4.8 GB.
const PEAK_RSS_KB: i64 = 512 * 1024;
/// The address-space data limit the binary runs under: an allocation past it aborts the
/// run (a signal, which fails the test) instead of taking the machine's memory.
const DATA_LIMIT: u64 = 2 << 30;

const MIB: usize = 1 << 20;

/// Raw deflate of `prefix`, then `chunk` `n` times, then `suffix`; fast because a full
/// flush after each part lets the one compressed `chunk` be repeated.
fn deflate_repeated(prefix: &[u8], chunk: &[u8], n: usize, suffix: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut part = |data: &[u8], flush: FlushCompress| {
        let mut out = Vec::with_capacity(data.len() + 1024);
        let before = c.total_in();
        c.compress_vec(data, &mut out, flush).unwrap();
        assert_eq!(c.total_in() - before, data.len() as u64, "all input taken");
        out
    };
    let mut out = part(prefix, FlushCompress::Full);
    let block = part(chunk, FlushCompress::Full);
    for _ in 0..n {
        out.extend_from_slice(&block);
    }
    out.extend(part(suffix, FlushCompress::Finish));
    out
}

/// The gzip file of `prefix`, `chunk` x `n`, `suffix`.
fn gzip_repeated(prefix: &[u8], chunk: &[u8], n: usize, suffix: &[u8]) -> Vec<u8> {
    let mut crc = Crc::new();
    crc.update(prefix);
    for _ in 0..n {
        crc.update(chunk);
    }
    crc.update(suffix);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(deflate_repeated(prefix, chunk, n, suffix));
    out.extend(crc.sum().to_le_bytes());
    out.extend(crc.amount().to_le_bytes());
    out
}

/// The zlib stream of `prefix`, `chunk` x `n` (as a `.mat`'s miCOMPRESSED holds).
fn zlib_repeated(prefix: &[u8], chunk: &[u8], n: usize) -> Vec<u8> {
    let (mut a, mut b) = (1u64, 0u64);
    let mut adler = |data: &[u8]| {
        for &x in data {
            a = (a + x as u64) % 65521;
            b = (b + a) % 65521;
        }
    };
    adler(prefix);
    if chunk.iter().all(|&x| x == 0) {
        // Zeros leave `a` as it is and add it to `b` once per byte.
        b = (b + a * (chunk.len() as u64 * n as u64 % 65521)) % 65521;
    } else {
        (0..n).for_each(|_| adler(chunk));
    }
    let mut out = vec![0x78, 0xda];
    out.extend(deflate_repeated(prefix, chunk, n, &[]));
    out.extend((((b << 16) | a) as u32).to_be_bytes());
    out
}

/// Runs the release binary under [`DATA_LIMIT`]: (exit code or -signal, stdout, stderr,
/// peak RSS in KiB).
fn run_limited(args: &[&str]) -> (i32, String, String, i64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bgstream"));
    cmd.args(args)
        .env("BGSTREAM_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: DATA_LIMIT,
                rlim_max: DATA_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives the peak RSS
    let mut child = cmd.spawn().expect("bgstream starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for our own child, which `child` then never waits for again.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    eprintln!(
        "peak RSS {} MiB: bgstream {}",
        usage.ru_maxrss / 1024,
        args.join(" ")
    );
    (code, stdout, stderr, usage.ru_maxrss)
}

/// No `*.tmp` anywhere under `dir`.
fn assert_no_tmp(dir: &Path) {
    for e in walk(dir) {
        assert!(
            !e.to_string_lossy().ends_with(".tmp"),
            "left behind: {}",
            e.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn shard_args<'a>(
    format: &'a str,
    annotations: &'a Path,
    images: &'a Path,
    out: &'a Path,
) -> Vec<&'a str> {
    vec![
        "shard",
        "--format",
        format,
        "--annotations",
        path_str(annotations),
        "--images",
        path_str(images),
        "--out",
        path_str(out),
    ]
}

/// Checks what every bomb run must be: not a panic, not a signal, within the RSS bound,
/// no temporary left.
fn assert_contained(code: i32, stderr: &str, peak_kb: i64, out: &Path) {
    assert_ne!(code, 101, "a panic:\n{stderr}");
    assert!(
        code >= 0,
        "killed by signal {} (out of memory?):\n{stderr}",
        -code
    );
    assert!(
        peak_kb < PEAK_RSS_KB,
        "peak RSS {} MiB, over the bound of {} MiB",
        peak_kb / 1024,
        PEAK_RSS_KB / 1024
    );
    assert_no_tmp(out);
}

/// A GNU tar header for a regular member of `size` bytes.
fn tar_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

#[test]
fn a_tgz_whose_xml_inflates_to_a_gigabyte_stops_at_the_member_limit() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("ILSVRC2012_bbox_val_v3.tgz");
    let member = "val/ILSVRC2012_val_00000001.xml";
    let size = 1024 * MIB;
    let mut prefix = tar_header(member, size as u64);
    prefix.extend(b"<annotation>");
    let spaces = vec![b' '; MIB];
    // 1 GiB of spaces (less the 12 bytes of the tag) and the end of the archive.
    let gz = gzip_repeated(&prefix, &spaces, size / MIB - 1, &[b' '; MIB - 12]);
    std::fs::write(&tgz, &gz).unwrap();
    assert!(gz.len() < 4 * MIB, "the bomb is small: {} bytes", gz.len());
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(
        images.join("ILSVRC2012_val_00000001.JPEG"),
        common::jpeg(32, 24, 1),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr, peak) =
        run_limited(&shard_args("imagenet-xml", &tgz, &images, &out));
    assert_contained(code, &stderr, peak, &out);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("{}:{member}", tgz.display()))
            && stderr.contains("over 1 MiB")
            && stderr.contains("XML_FILE_LIMIT"),
        "{stderr}"
    );
}

#[test]
fn a_tar_long_name_that_inflates_to_a_gigabyte_stops_at_the_metadata_limit() {
    // The tar crate reads a GNU long name whole into memory: only our meter stops it.
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("bbox.tgz");
    let mut h = tar::Header::new_gnu();
    h.set_path("././@LongLink").unwrap();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(1 << 30);
    h.set_cksum();
    let gz = gzip_repeated(h.as_bytes(), &vec![b'a'; MIB], 1024, &[]);
    std::fs::write(&tgz, gz).unwrap();
    let out = dir.path().join("out");
    let (code, _, stderr, peak) = run_limited(&shard_args("imagenet-xml", &tgz, dir.path(), &out));
    assert_contained(code, &stderr, peak, &out);
    assert!(
        code == 1 && stderr.contains("TAR_METADATA_LIMIT") && stderr.contains("bbox.tgz"),
        "{stderr}"
    );
}

/// A MAT v5 header and elements (little-endian).
fn mat_header() -> Vec<u8> {
    let mut h = b"MATLAB 5.0 MAT-file, Platform: GLNXA64".to_vec();
    h.resize(124, b' ');
    h.extend([0x00, 0x01]);
    h.extend(b"IM");
    h
}

fn mat_element(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_le_bytes().to_vec();
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out.resize(out.len().next_multiple_of(8), 0);
    out
}

/// The start of an miMATRIX of class double, `name`, 2 x `n` values (of which only the
/// tags are written: the data follows).
fn matrix_head(name: &str, n: u32) -> Vec<u8> {
    let data_bytes = 16 * n;
    let mut sub = mat_element(6, &[6, 0, 0, 0, 0, 0, 0, 0]);
    sub.extend(mat_element(
        5,
        &[2i32.to_le_bytes(), (n as i32).to_le_bytes()].concat(),
    ));
    sub.extend(mat_element(1, name.as_bytes()));
    sub.extend(9u32.to_le_bytes());
    sub.extend(data_bytes.to_le_bytes());
    let mut out = 14u32.to_le_bytes().to_vec();
    out.extend((sub.len() as u32 + data_bytes).to_le_bytes());
    out.extend(sub);
    out
}

fn box_coord(values: [f64; 4]) -> Vec<u8> {
    let mut sub = mat_element(6, &[6, 0, 0, 0, 0, 0, 0, 0]);
    sub.extend(mat_element(
        5,
        &[1i32.to_le_bytes(), 4i32.to_le_bytes()].concat(),
    ));
    sub.extend(mat_element(1, b"box_coord"));
    sub.extend(mat_element(
        9,
        &values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    ));
    mat_element(14, &sub)
}

#[test]
fn a_mat_whose_zlib_element_inflates_past_a_gigabyte_is_an_unreadable_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let (anns, imgs) = (
        dir.path().join("Annotations"),
        dir.path().join("101_ObjectCategories"),
    );
    for d in [anns.join("accordion"), imgs.join("accordion")] {
        std::fs::create_dir_all(d).unwrap();
    }
    for n in [1, 2] {
        let jpg = imgs.join(format!("accordion/image_000{n}.jpg"));
        std::fs::write(jpg, common::jpeg(64, 48, n)).unwrap();
    }
    // annotation_0001: a box and an outline of 75M points (1.2 GB of f64) in one zlib
    // element; annotation_0002: a plain one.
    let points = 75_000_000u32;
    let zeros = vec![0u8; MIB];
    let blocks = (16 * points as usize).div_ceil(MIB);
    let z = zlib_repeated(&matrix_head("obj_contour", points), &zeros, blocks);
    let mut bomb = mat_header();
    bomb.extend(box_coord([2.0, 40.0, 3.0, 50.0]));
    bomb.extend(15u32.to_le_bytes());
    bomb.extend((z.len() as u32).to_le_bytes());
    bomb.extend(&z);
    assert!(
        bomb.len() < 4 * MIB,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let mat = anns.join("accordion/annotation_0001.mat");
    std::fs::write(&mat, &bomb).unwrap();
    let mut plain = mat_header();
    plain.extend(box_coord([2.0, 40.0, 3.0, 50.0]));
    std::fs::write(anns.join("accordion/annotation_0002.mat"), plain).unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr, peak) = run_limited(&shard_args("caltech101", &anns, &imgs, &out));
    assert_contained(code, &stderr, peak, &out);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("shard.summary.json")).unwrap()).unwrap();
    let left_out = summary["without_objects"].to_string();
    assert!(
        left_out.contains("accordion/image_0001")
            && left_out.contains(path_str(&mat))
            && left_out.contains("MAT_FILE_LIMIT"),
        "{left_out}"
    );
    // The shard holds the other sample only, and nothing large.
    let shard = out.join("shard-000000.tar");
    assert!(std::fs::metadata(&shard).unwrap().len() < MIB as u64);
    let mut keys = Vec::new();
    read_shard(&shard, |s| {
        keys.push(s.key.clone());
        true
    });
    assert_eq!(keys, ["accordion/image_0002"]);
}

/// An ImageNet-9 layout with one image and its mask file `mask_name` holding `mask`.
fn imagenet9(
    root: &Path,
    mask_name: &str,
    mask: &[u8],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (masks, images) = (root.join("fg_mask/val"), root.join("original/val"));
    for d in [masks.join("00_dog"), images.join("00_dog")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        images.join("00_dog/n02085620_1.JPEG"),
        common::jpeg(48, 40, 2),
    )
    .unwrap();
    std::fs::write(masks.join("00_dog").join(mask_name), mask).unwrap();
    (masks, images)
}

/// The mask error recorded in the shard for the one sample, and the summary's bad masks.
fn mask_error(out: &Path) -> (String, String) {
    let mut err = None;
    read_shard(&out.join("shard-000000.tar"), |s| {
        err = s.annotation().unwrap().mask_error;
        true
    });
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("shard.summary.json")).unwrap()).unwrap();
    (err.expect("a mask_error"), summary["bad_masks"].to_string())
}

#[test]
fn an_npy_mask_of_shape_2_62_squared_is_a_bad_mask_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut header =
        "{'descr': '|b1', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }"
            .to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend([1u8; 64]);
    let (masks, images) = imagenet9(dir.path(), "n02085620_1.npy", &npy);
    let out = dir.path().join("out");
    let (code, stdout, stderr, peak) = run_limited(&shard_args("imagenet9", &masks, &images, &out));
    assert_contained(code, &stderr, peak, &out);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (err, listed) = mask_error(&out);
    for text in [&err, &listed] {
        assert!(
            text.contains("n02085620_1.npy") && text.contains("MASK_PIXEL_LIMIT"),
            "{text}"
        );
    }
}

/// A PNG that is only its signature, an IHDR claiming `w x h` (8-bit gray) and an IEND.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut crc = Crc::new();
        crc.update(kind);
        crc.update(data);
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(data);
        c.extend(crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &deflate_repeated(&[], &[0; 1024], 1, &[])));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn a_png_mask_claiming_100000_squared_is_a_bad_mask_before_decoding() {
    for (w, h) in [(100_000, 100_000), (65_536, 65_536)] {
        let dir = tempfile::tempdir().unwrap();
        let (masks, images) = imagenet9(dir.path(), "n02085620_1.png", &png_header_only(w, h));
        let out = dir.path().join("out");
        let (code, stdout, stderr, peak) =
            run_limited(&shard_args("imagenet9", &masks, &images, &out));
        assert_contained(code, &stderr, peak, &out);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let (err, _) = mask_error(&out);
        assert!(
            err.contains("n02085620_1.png")
                && err.contains(&format!("{w}x{h}"))
                && err.contains("MASK_PIXEL_LIMIT"),
            "{err}"
        );
    }
}
