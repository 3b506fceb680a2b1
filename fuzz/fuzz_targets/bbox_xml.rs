//! Arbitrary text as an ImageNet or Pascal VOC bounding-box XML (seeds: real ImageNet XMLs,
//! VOC files with parts and difficult objects, odd sizes).
#![no_main]

use std::sync::OnceLock;

use bgstream::shard::imagenet::{parse_xml, Classes};
use bgstream::shard::parse_voc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static CLASSES: OnceLock<Classes> = OnceLock::new();
    let classes = CLASSES.get_or_init(Classes::imagenet);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_xml("ILSVRC2012_val_00000001", text, classes);
    for skip_difficult in [false, true] {
        if let Ok(voc) = parse_voc(text, skip_difficult) {
            let _ = bgstream::shard::voc_label(&voc.objects);
        }
    }
});
