//! The box CSV reader of `bgstream shard`: `path,label,x0,y0,x1,y1`, one row per box. The
//! file is read through [`limits::TABLE_FILE`]; images, boxes and polygon numbers are
//! counted against the limits of one input as they are read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::limits::{self, Limited, OverLimit, Tally};
use super::manifest::parse_polygons_json;
use super::{check_unique_keys, key_from_path, read_synsets, Entry, ImageRef};
use crate::error::FatalError;
use crate::ops::geometry::BBox;
use crate::source::Annotation;

/// One image of a box CSV: its rows grouped, in the order of first appearance.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvImage {
    pub path: PathBuf,
    pub label: i64,
    pub boxes: Vec<BBox>,
    /// From the optional `polygons` column (COCO segmentation JSON).
    pub polygons: Vec<Vec<f64>>,
}

const BOX_CSV_HEADER: [&str; 6] = ["path", "label", "x0", "y0", "x1", "y1"];

/// Why a box CSV is refused; [`BoxCsvError::at`] names the file.
#[derive(Debug, thiserror::Error)]
pub enum BoxCsvError {
    /// The csv reader's own error (a record of the wrong length, an io error, the limit).
    #[error(transparent)]
    Csv(#[from] csv::Error),
    /// The header is not the box CSV's.
    #[error("the header is {found:?}, expected {} (and optionally ,polygons)", BOX_CSV_HEADER.join(","))]
    Header { found: Vec<String> },
    /// A row that is refused: the reason.
    #[error("line {line}: {reason}")]
    Row { line: u64, reason: String },
    /// A row's `polygons` cell (an excerpt) is not COCO JSON, or holds too many numbers.
    #[error("line {line}: polygons {cell} is not COCO's [[x0, y0, x1, y1, ...], ...]")]
    Polygons {
        line: u64,
        cell: String,
        #[source]
        source: serde_json::Error,
    },
    /// The row that passes a limit of one input.
    #[error("line {line}")]
    Limit {
        line: u64,
        #[source]
        source: OverLimit,
    },
}

impl BoxCsvError {
    /// The error that stops the reader of the box CSV at `path`: the underlying error (if
    /// any) stays the source.
    pub fn at(self, path: &Path) -> FatalError {
        let what = self.to_string();
        match self {
            BoxCsvError::Csv(e) => FatalError::input(path, e),
            BoxCsvError::Polygons { source, .. } => FatalError::input_from(path, what, source),
            BoxCsvError::Limit { source, .. } => FatalError::input_from(path, what, source),
            BoxCsvError::Header { .. } | BoxCsvError::Row { .. } => FatalError::Input {
                path: path.to_path_buf(),
                reason: what,
            },
        }
    }
}

/// Reads a box CSV (`path,label,x0,y0,x1,y1`, see the module docs). `classes` are the
/// `--synsets` names (may be empty): `label` is a class index or one of them. The error
/// says the line, for the caller to name the file ([`BoxCsvError::at`]).
pub fn parse_box_csv(data: impl Read, classes: &[String]) -> Result<Vec<CsvImage>, BoxCsvError> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, name) in classes.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
        by_name.entry(name.as_str()).or_insert(i);
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(data);
    let with_polygons = polygons_column(reader.headers()?)?;
    let mut images = CsvImages::default();
    let mut tally = Tally::default();
    for row in reader.records() {
        let row = row?;
        let line = row.position().map_or(0, |p| p.line());
        let parsed = parse_row(&row, line, with_polygons, &by_name, &mut tally)?;
        let known = images.seen.get(parsed.path).copied();
        tally
            .add(usize::from(known.is_none()), 1, 0)
            .map_err(|source| BoxCsvError::Limit { line, source })?;
        images.add(parsed, known, line)?;
    }
    Ok(images.images)
}

/// Whether the header has the optional `polygons` column; an error if it is not a box
/// CSV's header.
fn polygons_column(header: &csv::StringRecord) -> Result<bool, BoxCsvError> {
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let with_polygons = match names.split_at_checked(6) {
        Some((six, rest)) if six.iter().eq(BOX_CSV_HEADER) => match rest {
            [] => Some(false),
            [p] if p == "polygons" => Some(true),
            _ => None,
        },
        _ => None,
    };
    with_polygons.ok_or_else(|| BoxCsvError::Header {
        found: header.iter().map(str::to_string).collect(),
    })
}

/// One row, read.
struct CsvRow<'r> {
    path: &'r str,
    label: i64,
    bbox: BBox,
    polygons: Vec<Vec<f64>>,
}

/// Reads the row on `line`; its polygon numbers are charged to `tally`.
fn parse_row<'r>(
    row: &'r csv::StringRecord,
    line: u64,
    with_polygons: bool,
    by_name: &HashMap<&str, usize>,
    tally: &mut Tally,
) -> Result<CsvRow<'r>, BoxCsvError> {
    let at = |reason: String| BoxCsvError::Row { line, reason };
    let field = |i: usize| row.get(i).unwrap_or_default();
    let path = field(0);
    if path.is_empty() {
        return Err(at("empty path".into()));
    }
    let label = csv_label(field(1), by_name).map_err(at)?;
    let mut bbox = [0.0; 4];
    for (v, (field, name)) in bbox.iter_mut().zip(row.iter().zip(BOX_CSV_HEADER).skip(2)) {
        *v = field
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| at(format!("{name} is {field:?}, not a number")))?;
    }
    let polygons = match row.get(6).filter(|_| with_polygons) {
        Some(cell) if !cell.is_empty() => {
            parse_polygons_json(cell, tally).map_err(|source| BoxCsvError::Polygons {
                line,
                cell: excerpt(cell),
                source,
            })?
        }
        _ => Vec::new(),
    };
    Ok(CsvRow {
        path,
        label,
        bbox,
        polygons,
    })
}

/// The images of a box CSV as its rows are read.
#[derive(Default)]
struct CsvImages {
    images: Vec<CsvImage>,
    /// path -> (index in `images`, line of its first row)
    seen: HashMap<String, (usize, u64)>,
}

impl CsvImages {
    /// Adds the row on `line` to its image (`known`: the image's index and first line,
    /// when an earlier row named it), which must have the same label.
    fn add(
        &mut self,
        row: CsvRow<'_>,
        known: Option<(usize, u64)>,
        line: u64,
    ) -> Result<(), BoxCsvError> {
        match known.and_then(|(i, first)| Some((self.images.get_mut(i)?, first))) {
            Some((image, first)) if image.label != row.label => Err(BoxCsvError::Row {
                line,
                reason: format!(
                    "{} has label {} here but {} on line {first}",
                    row.path, row.label, image.label
                ),
            }),
            Some((image, _)) => {
                image.boxes.push(row.bbox);
                image.polygons.extend(row.polygons);
                Ok(())
            }
            None => {
                let index = self.images.len();
                self.seen.insert(row.path.to_string(), (index, line));
                self.images.push(CsvImage {
                    path: PathBuf::from(row.path),
                    label: row.label,
                    boxes: vec![row.bbox],
                    polygons: row.polygons,
                });
                Ok(())
            }
        }
    }
}

/// A cell for a message: at most 80 characters of it.
fn excerpt(cell: &str) -> String {
    match cell.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}...", cell.get(..cut).unwrap_or_default()),
        None => format!("{cell:?}"),
    }
}

/// A class index, or a class name of `--synsets`.
fn csv_label(field: &str, by_name: &HashMap<&str, usize>) -> Result<i64, String> {
    if let Ok(n) = field.parse::<i64>() {
        return if n >= 0 {
            Ok(n)
        } else {
            Err(format!("label {n} is negative"))
        };
    }
    match by_name.get(field) {
        Some(&i) => Ok(i as i64),
        None if by_name.is_empty() => Err(format!(
            "label {field:?} is not a class index (class names need --synsets)"
        )),
        None => Err(format!(
            "label {field:?} is neither a class index nor a class name of --synsets"
        )),
    }
}

/// Reads a box CSV (see the module docs); `synsets` (optional) gives class names, which are
/// also recorded in `wnid`. Sizes are not recorded: the run reads them from the image.
pub fn read_box_csv(
    csv_path: &Path,
    images: &Path,
    synsets: Option<&Path>,
) -> Result<(Vec<Entry>, Vec<String>), FatalError> {
    let classes = match synsets {
        Some(p) => read_synsets(p)?,
        None => Vec::new(),
    };
    let file = File::open(csv_path).map_err(|e| FatalError::io(csv_path, e))?;
    let data = BufReader::new(Limited::new(file, limits::TABLE_FILE));
    let rows = parse_box_csv(data, &classes).map_err(|e| e.at(csv_path))?;
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for img in rows {
        let key = key_from_path(&img.path);
        let image = images.join(&img.path);
        if !image.is_file() {
            missing.push(key);
            continue;
        }
        entries.push(Entry {
            mask: None,
            key,
            image: ImageRef::File(image),
            annotation: Annotation {
                label: img.label,
                boxes: img.boxes,
                polygons: img.polygons,
                width: None,
                height: None,
                wnid: usize::try_from(img.label)
                    .ok()
                    .and_then(|i| classes.get(i))
                    .filter(|n| !n.is_empty())
                    .cloned(),
                ..Default::default()
            },
        });
    }
    check_unique_keys(&entries, csv_path)?;
    Ok((entries, missing))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn csv_rows(text: &str, classes: &[&str]) -> Result<Vec<CsvImage>, String> {
        let classes: Vec<String> = classes.iter().map(|s| s.to_string()).collect();
        parse_box_csv(text.as_bytes(), &classes).map_err(|e| crate::error::chain(&e))
    }

    #[test]
    fn box_csv_groups_rows_by_path() {
        let rows = csv_rows(
            "path,label,x0,y0,x1,y1\n\
             a/cat.jpg,3,0,0,10,10\n\
             b.jpg,5,1,2,3,4\n\
             a/cat.jpg, 3 ,20,20,30,30.5\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                CsvImage {
                    path: "a/cat.jpg".into(),
                    label: 3,
                    boxes: vec![[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.5]],
                    polygons: vec![],
                },
                CsvImage {
                    path: "b.jpg".into(),
                    label: 5,
                    boxes: vec![[1.0, 2.0, 3.0, 4.0]],
                    polygons: vec![],
                },
            ]
        );
        assert_eq!(key_from_path(&rows[0].path), "cat");
    }

    #[test]
    fn box_csv_polygons_column_is_coco_json() {
        let rows = csv_rows(
            "path,label,x0,y0,x1,y1,polygons\n\
             a.jpg,1,0,0,5,5,\"[[0,0,5,0,0,5]]\"\n\
             a.jpg,1,1,1,6,6,\"[[1,1,6,1,6,6],[2,2,3,2,2,3]]\"\n\
             b.jpg,2,0,0,5,5,\n",
            &[],
        )
        .unwrap();
        assert_eq!(rows[0].polygons.len(), 3);
        assert_eq!(rows[0].polygons[1], [1.0, 1.0, 6.0, 1.0, 6.0, 6.0]);
        assert!(rows[1].polygons.is_empty());
        let e = csv_rows(
            "path,label,x0,y0,x1,y1,polygons\na.jpg,1,0,0,5,5,\"[1,2]\"\n",
            &[],
        );
        assert!(e.unwrap_err().contains("not COCO's"));
        assert!(csv_rows("path,label,x0,y0,x1,y1,mask\n", &[]).is_err());
    }

    #[test]
    fn box_csv_errors_keep_their_source() {
        let text = "path,label,x0,y0,x1,y1,polygons\na.jpg,1,0,0,5,5,\"[1,2]\"\n";
        let fatal = parse_box_csv(text.as_bytes(), &[])
            .unwrap_err()
            .at(Path::new("boxes.csv"));
        let message = fatal.to_string();
        assert!(
            message.starts_with("input boxes.csv: line 2: polygons \"[1,2]\" is not COCO's"),
            "{message}"
        );
        let source = std::error::Error::source(&fatal);
        assert!(
            source.is_some_and(|s| s.is::<serde_json::Error>()),
            "{source:?}"
        );
    }

    #[test]
    fn box_csv_labels_must_agree() {
        let e = csv_rows(
            "path,label,x0,y0,x1,y1\na.jpg,1,0,0,5,5\nb.jpg,2,0,0,5,5\na.jpg,2,0,0,5,5\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.starts_with("line 4:") && e.contains("label 2 here but 1 on line 2"),
            "{e}"
        );
    }

    #[test]
    fn box_csv_class_names_come_from_synsets() {
        let text =
            "path,label,x0,y0,x1,y1\na.jpg,dog,0,0,5,5\na.jpg,2,1,1,5,5\nb.jpg,cat,0,0,5,5\n";
        let rows = csv_rows(text, &["cat", "", "dog"]).unwrap();
        assert_eq!((rows[0].label, rows[0].boxes.len()), (2, 2));
        assert_eq!(rows[1].label, 0);
        let e = csv_rows(text, &[]).unwrap_err();
        assert!(
            e.starts_with("line 2:") && e.contains("need --synsets"),
            "{e}"
        );
        let e = csv_rows(text, &["cat"]).unwrap_err();
        assert!(
            e.starts_with("line 2:") && e.contains("neither a class index nor"),
            "{e}"
        );
        let e = csv_rows("path,label,x0,y0,x1,y1\na.jpg,-1,0,0,5,5\n", &[]).unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = csv_rows("path,label,x0,y0,x1,y1\na.jpg,1,0,zero,5,5\n", &[]).unwrap_err();
        assert!(e.contains("y0 is \"zero\""), "{e}");
        let e = csv_rows("path,label,x,y,w,h\na.jpg,1,0,0,5,5\n", &[]).unwrap_err();
        assert!(e.contains("expected path,label,x0,y0,x1,y1"), "{e}");
        assert!(csv_rows("path,label,x0,y0,x1,y1\na.jpg,1,0,0,5\n", &[]).is_err());
    }
}
