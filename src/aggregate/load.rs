//! Reads prediction Parquet files (any number, from any runs or workers) into compact
//! per-(model, variant) lists of (key id, correctness bits).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::error::FatalError;

pub const TOP1: u8 = 1;
pub const TOP5: u8 = 2;

/// The predictions of a directory, interned.
#[derive(Debug, Default)]
pub struct Loaded {
    pub files: Vec<PathBuf>,
    pub rows: u64,
    /// Rows whose status is not `ok` (failed items), by code.
    pub error_rows: HashMap<String, u64>,
    /// (key, variant, model) rows seen more than once; the first is kept.
    pub duplicates: u64,
    pub models: Vec<String>,
    pub variants: Vec<String>,
    pub keys: Vec<String>,
    /// (model id, variant id) -> (key id, TOP1 | TOP5 bits), sorted by key id.
    pub cells: HashMap<(usize, usize), Vec<(u32, u8)>>,
}

const REQUIRED: [(&str, &str); 6] = [
    ("key", "string"),
    ("variant", "string"),
    ("model", "string"),
    ("status", "string"),
    ("top1_correct", "boolean"),
    ("top5_correct", "boolean"),
];

fn bad(path: &Path, reason: impl Into<String>) -> FatalError {
    FatalError::Input {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FatalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FatalError::io(dir, e))?;
    for e in entries {
        let p = e.map_err(|e| FatalError::io(dir, e))?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    Ok(())
}

fn intern(map: &mut HashMap<String, usize>, list: &mut Vec<String>, s: &str) -> usize {
    if let Some(&i) = map.get(s) {
        return i;
    }
    list.push(s.to_string());
    map.insert(s.to_string(), list.len() - 1);
    list.len() - 1
}

fn strings(
    batch: &RecordBatch,
    name: &str,
    path: &Path,
) -> Result<arrow::array::StringArray, FatalError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| bad(path, format!("no column {name}")))?;
    let col = cast(col, &DataType::Utf8).map_err(|e| bad(path, format!("column {name}: {e}")))?;
    Ok(col.as_string::<i32>().clone())
}

/// Loads every `*.parquet` under `dir` (recursively, sorted). A file without the required
/// columns is an error naming the file; so is a directory without Parquet files.
pub fn load(dir: &Path) -> Result<Loaded, FatalError> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(bad(
            dir,
            "no .parquet files (expected the output of a bgstream run)",
        ));
    }
    let mut out = Loaded::default();
    let (mut model_ids, mut variant_ids, mut key_ids) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let mut keys_by_id: Vec<String> = Vec::new();
    for path in &files {
        let file = File::open(path).map_err(|e| FatalError::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad(path, format!("not a readable Parquet file: {e}")))?;
        let schema = builder.schema().clone();
        for (name, ty) in REQUIRED {
            let field = schema.field_with_name(name).map_err(|_| {
                bad(
                    path,
                    format!("no column {name:?}: not a bgstream predictions file"),
                )
            })?;
            let ok = match ty {
                "boolean" => field.data_type() == &DataType::Boolean,
                _ => matches!(
                    field.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ),
            };
            if !ok {
                return Err(bad(
                    path,
                    format!("column {name} is {}, expected {ty}", field.data_type()),
                ));
            }
        }
        let indices: Vec<usize> = REQUIRED
            .iter()
            .map(|(n, _)| schema.index_of(n).expect("checked above"))
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| bad(path, e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(path, e.to_string()))?;
            let (key, variant, model, status) = (
                strings(&batch, "key", path)?,
                strings(&batch, "variant", path)?,
                strings(&batch, "model", path)?,
                strings(&batch, "status", path)?,
            );
            let top1 = batch
                .column_by_name("top1_correct")
                .expect("checked")
                .as_boolean()
                .clone();
            let top5 = batch
                .column_by_name("top5_correct")
                .expect("checked")
                .as_boolean()
                .clone();
            out.rows += batch.num_rows() as u64;
            for i in 0..batch.num_rows() {
                if status.value(i) != "ok" {
                    *out.error_rows
                        .entry(status.value(i).to_string())
                        .or_default() += 1;
                    continue;
                }
                let m = intern(&mut model_ids, &mut out.models, model.value(i));
                let v = intern(&mut variant_ids, &mut out.variants, variant.value(i));
                let k = intern(&mut key_ids, &mut keys_by_id, key.value(i)) as u32;
                let bits = (u8::from(!top1.is_null(i) && top1.value(i)) * TOP1)
                    | (u8::from(!top5.is_null(i) && top5.value(i)) * TOP5);
                out.cells.entry((m, v)).or_default().push((k, bits));
            }
        }
    }
    out.keys = keys_by_id;
    out.files = files;
    for list in out.cells.values_mut() {
        list.sort_by_key(|e| e.0);
        let before = list.len();
        list.dedup_by_key(|e| e.0);
        out.duplicates += (before - list.len()) as u64;
    }
    Ok(out)
}
