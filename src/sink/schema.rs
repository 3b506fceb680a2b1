//! The predictions schema: one row per (image, variant, model). Its description for users
//! is `schemas/predictions.schema.json`; a test keeps the two identical.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::classes::Scoring;
use crate::item::Row;

fn list(inner: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", inner, true)))
}

/// The Arrow schema of the predictions files.
pub fn predictions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("label", DataType::Int64, true),
        Field::new("variant", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("background", DataType::Utf8, true),
        Field::new("top5_classes", list(DataType::Int64), true),
        Field::new("top5_probs", list(DataType::Float32), true),
        Field::new("p_true", DataType::Float32, true),
        Field::new("top1_correct", DataType::Boolean, true),
        Field::new("top5_correct", DataType::Boolean, true),
        Field::new("scoring", DataType::Utf8, true),
        Field::new("fg_fraction", DataType::Float32, true),
        Field::new("fg_source", DataType::Utf8, true),
        Field::new("in_filter", DataType::Boolean, true),
        Field::new("width", DataType::Int32, true),
        Field::new("height", DataType::Int32, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// Builds one record batch from rows, in the order given.
pub fn rows_to_batch(rows: &[Row]) -> RecordBatch {
    let n = rows.len();
    let mut item = ItemColumns::with_capacity(n);
    let mut prediction = PredictionColumns::with_capacity(n);
    let mut meta = MetaColumns::with_capacity(n);
    let mut status = StatusColumns::with_capacity(n);
    for r in rows {
        item.append(r);
        prediction.append(r);
        meta.append(r);
        status.append(r);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(19);
    columns.extend(item.finish());
    columns.extend(prediction.finish());
    columns.extend(meta.finish());
    columns.extend(status.finish());
    RecordBatch::try_new(predictions_schema(), columns).expect("builders match the schema")
}

/// `shard` to `background`: which image, variant and model a row is about.
struct ItemColumns {
    shard: StringBuilder,
    key: StringBuilder,
    label: Int64Builder,
    variant: StringBuilder,
    model: StringBuilder,
    background: StringBuilder,
}

impl ItemColumns {
    fn with_capacity(n: usize) -> Self {
        ItemColumns {
            shard: StringBuilder::with_capacity(n, n * 32),
            key: StringBuilder::with_capacity(n, n * 24),
            label: Int64Builder::with_capacity(n),
            variant: StringBuilder::with_capacity(n, n * 12),
            model: StringBuilder::with_capacity(n, n * 16),
            background: StringBuilder::new(),
        }
    }

    fn append(&mut self, r: &Row) {
        let m = &r.meta;
        self.shard.append_value(&m.shard);
        self.key.append_value(&m.key);
        self.label.append_option(m.label);
        self.variant.append_value(&r.variant);
        self.model.append_value(&r.model);
        self.background.append_option(r.background.as_deref());
    }

    fn finish(mut self) -> [ArrayRef; 6] {
        [
            Arc::new(self.shard.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.label.finish()),
            Arc::new(self.variant.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.background.finish()),
        ]
    }
}

/// `top5_classes` to `scoring`: what the model said, null on failed rows.
struct PredictionColumns {
    top5: ListBuilder<Int64Builder>,
    probs: ListBuilder<Float32Builder>,
    p_true: Float32Builder,
    top1_ok: BooleanBuilder,
    top5_ok: BooleanBuilder,
    scoring: StringBuilder,
}

impl PredictionColumns {
    fn with_capacity(n: usize) -> Self {
        PredictionColumns {
            top5: ListBuilder::new(Int64Builder::with_capacity(n * 5)),
            probs: ListBuilder::new(Float32Builder::with_capacity(n * 5)),
            p_true: Float32Builder::with_capacity(n),
            top1_ok: BooleanBuilder::with_capacity(n),
            top5_ok: BooleanBuilder::with_capacity(n),
            scoring: StringBuilder::with_capacity(n, n * 6),
        }
    }

    fn append(&mut self, r: &Row) {
        let Ok(p) = &r.outcome else {
            self.top5.append(false);
            self.probs.append(false);
            self.p_true.append_null();
            self.top1_ok.append_null();
            self.top5_ok.append_null();
            self.scoring.append_null();
            return;
        };
        let k = p.top5.iter().take_while(|&&c| c >= 0).count();
        self.top5.values().append_slice(&p.top5[..k]);
        self.top5.append(true);
        self.probs.values().append_slice(&p.top5_prob[..k]);
        self.probs.append(true);
        self.p_true.append_value(p.p_true);
        let hits = r.hits();
        self.top1_ok.append_option(hits.map(|h| h.0));
        self.top5_ok.append_option(hits.map(|h| h.1));
        self.scoring
            .append_value(r.scoring.unwrap_or(Scoring::Direct).name());
    }

    fn finish(mut self) -> [ArrayRef; 6] {
        [
            Arc::new(self.top5.finish()),
            Arc::new(self.probs.finish()),
            Arc::new(self.p_true.finish()),
            Arc::new(self.top1_ok.finish()),
            Arc::new(self.top5_ok.finish()),
            Arc::new(self.scoring.finish()),
        ]
    }
}

/// `fg_fraction` to `height`: what is known of the image itself.
struct MetaColumns {
    fg: Float32Builder,
    fg_source: StringBuilder,
    in_filter: BooleanBuilder,
    width: Int32Builder,
    height: Int32Builder,
}

impl MetaColumns {
    fn with_capacity(n: usize) -> Self {
        MetaColumns {
            fg: Float32Builder::with_capacity(n),
            fg_source: StringBuilder::with_capacity(n, n * 5),
            in_filter: BooleanBuilder::with_capacity(n),
            width: Int32Builder::with_capacity(n),
            height: Int32Builder::with_capacity(n),
        }
    }

    fn append(&mut self, r: &Row) {
        let m = &r.meta;
        self.fg.append_option(m.fg_fraction.map(|f| f as f32));
        self.fg_source.append_option(m.fg_source);
        self.in_filter.append_option(m.in_filter);
        self.width.append_option(m.width.map(|w| w as i32));
        self.height.append_option(m.height.map(|h| h as i32));
    }

    fn finish(mut self) -> [ArrayRef; 5] {
        [
            Arc::new(self.fg.finish()),
            Arc::new(self.fg_source.finish()),
            Arc::new(self.in_filter.finish()),
            Arc::new(self.width.finish()),
            Arc::new(self.height.finish()),
        ]
    }
}

/// `status` and `error`: `ok`, or the failure's code and message.
struct StatusColumns {
    status: StringBuilder,
    error: StringBuilder,
}

impl StatusColumns {
    fn with_capacity(n: usize) -> Self {
        StatusColumns {
            status: StringBuilder::with_capacity(n, n * 2),
            error: StringBuilder::new(),
        }
    }

    fn append(&mut self, r: &Row) {
        match &r.outcome {
            Ok(_) => {
                self.status.append_value("ok");
                self.error.append_null();
            }
            Err(e) => {
                self.status.append_value(e.code);
                self.error.append_value(&e.message);
            }
        }
    }

    fn finish(mut self) -> [ArrayRef; 2] {
        [
            Arc::new(self.status.finish()),
            Arc::new(self.error.finish()),
        ]
    }
}
