//! Reads prediction Parquet files (any number, from any runs or workers) into compact
//! per-(model, variant) lists of (key id, correctness bits).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::classes::{ClassMap, Scoring};
use crate::error::FatalError;

pub const TOP1: u8 = 1;
pub const TOP5: u8 = 2;
/// A `worst_bg:K` candidate row that is not ok: the image drops out of that cell.
const INVALID: u8 = 4;

use crate::source::RELEASED_PREFIX;
pub use crate::variant::is_multi_row;
use crate::variant::ORIGINAL_ALL;

/// The worst candidate of one image under a `worst_bg:K` variant for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct WorstCase {
    /// The candidate with the lowest probability of the true label.
    pub background: Option<String>,
    pub p_true: f32,
    pub candidates: u32,
}

/// How to read the predictions.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Score at the coarse level: right when the predicted class maps to the label's
    /// coarse class; rows whose label is unmapped are left out.
    pub class_map: Option<&'a ClassMap>,
}

/// The predictions of a directory, interned.
#[derive(Debug, Default)]
pub struct Loaded {
    pub files: Vec<PathBuf>,
    /// `bgstream challenge` output found in the input (`challenge.parquet`): per model,
    /// (foregrounds judged, foregrounds no background flipped).
    pub exhaustive: std::collections::BTreeMap<String, (u64, u64)>,
    pub rows: u64,
    /// Rows whose status is not `ok` (failed items), by code.
    pub error_rows: HashMap<String, u64>,
    /// (key, variant, model) rows seen more than once; the first is kept.
    pub duplicates: u64,
    pub models: Vec<String>,
    pub variants: Vec<String>,
    pub keys: Vec<String>,
    /// The label of each key (by key id), -1 where no row gave one.
    pub labels: Vec<i64>,
    /// (model id, variant id) -> (key id, TOP1 | TOP5 bits), sorted by key id.
    pub cells: HashMap<(usize, usize), Vec<(u32, u8)>>,
    /// (model id, variant id, key id) -> worst candidate, for `worst_bg:K` variants.
    pub worst: HashMap<(usize, usize, u32), WorstCase>,
    /// Rows left out because the class map has no coarse class for their label.
    pub unmapped: u64,
    /// The class map's name, when one was applied.
    pub class_map: Option<String>,
    /// Keys whose rows come from more than one shard (two images under one key, or one
    /// shard run twice into the input), and the first such (key, shard, other shard).
    pub cross_shard_keys: u64,
    pub cross_shard_example: Option<(String, String, String)>,
    /// Ok rows per (model, `scoring` column value): how each model was scored.
    pub scoring: std::collections::BTreeMap<(String, String), u64>,
}

impl Loaded {
    /// Whether any ok row has an ImageNet-9 label (`scoring` in9 or in_to_in9).
    pub fn has_in9_labels(&self) -> bool {
        self.scoring
            .keys()
            .any(|(_, s)| Scoring::parse(s).is_some_and(Scoring::is_in9))
    }

    /// Whether the ok rows mix ImageNet-9 labels with labels of the models' own classes.
    pub fn mixes_label_spaces(&self) -> bool {
        self.has_in9_labels() && self.scoring.keys().any(|(_, s)| s == "direct")
    }

    /// One sentence on how the models were scored, when any row has an ImageNet-9 label.
    pub fn scoring_note(&self) -> Option<String> {
        if !self.has_in9_labels() {
            return None;
        }
        let models = |rule: &str| -> Vec<&str> {
            let rows = self.scoring.iter().filter(|((_, s), _)| s == rule);
            rows.map(|((m, _), _)| m.as_str()).collect()
        };
        let mut parts = Vec::new();
        for (rule, says) in [
            (
                "in_to_in9",
                "scored at the IN-9 level via in_to_in9 (each predicted ImageNet class mapped \
                 through MadryLab/backgrounds_challenge's table, classes outside the nine wrong)",
            ),
            (
                "in9",
                "9-class models compared with the IN-9 label directly",
            ),
            ("direct", "rows of other labels compared directly"),
        ] {
            let m = models(rule);
            if !m.is_empty() {
                parts.push(format!("{} {says}", m.join(", ")));
            }
        }
        Some(format!("ImageNet-9 labels: {}.", parts.join("; ")))
    }
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

/// One verdict per key from its rows (sorted by key): right only if all rows are right,
/// dropped if any row is INVALID.
fn reduce_all(list: &[(u32, u8)]) -> Vec<(u32, u8)> {
    let mut out: Vec<(u32, u8)> = Vec::new();
    for chunk in list.chunk_by(|a, b| a.0 == b.0) {
        if chunk.iter().any(|e| e.1 & INVALID != 0) {
            continue;
        }
        let bits = chunk.iter().fold(TOP1 | TOP5, |acc, e| acc & e.1);
        out.push((chunk[0].0, bits));
    }
    out
}

/// Per row, TOP1 | TOP5 at the coarse level, or `None` when the label is unmapped.
fn coarse_bits(
    batch: &RecordBatch,
    map: &ClassMap,
    path: &Path,
) -> Result<Vec<Option<u8>>, FatalError> {
    let label = cast_column(batch, "label", &DataType::Int64, path)?
        .ok_or_else(|| bad(path, "no column label"))?;
    let label = label.as_primitive::<arrow::datatypes::Int64Type>();
    let list = DataType::List(Arc::new(Field::new("item", DataType::Int64, true)));
    let top = cast_column(batch, "top5_classes", &list, path)?
        .ok_or_else(|| bad(path, "no column top5_classes"))?;
    let top = top.as_list::<i32>();
    Ok((0..batch.num_rows())
        .map(|i| {
            let want = map.coarse(label.is_valid(i).then(|| label.value(i))?)?;
            let classes = top.value(i);
            let classes = classes.as_primitive_opt::<arrow::datatypes::Int64Type>()?;
            let hit = |c: i64| map.coarse(c) == Some(want);
            let top1 = !classes.is_empty() && hit(classes.value(0));
            let top5 = classes.iter().flatten().any(hit);
            Some((u8::from(top1) * TOP1) | (u8::from(top5) * TOP5))
        })
        .collect())
}

/// `--class-map` reads `label` and `top5_classes` as fine classes of one label space; rows
/// whose label is ImageNet-9's (scored in9 / in_to_in9) are already at the IN-9 level, and
/// a map would read their labels 0..=8 as fine classes (tench, goldfish, …).
/// The file `bgstream challenge` writes; `aggregate` reads it beside the predictions.
const CHALLENGE_FILE: &str = "challenge.parquet";

/// Adds a `challenge.parquet`'s verdicts (rows with status `ok`) to `into`.
fn load_challenge(
    path: &Path,
    into: &mut std::collections::BTreeMap<String, (u64, u64)>,
) -> Result<(), FatalError> {
    let file = File::open(path).map_err(|e| FatalError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| FatalError::input_from(path, "not a readable Parquet file", e))?;
    let mut here = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for batch in reader {
        let batch = batch.map_err(|e| FatalError::input_from(path, "unreadable", e))?;
        let column = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                bad(
                    path,
                    format!("no column {name:?}: not bgstream challenge output"),
                )
            })
        };
        let (model, vulnerable) = (column("model")?, column("vulnerable")?);
        let (Some(model), Some(vulnerable)) =
            (model.as_string_opt::<i32>(), vulnerable.as_boolean_opt())
        else {
            return Err(bad(path, "columns model / vulnerable of another type"));
        };
        for i in (0..batch.num_rows()).filter(|&i| !vulnerable.is_null(i)) {
            let e = here.entry(model.value(i).to_string()).or_default();
            e.0 += 1;
            e.1 += u64::from(!vulnerable.value(i));
        }
    }
    for (model, counts) in here {
        if into.contains_key(&model) {
            return Err(bad(
                path,
                format!(
                    "model {model:?} has challenge results in another challenge.parquet of the \
                     input too: keep one run's output per model"
                ),
            ));
        }
        into.insert(model, counts);
    }
    Ok(())
}

fn refuse_in9_class_map(
    scoring: Option<&arrow::array::StringArray>,
    path: &Path,
) -> Result<(), FatalError> {
    let Some(col) = scoring else {
        return Ok(());
    };
    let in9 = col
        .iter()
        .flatten()
        .find(|s| Scoring::parse(s).is_some_and(Scoring::is_in9));
    match in9 {
        Some(rule) => Err(FatalError::Usage(format!(
            "--class-map: {} has ImageNet-9-labelled rows (scoring {rule}): they are already \
             scored at the IN-9 level, and a class map would read their IN-9 labels 0-8 as \
             fine classes. Leave --class-map out for ImageNet-9 shards; it is for shards \
             labelled with the models' own (fine) classes",
            path.display()
        ))),
        None => Ok(()),
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
    let col = cast_column(batch, name, &DataType::Utf8, path)?
        .ok_or_else(|| bad(path, format!("no column {name}")))?;
    Ok(col.as_string::<i32>().clone())
}

/// Column `name` cast to `to`, or `None` when absent. Other writers store the same data
/// under other types (Polars: `LargeUtf8` / `Utf8View` strings, `LargeList` lists), so
/// every column is read through a cast rather than a downcast that would panic.
fn cast_column(
    batch: &RecordBatch,
    name: &str,
    to: &DataType,
    path: &Path,
) -> Result<Option<arrow::array::ArrayRef>, FatalError> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    cast(col, to).map(Some).map_err(|e| {
        FatalError::input_from(path, format!("column {name} ({})", col.data_type()), e)
    })
}

/// Loads every `*.parquet` under `dir` (recursively, sorted). A file without the required
/// columns is an error naming the file; so is a directory without Parquet files.
pub fn load(dir: &Path) -> Result<Loaded, FatalError> {
    load_with(dir, LoadOptions::default())
}

/// Optional columns a file may have (older files lack `background`).
fn optional_indices(schema: &arrow::datatypes::Schema, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .filter_map(|n| schema.index_of(n).ok())
        .collect()
}

/// Opens the Parquet file `path`, reads only the root columns `project` picks from its
/// Arrow schema (`project` may refuse the file), and yields that projection's batches.
fn open_projected<'a>(
    path: &'a Path,
    project: impl FnOnce(&arrow::datatypes::Schema) -> Result<Vec<usize>, FatalError>,
) -> Result<impl Iterator<Item = Result<RecordBatch, FatalError>> + 'a, FatalError> {
    let file = File::open(path).map_err(|e| FatalError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| FatalError::input_from(path, "not a readable Parquet file", e))?;
    let indices = project(builder.schema().as_ref())?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| FatalError::input(path, e))?;
    Ok(reader.map(move |batch| batch.map_err(|e| FatalError::input(path, e))))
}

/// Every `*.parquet` under `dir`, sorted; an error when there is none.
fn list_inputs(dir: &Path) -> Result<Vec<PathBuf>, FatalError> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(bad(
            dir,
            "no .parquet files (expected the output of a bgstream run)",
        ));
    }
    Ok(files)
}

/// Refuses a file that is not a predictions file of this version: a [`REQUIRED`] column
/// missing or of another type, or any other column of this version's schema missing.
fn check_predictions_schema(
    schema: &arrow::datatypes::Schema,
    path: &Path,
) -> Result<(), FatalError> {
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
    // Every column of this version's schema (README: another schema is an error).
    if let Some(f) = (crate::sink::schema::predictions_schema().fields().iter())
        .find(|f| schema.field_with_name(f.name()).is_err())
    {
        return Err(bad(
            path,
            format!(
                "no column {:?}: not a predictions file of bgstream {} (an older run? \
                 rerun it with this version)",
                f.name(),
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    Ok(())
}

/// The columns [`load_with`] reads from a predictions file, once its schema is checked.
fn predictions_projection(
    schema: &arrow::datatypes::Schema,
    path: &Path,
    opts: LoadOptions<'_>,
) -> Result<Vec<usize>, FatalError> {
    check_predictions_schema(schema, path)?;
    let mut indices: Vec<usize> = REQUIRED
        .iter()
        .map(|(n, _)| schema.index_of(n).expect("checked above"))
        .collect();
    if opts.class_map.is_some() {
        for name in ["label", "top5_classes"] {
            indices.push(
                schema.index_of(name).map_err(|_| {
                    bad(path, format!("no column {name:?}, needed for --class-map"))
                })?,
            );
        }
    }
    indices.extend(optional_indices(
        schema,
        &[
            "background",
            "p_true",
            "label",
            "shard",
            "in_filter",
            "scoring",
        ],
    ));
    indices.sort_unstable();
    indices.dedup(); // `label` may be asked for twice (--class-map)
    Ok(indices)
}

/// The columns of one predictions batch, as [`load_with`] reads them.
struct PredictionBatch {
    key: StringArray,
    variant: StringArray,
    model: StringArray,
    status: StringArray,
    top1: BooleanArray,
    top5: BooleanArray,
    /// Per row, the coarse-level bits (`--class-map`), `None` where the label is unmapped.
    coarse: Option<Vec<Option<u8>>>,
    background: Option<StringArray>,
    label: Option<Int64Array>,
    p_true: Option<Float32Array>,
    shard: Option<StringArray>,
    in_filter: Option<BooleanArray>,
    scoring: Option<StringArray>,
}

impl PredictionBatch {
    /// Reads `batch`'s columns (refusing IN-9-labelled rows under `--class-map`).
    fn read(batch: &RecordBatch, opts: LoadOptions<'_>, path: &Path) -> Result<Self, FatalError> {
        let (key, variant, model, status) = (
            strings(batch, "key", path)?,
            strings(batch, "variant", path)?,
            strings(batch, "model", path)?,
            strings(batch, "status", path)?,
        );
        let boolean = |name: &str| {
            let col = batch.column_by_name(name).expect("checked");
            col.as_boolean().clone()
        };
        let (top1, top5) = (boolean("top1_correct"), boolean("top5_correct"));
        let coarse = match opts.class_map {
            Some(map) => Some(coarse_bits(batch, map, path)?),
            None => None,
        };
        let background = cast_column(batch, "background", &DataType::Utf8, path)?
            .map(|c| c.as_string::<i32>().clone());
        let label = cast_column(batch, "label", &DataType::Int64, path)?
            .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().clone());
        let p_true = cast_column(batch, "p_true", &DataType::Float32, path)?
            .map(|c| c.as_primitive::<arrow::datatypes::Float32Type>().clone());
        let shard = cast_column(batch, "shard", &DataType::Utf8, path)?
            .map(|c| c.as_string::<i32>().clone());
        let in_filter = cast_column(batch, "in_filter", &DataType::Boolean, path)?
            .map(|c| c.as_boolean().clone());
        let scoring = cast_column(batch, "scoring", &DataType::Utf8, path)?
            .map(|c| c.as_string::<i32>().clone());
        if opts.class_map.is_some() {
            refuse_in9_class_map(scoring.as_ref(), path)?;
        }
        Ok(Self {
            key,
            variant,
            model,
            status,
            top1,
            top5,
            coarse,
            background,
            label,
            p_true,
            shard,
            in_filter,
            scoring,
        })
    }

    /// Row `i`'s TOP1 | TOP5 bits, or `None` when a class map (aggregate's, or the model's
    /// own) leaves its label unmapped.
    fn bits(&self, i: usize) -> Option<u8> {
        match &self.coarse {
            Some(c) => c[i],
            // An ok row without a verdict: its model's class map covers none of its label.
            None if self.top1.is_null(i) => None,
            None => Some(
                (u8::from(self.top1.value(i)) * TOP1)
                    | (u8::from(!self.top5.is_null(i) && self.top5.value(i)) * TOP5),
            ),
        }
    }
}

/// A [`Loaded`] being built, row by row, with its interning tables.
#[derive(Default)]
struct Folder {
    out: Loaded,
    model_ids: HashMap<String, usize>,
    variant_ids: HashMap<String, usize>,
    key_ids: HashMap<String, usize>,
    // Key id -> the shard its first row came from (shard ids interned); keys seen in another.
    shard_ids: HashMap<String, usize>,
    shards: Vec<String>,
    first_shard: HashMap<(Option<String>, u32), usize>,
    cross: HashSet<u32>,
}

impl Folder {
    /// Folds every row of one predictions batch in.
    fn fold_batch(
        &mut self,
        batch: &RecordBatch,
        opts: LoadOptions<'_>,
        path: &Path,
    ) -> Result<(), FatalError> {
        let b = PredictionBatch::read(batch, opts, path)?;
        self.out.rows += batch.num_rows() as u64;
        for i in 0..batch.num_rows() {
            self.fold_row(&b, i);
        }
        Ok(())
    }

    /// Folds row `i` into the counts, cells, labels and worst candidates.
    fn fold_row(&mut self, b: &PredictionBatch, i: usize) {
        // Every row's key is interned once, here (error rows too: they count as
        // images read, and a key may come from two shards).
        let k = intern(&mut self.key_ids, &mut self.out.keys, b.key.value(i)) as u32;
        self.note_shard(b, i, k);
        let multi = is_multi_row(b.variant.value(i));
        let status = b.status.value(i);
        if status != "ok" {
            *self.out.error_rows.entry(status.to_string()).or_default() += 1;
            if multi {
                // One failed candidate voids the image's verdict for this variant.
                let m = intern(&mut self.model_ids, &mut self.out.models, b.model.value(i));
                let v = intern(
                    &mut self.variant_ids,
                    &mut self.out.variants,
                    b.variant.value(i),
                );
                self.out.cells.entry((m, v)).or_default().push((k, INVALID));
            }
            return;
        }
        let Some(bits) = b.bits(i) else {
            self.out.unmapped += 1;
            return;
        };
        let m = intern(&mut self.model_ids, &mut self.out.models, b.model.value(i));
        if let Some(sc) = b.scoring.as_ref().filter(|c| !c.is_null(i)) {
            let entry = (b.model.value(i).to_string(), sc.value(i).to_string());
            *self.out.scoring.entry(entry).or_default() += 1;
        }
        // An image outside the foreground filter (--original-all) counts in
        // original_all only; the rest of original joins it once all is read.
        let outside = (b.in_filter.as_ref()).is_some_and(|f| !f.is_null(i) && !f.value(i));
        let name = if outside {
            ORIGINAL_ALL
        } else {
            b.variant.value(i)
        };
        let v = intern(&mut self.variant_ids, &mut self.out.variants, name);
        if let Some(l) = b.label.as_ref().filter(|l| !l.is_null(i)) {
            if self.out.labels.len() <= k as usize {
                self.out.labels.resize(k as usize + 1, -1);
            }
            self.out.labels[k as usize] = l.value(i);
        }
        self.out.cells.entry((m, v)).or_default().push((k, bits));
        if multi {
            self.note_worst(b, i, (m, v, k));
        }
    }

    /// Records which shard key `k`'s row `i` came from, and a key seen in two shards.
    fn note_shard(&mut self, b: &PredictionBatch, i: usize, k: u32) {
        // A released variant's images share their keys with the other variants' by
        // design: the check goes by (released variant, key) on their own rows.
        let released = (b.variant.value(i).strip_prefix(RELEASED_PREFIX)).map(String::from);
        let checked =
            (b.shard.as_ref()).filter(|c| !c.is_null(i) && b.status.value(i) != "released");
        let Some(sh) = checked else {
            return;
        };
        let s = intern(&mut self.shard_ids, &mut self.shards, sh.value(i));
        let first = *self.first_shard.entry((released, k)).or_insert(s);
        if first != s && self.cross.insert(k) && self.out.cross_shard_example.is_none() {
            self.out.cross_shard_example = Some((
                b.key.value(i).to_string(),
                self.shards[first].clone(),
                self.shards[s].clone(),
            ));
        }
    }

    /// Keeps row `i` as the worst candidate of cell `at` if its p_true is the lowest yet.
    fn note_worst(&mut self, b: &PredictionBatch, i: usize, at: (usize, usize, u32)) {
        let p = (b.p_true.as_ref())
            .filter(|p| !p.is_null(i))
            .map_or(f32::NAN, |p| p.value(i));
        let bg = (b.background.as_ref())
            .filter(|b| !b.is_null(i))
            .map(|b| b.value(i).to_string());
        let w = self.out.worst.entry(at).or_insert(WorstCase {
            background: None,
            p_true: f32::INFINITY,
            candidates: 0,
        });
        w.candidates += 1;
        // Lowest p_true wins; ties go to the smaller name, so files' order
        // does not matter.
        if p < w.p_true || (p == w.p_true && bg < w.background) {
            w.p_true = p;
            w.background = bg;
        }
    }

    /// The [`Loaded`] once every file is folded in.
    fn finish(self, files: Vec<PathBuf>, opts: LoadOptions<'_>) -> Loaded {
        let mut out = self.out;
        join_original_all(&mut out);
        out.cross_shard_keys = self.cross.len() as u64;
        out.labels.resize(out.keys.len(), -1);
        out.files = files;
        reduce_cells(&mut out);
        out.worst.retain(|(m, v, k), _| {
            out.cells
                .get(&(*m, *v))
                .is_some_and(|l| l.binary_search_by_key(k, |e| e.0).is_ok())
        });
        out.class_map = opts.class_map.map(|m| m.name.clone());
        out
    }
}

/// Sorts every cell by key id: one verdict per key for multi-row variants
/// ([`reduce_all`]); elsewhere the first row of a key is kept and the rest counted as
/// duplicates.
fn reduce_cells(out: &mut Loaded) {
    for ((_, v), list) in out.cells.iter_mut() {
        if is_multi_row(&out.variants[*v]) {
            list.sort_unstable();
            *list = reduce_all(list);
            continue;
        }
        list.sort_by_key(|e| e.0);
        let before = list.len();
        list.dedup_by_key(|e| e.0);
        out.duplicates += (before - list.len()) as u64;
    }
}

/// [`load`] with options.
pub fn load_with(dir: &Path, opts: LoadOptions<'_>) -> Result<Loaded, FatalError> {
    let files = list_inputs(dir)?;
    let mut folder = Folder::default();
    for path in &files {
        if path.file_name().is_some_and(|n| n == CHALLENGE_FILE) {
            load_challenge(path, &mut folder.out.exhaustive)?;
            continue;
        }
        let batches = open_projected(path, |schema| predictions_projection(schema, path, opts))?;
        for batch in batches {
            folder.fold_batch(&batch?, opts, path)?;
        }
    }
    Ok(folder.finish(files, opts))
}

/// Adds every model's `original` cells to its [`ORIGINAL_ALL`] cells, when the input has
/// images outside the filter (`--original-all`), and places that variant after `original`.
fn join_original_all(out: &mut Loaded) {
    let (Some(all), Some(orig)) = (
        out.variants.iter().position(|v| v == ORIGINAL_ALL),
        out.variants.iter().position(|v| v == "original"),
    ) else {
        return;
    };
    for m in 0..out.models.len() {
        let kept = out.cells.get(&(m, orig)).cloned().unwrap_or_default();
        out.cells.entry((m, all)).or_default().extend(kept);
    }
}

/// One prediction row of a key the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownRow {
    pub variant: String,
    pub model: String,
    pub background: Option<String>,
    pub shard: Option<String>,
    pub status: String,
    pub top1: Option<i64>,
    pub p_true: Option<f32>,
    /// The row's `scoring` rule (`in_to_in9`: `top1` is an ImageNet class, the label IN-9's).
    pub scoring: Option<String>,
}

/// The rows of `keys` in `files` (a second, narrow pass: the report's pictures need the
/// predicted class and p(true) of a few images, which [`load`] does not keep).
pub fn rows_for_keys(
    files: &[PathBuf],
    keys: &HashSet<String>,
) -> Result<HashMap<String, Vec<ShownRow>>, FatalError> {
    let mut out: HashMap<String, Vec<ShownRow>> = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    for path in files {
        let batches = open_projected(path, |schema| {
            Ok(optional_indices(
                schema,
                &[
                    "key",
                    "variant",
                    "model",
                    "status",
                    "background",
                    "shard",
                    "top5_classes",
                    "p_true",
                    "scoring",
                ],
            ))
        })?;
        for batch in batches {
            add_shown_rows(&batch?, path, keys, &mut out)?;
        }
    }
    Ok(out)
}

/// Adds one batch's rows of `keys` to `out`.
fn add_shown_rows(
    batch: &RecordBatch,
    path: &Path,
    keys: &HashSet<String>,
    out: &mut HashMap<String, Vec<ShownRow>>,
) -> Result<(), FatalError> {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Int64, true)));
    let key = strings(batch, "key", path)?;
    let (variant, model, status) = (
        strings(batch, "variant", path)?,
        strings(batch, "model", path)?,
        strings(batch, "status", path)?,
    );
    let opt_str = |name: &str| -> Result<_, FatalError> {
        Ok(cast_column(batch, name, &DataType::Utf8, path)?.map(|c| c.as_string::<i32>().clone()))
    };
    let (background, shard) = (opt_str("background")?, opt_str("shard")?);
    let scoring = opt_str("scoring")?;
    let top = cast_column(batch, "top5_classes", &list, path)?.map(|c| c.as_list::<i32>().clone());
    let p_true = cast_column(batch, "p_true", &DataType::Float32, path)?
        .map(|c| c.as_primitive::<arrow::datatypes::Float32Type>().clone());
    let text = |c: &Option<StringArray>, i: usize| {
        c.as_ref()
            .filter(|c| !c.is_null(i))
            .map(|c| c.value(i).to_string())
    };
    for i in 0..batch.num_rows() {
        if !keys.contains(key.value(i)) {
            continue;
        }
        let top1 = top.as_ref().filter(|t| !t.is_null(i)).and_then(|t| {
            let v = t.value(i);
            let v = v.as_primitive_opt::<arrow::datatypes::Int64Type>()?;
            (!v.is_empty() && !v.is_null(0)).then(|| v.value(0))
        });
        out.entry(key.value(i).to_string())
            .or_default()
            .push(ShownRow {
                variant: variant.value(i).to_string(),
                model: model.value(i).to_string(),
                background: text(&background, i),
                shard: text(&shard, i),
                status: status.value(i).to_string(),
                top1,
                p_true: p_true
                    .as_ref()
                    .filter(|p| !p.is_null(i))
                    .map(|p| p.value(i)),
                scoring: text(&scoring, i),
            });
    }
    Ok(())
}
