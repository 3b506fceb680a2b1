//! Arbitrary bytes as a foreground mask file: the `.npy` loader (seeds: numpy-written arrays
//! of several dtypes, byte orders, memory orders and header versions) and the PNG path.
#![no_main]

use bgstream::ops::mask::decode_mask_png;
use bgstream::shard::masks::{mask_from_npy, mask_from_png};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = mask_from_npy(data) {
        // The PNG written for the shard is the mask read.
        let (w, h, _) = decode_mask_png(&m.png).expect("the mask PNG decodes");
        assert_eq!((w, h), (m.width, m.height));
    }
    let _ = mask_from_png(data.to_vec());
});
