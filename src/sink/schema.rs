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
    let mut shard = StringBuilder::with_capacity(n, n * 32);
    let mut key = StringBuilder::with_capacity(n, n * 24);
    let mut label = Int64Builder::with_capacity(n);
    let mut variant = StringBuilder::with_capacity(n, n * 12);
    let mut model = StringBuilder::with_capacity(n, n * 16);
    let mut background = StringBuilder::new();
    let mut top5 = ListBuilder::new(Int64Builder::with_capacity(n * 5));
    let mut probs = ListBuilder::new(Float32Builder::with_capacity(n * 5));
    let mut p_true = Float32Builder::with_capacity(n);
    let mut top1_ok = BooleanBuilder::with_capacity(n);
    let mut top5_ok = BooleanBuilder::with_capacity(n);
    let mut scoring = StringBuilder::with_capacity(n, n * 6);
    let mut fg = Float32Builder::with_capacity(n);
    let mut fg_source = StringBuilder::with_capacity(n, n * 5);
    let mut in_filter = BooleanBuilder::with_capacity(n);
    let mut width = Int32Builder::with_capacity(n);
    let mut height = Int32Builder::with_capacity(n);
    let mut status = StringBuilder::with_capacity(n, n * 2);
    let mut error = StringBuilder::new();
    for r in rows {
        let m = &r.meta;
        shard.append_value(&m.shard);
        key.append_value(&m.key);
        label.append_option(m.label);
        variant.append_value(&r.variant);
        model.append_value(&r.model);
        background.append_option(r.background.as_deref());
        fg.append_option(m.fg_fraction.map(|f| f as f32));
        fg_source.append_option(m.fg_source);
        in_filter.append_option(m.in_filter);
        width.append_option(m.width.map(|w| w as i32));
        height.append_option(m.height.map(|h| h as i32));
        match &r.outcome {
            Ok(p) => {
                let k = p.top5.iter().take_while(|&&c| c >= 0).count();
                top5.values().append_slice(&p.top5[..k]);
                top5.append(true);
                probs.values().append_slice(&p.top5_prob[..k]);
                probs.append(true);
                p_true.append_value(p.p_true);
                let (top1, top5) = r.hits().unwrap_or_default();
                top1_ok.append_value(top1);
                top5_ok.append_value(top5);
                scoring.append_value(r.scoring.unwrap_or(Scoring::Direct).name());
                status.append_value("ok");
                error.append_null();
            }
            Err(e) => {
                top5.append(false);
                probs.append(false);
                p_true.append_null();
                top1_ok.append_null();
                top5_ok.append_null();
                scoring.append_null();
                status.append_value(e.code);
                error.append_value(&e.message);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(shard.finish()),
        Arc::new(key.finish()),
        Arc::new(label.finish()),
        Arc::new(variant.finish()),
        Arc::new(model.finish()),
        Arc::new(background.finish()),
        Arc::new(top5.finish()),
        Arc::new(probs.finish()),
        Arc::new(p_true.finish()),
        Arc::new(top1_ok.finish()),
        Arc::new(top5_ok.finish()),
        Arc::new(scoring.finish()),
        Arc::new(fg.finish()),
        Arc::new(fg_source.finish()),
        Arc::new(in_filter.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(status.finish()),
        Arc::new(error.finish()),
    ];
    RecordBatch::try_new(predictions_schema(), columns).expect("builders match the schema")
}
