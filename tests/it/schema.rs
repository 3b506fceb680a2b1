//! The Arrow schemas in the code and their descriptions in schemas/ must agree.

use arrow::datatypes::{DataType, SchemaRef};

fn check(file: &str, schema: SchemaRef) {
    let text = std::fs::read_to_string(crate::common::root().join("schemas").join(file)).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fields = doc["fields"].as_array().unwrap();
    let described: Vec<(String, String, bool)> = fields
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["arrow_type"].as_str().unwrap().to_string(),
                f["nullable"].as_bool().unwrap(),
            )
        })
        .collect();
    let actual: Vec<(String, String, bool)> = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::List(inner) => format!("List<{}>", inner.data_type()),
                t => t.to_string(),
            };
            (f.name().clone(), ty, f.is_nullable())
        })
        .collect();
    assert_eq!(
        described, actual,
        "update schemas/{file} with the schema change"
    );
    assert!(
        fields
            .iter()
            .all(|f| f["description"].as_str().is_some_and(|d| !d.is_empty())),
        "every field of {file} is described"
    );
}

#[test]
fn predictions_schema_matches_schemas_folder() {
    check(
        "predictions.schema.json",
        bgstream::sink::predictions_schema(),
    );
}

#[test]
fn aggregate_summary_schema_matches_schemas_folder() {
    check(
        "aggregate-summary.schema.json",
        bgstream::aggregate::summary_schema(),
    );
}
