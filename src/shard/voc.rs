//! The Pascal VOC reader of `bgstream shard` (layout and labelling rules in the parent docs).
//! Each XML file is read through [`limits::XML_FILE`], the split list through
//! [`limits::LIST_FILE`], and the ids are counted against [`limits::IMAGES`].

use std::path::{Path, PathBuf};

use super::limits::{self, Tally};
use super::xml::{parse_pascal_xml, XmlError};
use super::{check_unique_keys, Entry, ImageRef};
use crate::error::FatalError;
use crate::ops::geometry::BBox;
use crate::source::Annotation;

/// The 20 Pascal VOC classes in their standard order: the class index is the position.
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// What [`read_voc`] found.
#[derive(Debug, Default)]
pub struct VocRead {
    pub entries: Vec<Entry>,
    /// Ids whose JPEG is not in the images folder.
    pub missing: Vec<String>,
    /// Ids left without objects.
    pub without_objects: Vec<String>,
}

/// Reads a Pascal VOC folder (layout and rules in the module docs). `images` holds the
/// JPEGs (`root/JPEGImages` in the standard layout).
pub fn read_voc(
    root: &Path,
    images: &Path,
    split: Option<&str>,
    skip_difficult: bool,
) -> Result<VocRead, FatalError> {
    let (ids, listed_in) = voc_ids(root, split)?;
    let mut out = VocRead::default();
    let mut tally = Tally::default();
    for id in ids {
        let xml_path = root.join("Annotations").join(format!("{id}.xml"));
        let text = limits::read_file_string(&xml_path, limits::XML_FILE)?;
        let voc = parse_voc(&text, skip_difficult).map_err(|e| e.at(&xml_path, None))?;
        tally
            .add(1, voc.objects.len(), 0)
            .map_err(|e| FatalError::input(&xml_path, e))?;
        let Some((label, boxes)) = voc_label(&voc.objects) else {
            out.without_objects.push(id);
            continue;
        };
        let image = images.join(format!("{id}.jpg"));
        if !image.is_file() {
            out.missing.push(id);
            continue;
        }
        out.entries.push(Entry {
            mask: None,
            key: id,
            image: ImageRef::File(image),
            annotation: Annotation {
                label: label as i64,
                boxes,
                width: voc.width,
                height: voc.height,
                wnid: VOC_CLASSES.get(label).map(|c| c.to_string()),
                ..Default::default()
            },
        });
    }
    check_unique_keys(&out.entries, &listed_in)?;
    Ok(out)
}

/// The ids of `root/ImageSets/Main/SPLIT.txt` (first token of each non-empty line), or of
/// every `root/Annotations/*.xml`, sorted; and the file or folder they came from.
fn voc_ids(root: &Path, split: Option<&str>) -> Result<(Vec<String>, PathBuf), FatalError> {
    if let Some(name) = split {
        let list = root.join("ImageSets/Main").join(format!("{name}.txt"));
        let text = limits::read_file_string(&list, limits::LIST_FILE)?;
        let ids = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        return Ok((ids, list));
    }
    let dir = root.join("Annotations");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| FatalError::io(&dir, e))? {
        let path = entry.map_err(|e| FatalError::io(&dir, e))?.path();
        let is_xml = path.extension().is_some_and(|x| x == "xml");
        if let (true, Some(stem)) = (is_xml, path.file_stem().and_then(|s| s.to_str())) {
            ids.push(stem.to_string());
        }
    }
    ids.sort();
    Ok((ids, dir))
}

/// One VOC XML file, reduced to what bgstream uses.
#[derive(Debug, Clone, PartialEq)]
pub struct VocImage {
    /// From `<size>`; `None` when absent.
    pub width: Option<usize>,
    pub height: Option<usize>,
    /// `(class index, box)` per `<object>`, the box already in bgstream's convention;
    /// difficult objects are left out when `skip_difficult`.
    pub objects: Vec<(usize, BBox)>,
}

/// Parses one VOC annotation ([`parse_pascal_xml`]) and maps its objects to VOC classes
/// and bgstream's box convention. The error is the reason, for the caller to name the file
/// ([`XmlError::at`]).
pub fn parse_voc(xml: &str, skip_difficult: bool) -> Result<VocImage, XmlError> {
    let doc = parse_pascal_xml(xml)?;
    let mut objects = Vec::new();
    for (i, o) in doc.objects.into_iter().enumerate() {
        let class = VOC_CLASSES
            .iter()
            .position(|c| *c == o.name)
            .ok_or_else(|| {
                format!(
                    "<object> {}: unknown VOC class {:?} (the 20 classes are {})",
                    i.saturating_add(1),
                    o.name,
                    VOC_CLASSES.join(", ")
                )
            })?;
        // VOC: 1-based pixel indices, both corners inclusive -> 0-based, x1/y1 exclusive.
        let [x0, y0, x1, y1] = o.bndbox;
        if !(skip_difficult && o.difficult) {
            objects.push((class, [x0 - 1.0, y0 - 1.0, x1, y1]));
        }
    }
    Ok(VocImage {
        width: doc.width,
        height: doc.height,
        objects,
    })
}

/// The image label and its foreground boxes ([`largest_area_label`]).
pub fn voc_label(objects: &[(usize, BBox)]) -> Option<(usize, Vec<BBox>)> {
    largest_area_label(objects)
}

/// The label rule shared by VOC and ImageNet: the class with the largest total box area
/// (ties: the lower class index) and every box of that class. `None` without objects.
pub fn largest_area_label(objects: &[(usize, BBox)]) -> Option<(usize, Vec<BBox>)> {
    let mut area: std::collections::BTreeMap<usize, f64> = Default::default();
    for (class, b) in objects {
        *area.entry(*class).or_default() += (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    }
    // Ascending class order, strictly larger replaces: the lower index wins a tie.
    let (label, _) = area
        .into_iter()
        .reduce(|best, c| if c.1 > best.1 { c } else { best })?;
    let boxes = objects
        .iter()
        .filter(|o| o.0 == label)
        .map(|o| o.1)
        .collect();
    Some((label, boxes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn object(name: &str, b: [u32; 4], difficult: bool) -> String {
        format!(
            "<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>\
             <difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>\
             <xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
            u8::from(difficult),
            b[0],
            b[1],
            b[2],
            b[3]
        )
    }

    fn annotation(objects: &[String]) -> String {
        format!(
            "<annotation><folder>VOC2012</folder><filename>x.jpg</filename>\
             <size><width>500</width><height>375</height><depth>3</depth></size>\
             <segmented>0</segmented>{}</annotation>",
            objects.concat()
        )
    }

    #[test]
    fn voc_coordinates_become_zero_based_exclusive() {
        // A VOC box covering exactly pixel columns 1..=10 (1-based) and rows 1..=5.
        let voc = parse_voc(&annotation(&[object("dog", [1, 1, 10, 5], false)]), false).unwrap();
        assert_eq!((voc.width, voc.height), (Some(500), Some(375)));
        assert_eq!(voc.objects, vec![(11, [0.0, 0.0, 10.0, 5.0])]);
        let pad = "\n   ";
        let spaced = annotation(&[format!(
            "<object><name>{pad}cat{pad}</name><bndbox><xmin> 48 </xmin><ymin>240</ymin>\
             <xmax>195.5</xmax><ymax>371</ymax></bndbox></object>"
        )]);
        let voc = parse_voc(&spaced, false).unwrap();
        assert_eq!(voc.objects, vec![(7, [47.0, 239.0, 195.5, 371.0])]);
    }

    #[test]
    fn voc_label_is_the_class_with_the_largest_total_area() {
        // Two dogs of 10x10 (total 200) beat one person of 14x14 (196); the chair is small.
        let objects = [
            object("person", [1, 1, 14, 14], false),
            object("dog", [21, 1, 30, 10], false),
            object("chair", [41, 1, 42, 2], false),
            object("dog", [21, 21, 30, 30], false),
        ];
        let voc = parse_voc(&annotation(&objects), false).unwrap();
        let (label, boxes) = voc_label(&voc.objects).unwrap();
        assert_eq!(VOC_CLASSES[label], "dog");
        assert_eq!(
            boxes,
            vec![[20.0, 0.0, 30.0, 10.0], [20.0, 20.0, 30.0, 30.0]]
        );
        // Difficult dogs skipped: the person wins.
        let objects = [
            object("person", [1, 1, 14, 14], false),
            object("dog", [21, 1, 30, 10], true),
            object("dog", [21, 21, 30, 30], true),
        ];
        let voc = parse_voc(&annotation(&objects), true).unwrap();
        assert_eq!(
            voc_label(&voc.objects).unwrap(),
            (14, vec![[0.0, 0.0, 14.0, 14.0]])
        );
        let voc = parse_voc(&annotation(&objects[1..]), true).unwrap();
        assert_eq!(voc_label(&voc.objects), None, "all difficult: no objects");
        // A tie goes to the lower class index, whatever the order of the objects.
        let tie = [(14, [0.0, 0.0, 4.0, 4.0]), (11, [0.0, 0.0, 2.0, 8.0])];
        assert_eq!(voc_label(&tie).unwrap().0, 11);
        assert_eq!(voc_label(&[]), None);
    }

    #[test]
    fn voc_parts_do_not_count_as_objects() {
        let person = "<object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin>\
                      <xmax>50</xmax><ymax>80</ymax></bndbox><part><name>head</name>\
                      <bndbox><xmin>10</xmin><ymin>1</ymin><xmax>30</xmax><ymax>20</ymax>\
                      </bndbox></part></object>";
        let voc = parse_voc(&annotation(&[person.to_string()]), false).unwrap();
        assert_eq!(voc.objects, vec![(14, [0.0, 0.0, 50.0, 80.0])]);
    }

    #[test]
    fn voc_errors_name_the_problem() {
        let err = |xml: &str| parse_voc(xml, false).unwrap_err().to_string();
        let e = err(&annotation(&[
            object("dog", [1, 1, 5, 5], false),
            object("unicorn", [1, 1, 5, 5], false),
        ]));
        assert!(
            e.contains("<object> 2") && e.contains("unknown VOC class \"unicorn\""),
            "{e}"
        );
        assert!(err("<annotation><object>").contains("malformed XML"));
        assert!(err("<notes/>").contains("not <annotation>"));
        let e = err(&annotation(&["<object><name>dog</name></object>".into()]));
        assert!(e.contains("dog has no <bndbox>"), "{e}");
        let e = err(&annotation(&[
            "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>x</xmax>\
             <ymax>5</ymax></bndbox></object>"
                .into(),
        ]));
        assert!(e.contains("<xmax> is \"x\""), "{e}");
        let e = err("<annotation><size><width>big</width></size></annotation>");
        assert!(e.contains("<size><width>"), "{e}");
        // An empty image is no size: refused, not read as "unknown".
        let e = err("<annotation><size><width>0</width><height>0</height></size></annotation>");
        assert!(e.contains("<size><width> is 0"), "{e}");
        let e = err("<annotation><size><width>5</width><height>0</height></size></annotation>");
        assert!(e.contains("<size><height> is 0"), "{e}");
        let e = err(&annotation(&["<object><bndbox/></object>".into()]));
        assert!(e.contains("no <name>"), "{e}");
    }

    #[test]
    fn malformed_xml_keeps_the_parser_error_as_the_source() {
        let e = parse_voc("<annotation><object>", false).unwrap_err();
        let fatal = e.at(Path::new("bbox.tgz"), Some("a.xml"));
        assert_eq!(fatal.to_string(), "input bbox.tgz: a.xml: malformed XML");
        let source = std::error::Error::source(&fatal);
        assert!(
            source.is_some_and(|s| s.is::<roxmltree::Error>()),
            "{source:?}"
        );
    }

    #[test]
    fn voc_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("Annotations")).unwrap();
        let xml = dir.path().join("Annotations/2008_000001.xml");
        std::fs::write(&xml, "<annotation><object></annotation>").unwrap();
        let e = read_voc(dir.path(), dir.path(), None, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2008_000001.xml") && e.contains("malformed XML"),
            "{e}"
        );
    }
}
