//! The Arrow schema in the code and its description in schemas/ must agree.

use bgstream::sink::predictions_schema;

#[test]
fn predictions_schema_matches_schemas_folder() {
    let text =
        std::fs::read_to_string(crate::common::root().join("schemas/predictions.schema.json"))
            .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let described: Vec<(String, String, bool)> = doc["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["arrow_type"].as_str().unwrap().to_string(),
                f["nullable"].as_bool().unwrap(),
            )
        })
        .collect();
    let actual: Vec<(String, String, bool)> = predictions_schema()
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                arrow::datatypes::DataType::List(inner) => format!("List<{}>", inner.data_type()),
                t => t.to_string(),
            };
            (f.name().clone(), ty, f.is_nullable())
        })
        .collect();
    assert_eq!(
        described, actual,
        "update schemas/predictions.schema.json with the schema change"
    );
    assert!(doc["fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["description"].as_str().is_some_and(|d| !d.is_empty())));
}
