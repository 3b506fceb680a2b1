//! The Pascal VOC XML layout, which ImageNet's bounding-box files share: `<annotation>` with
//! `<size>` and one `<object>` per box. Parsed here as written; the VOC and ImageNet readers
//! apply their own class names and box conventions.
//!
//! roxmltree refuses a DTD by default, so no entity expansion (billion laughs) reaches
//! memory; callers hand in text of at most [`super::limits::XML_FILE`].

use std::path::Path;

use crate::error::FatalError;

/// One `<object>` as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct XmlObject {
    pub name: String,
    /// `xmin, ymin, xmax, ymax` exactly as written (each reader converts).
    pub bndbox: [f64; 4],
    pub difficult: bool,
}

/// One annotation file.
#[derive(Debug, Clone, PartialEq)]
pub struct XmlAnnotation {
    /// From `<size>`; `None` when absent (a 0 is an error: no image is empty).
    pub width: Option<usize>,
    pub height: Option<usize>,
    pub objects: Vec<XmlObject>,
}

/// Why an annotation file is refused.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML (or a DTD, which roxmltree refuses).
    #[error("malformed XML")]
    Malformed(#[from] roxmltree::Error),
    /// Well-formed, but not an annotation as the reader needs it: the reason.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for XmlError {
    fn from(reason: String) -> Self {
        XmlError::Invalid(reason)
    }
}

impl XmlError {
    /// The error that stops the reader: the annotation at `path`, `member` of it when
    /// `path` is a tar.
    pub fn at(self, path: &Path, member: Option<&str>) -> FatalError {
        let what = match member {
            Some(m) => format!("{m}: {self}"),
            None => self.to_string(),
        };
        match self {
            XmlError::Malformed(e) => FatalError::input_from(path, what, e),
            XmlError::Invalid(_) => FatalError::Input {
                path: path.to_path_buf(),
                reason: what,
            },
        }
    }
}

/// Parses one annotation. Only the direct children of `<annotation>` and `<object>` count
/// (the `<part>`s of a VOC person have their own `<name>` and `<bndbox>`). The error is
/// the reason, for the caller to name the file ([`XmlError::at`]).
pub fn parse_pascal_xml(xml: &str) -> Result<XmlAnnotation, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    if !root.has_tag_name("annotation") {
        return Err(XmlError::Invalid(format!(
            "the root element is <{}>, not <annotation>",
            root.tag_name().name()
        )));
    }
    let (width, height) = match child(root, "size") {
        Some(size) => (size_field(size, "width")?, size_field(size, "height")?),
        None => (None, None),
    };
    let objects = root
        .children()
        .filter(|n| n.has_tag_name("object"))
        .enumerate()
        .map(|(i, o)| object(o).map_err(|r| format!("<object> {}: {r}", i.saturating_add(1))))
        .collect::<Result<_, _>>()?;
    Ok(XmlAnnotation {
        width,
        height,
        objects,
    })
}

fn object(object: roxmltree::Node) -> Result<XmlObject, String> {
    let name = text(object, "name").ok_or("no <name>")?;
    let difficult = match text(object, "difficult") {
        None | Some("0") => false,
        Some("1") => true,
        Some(v) => return Err(format!("<difficult> is {v:?}, not 0 or 1")),
    };
    let bndbox = child(object, "bndbox").ok_or_else(|| format!("{name} has no <bndbox>"))?;
    let coord = |tag: &str| -> Result<f64, String> {
        let v = text(bndbox, tag).ok_or_else(|| format!("{name}: <bndbox> has no <{tag}>"))?;
        v.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{name}: <{tag}> is {v:?}, not a number"))
    };
    Ok(XmlObject {
        name: name.to_string(),
        bndbox: [
            coord("xmin")?,
            coord("ymin")?,
            coord("xmax")?,
            coord("ymax")?,
        ],
        difficult,
    })
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(tag))
}

/// The trimmed text of `node`'s child `tag`.
fn text<'a>(node: roxmltree::Node<'a, '_>, tag: &str) -> Option<&'a str> {
    child(node, tag)?.text().map(str::trim)
}

/// A `<size>` field: `None` when absent (then the image header is all there is). A 0 is
/// refused rather than read as "unknown": the annotation claims an empty image, which no
/// image is, so its boxes were drawn on something else (ImageNet and VOC never write 0).
fn size_field(size: roxmltree::Node, tag: &str) -> Result<Option<usize>, String> {
    match text(size, tag) {
        None => Ok(None),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => Err(format!(
                "<size><{tag}> is 0: an image has at least one pixel (leave <size> out when \
                 the size is unknown)"
            )),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(format!("<size><{tag}> is {v:?}, not a whole number")),
        },
    }
}
