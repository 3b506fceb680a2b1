//! Real JPEGs cut short must be `decode_error`, never a grey-filled "ok" image; whole
//! ones must still decode.

use bgstream::error::ItemError;
use bgstream::ops::decode::{decode_into, Limits};

use crate::common;

/// The offset of the first scan header (0xFFDA) of the main image.
fn first_scan(bytes: &[u8]) -> usize {
    let mut i = 2;
    loop {
        assert_eq!(bytes[i], 0xFF);
        if bytes[i + 1] == 0xDA {
            return i;
        }
        i += 2 + u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
    }
}

#[test]
fn cut_jpegs_are_decode_errors_and_whole_ones_decode() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(data.join("imagenet-val/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut checked = 0;
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let name = path.display();
        decode_into(&bytes, &mut buf, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        let sos = first_scan(&bytes);
        // 190 bytes into the scan, half way, and just the end-of-image marker missing.
        for cut in [sos + 190, bytes.len() / 2, bytes.len() - 2] {
            if cut <= sos {
                continue;
            }
            match decode_into(&bytes[..cut], &mut buf, &limits) {
                Err(ItemError::Decode(_)) => checked += 1,
                other => panic!("{name} cut at {cut} of {}: {other:?}", bytes.len()),
            }
        }
    }
    assert!(checked >= 3 * 60, "{checked} cuts checked");
}
