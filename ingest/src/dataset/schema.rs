//! Columns of a bitkit dataset and the Hugging Face `datasets` features that describe them.
//!
//! | column | Arrow type | |
//! |---|---|---|
//! | `key` | Utf8 | unique, stable sample key |
//! | `image` | Struct{bytes: Binary, path: Utf8} | encoded bytes as stored (HF `Image`) |
//! | `label` | Int64 | primary class id (HF `ClassLabel` when class names are known) |
//! | `labels` | List<Int64> | all class ids |
//! | `width`, `height` | Int32 | from the image header |
//! | `format` | Utf8 | sniffed from magic bytes |
//! | `content_hash` | FixedSizeBinary(32) | blake3 of `image.bytes` |
//! | `source` | Utf8 | shard, relative to the ingest root |
//! | `source_index` | Int64 | record index inside the shard |
//! | `original_hash` | FixedSizeBinary(32) | only with `--max-side`: blake3 of the source bytes |
//!
//! Every field is nullable and `image` uses `Binary`/`Utf8` (not the large or view types):
//! `datasets` applies the features metadata only when the file's field equals the one it
//! would generate itself (FORMATS.md §6, "Gotcha").

use arrow_schema::{DataType, Field, Fields, Schema};
use std::collections::HashMap;
use std::sync::Arc;

/// Key of the schema / footer metadata read by Hugging Face `datasets`.
pub const HUGGINGFACE_METADATA_KEY: &str = "huggingface";

/// One row as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    /// Shared with the reader's buffer: moved into the Parquet encoder without a copy.
    pub image_bytes: bytes::Bytes,
    pub image_path: Option<String>,
    /// Class ids; the first is `label`. Empty → `label` and `labels` are null.
    pub labels: Vec<i64>,
    pub width: i32,
    pub height: i32,
    pub format: &'static str,
    pub content_hash: [u8; 32],
    pub source: Arc<str>,
    pub source_index: i64,
    /// Present exactly when the dataset was ingested with `--max-side`.
    pub original_hash: Option<[u8; 32]>,
}

pub fn image_fields() -> Fields {
    Fields::from(vec![Field::new("bytes", DataType::Binary, true), Field::new("path", DataType::Utf8, true)])
}

/// The Arrow schema of a dataset, with the `huggingface` features metadata.
pub fn dataset_schema(class_names: Option<&[String]>, with_original_hash: bool) -> Schema {
    let mut fields = vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("image", DataType::Struct(image_fields()), true),
        Field::new("label", DataType::Int64, true),
        Field::new("labels", DataType::List(Arc::new(Field::new("item", DataType::Int64, true))), true),
        Field::new("width", DataType::Int32, true),
        Field::new("height", DataType::Int32, true),
        Field::new("format", DataType::Utf8, true),
        Field::new("content_hash", DataType::FixedSizeBinary(32), true),
        Field::new("source", DataType::Utf8, true),
        Field::new("source_index", DataType::Int64, true),
    ];
    if with_original_hash {
        fields.push(Field::new("original_hash", DataType::FixedSizeBinary(32), true));
    }
    let metadata = HashMap::from([(
        HUGGINGFACE_METADATA_KEY.to_string(),
        huggingface_features_json(class_names, with_original_hash),
    )]);
    Schema::new_with_metadata(fields, metadata)
}

/// `{"info":{"features":{...}}}` as `datasets` writes it: `Image` for `image`, `ClassLabel`
/// (with names) for `label` and `List(ClassLabel)` for `labels` when the class names are
/// known, plain `int64` values otherwise. Keys in column order; serde_json keeps insertion
/// order only with a feature we don't enable, so the JSON is written by hand, deterministically.
pub fn huggingface_features_json(class_names: Option<&[String]>, with_original_hash: bool) -> String {
    let value = |dtype: &str| format!(r#"{{"dtype":"{dtype}","_type":"Value"}}"#);
    let label = match class_names {
        Some(names) => {
            let names = serde_json::to_string(names).expect("a list of strings serializes");
            format!(r#"{{"names":{names},"_type":"ClassLabel"}}"#)
        }
        None => value("int64"),
    };
    let mut features = vec![
        ("key", value("string")),
        ("image", r#"{"_type":"Image"}"#.to_string()),
        ("label", label.clone()),
        ("labels", format!(r#"{{"feature":{label},"_type":"List"}}"#)),
        ("width", value("int32")),
        ("height", value("int32")),
        ("format", value("string")),
        ("content_hash", value("fixed_size_binary[32]")),
        ("source", value("string")),
        ("source_index", value("int64")),
    ];
    if with_original_hash {
        features.push(("original_hash", value("fixed_size_binary[32]")));
    }
    let body: Vec<String> = features.iter().map(|(name, f)| format!(r#""{name}":{f}"#)).collect();
    format!(r#"{{"info":{{"features":{{{}}}}}}}"#, body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_json_is_valid_and_names_classes() {
        let names = vec!["n01440764".to_string(), "n01443537".to_string()];
        let json: serde_json::Value =
            serde_json::from_str(&huggingface_features_json(Some(&names), false)).expect("valid JSON");
        let features = &json["info"]["features"];
        assert_eq!(features["image"]["_type"], "Image");
        assert_eq!(features["label"]["names"][1], "n01443537");
        assert_eq!(features["labels"]["feature"]["_type"], "ClassLabel");
        assert!(features.get("original_hash").is_none());
    }

    #[test]
    fn without_names_labels_are_plain_ints() {
        let json: serde_json::Value = serde_json::from_str(&huggingface_features_json(None, true)).expect("valid JSON");
        assert_eq!(json["info"]["features"]["label"]["dtype"], "int64");
        assert_eq!(json["info"]["features"]["original_hash"]["dtype"], "fixed_size_binary[32]");
    }

    #[test]
    fn schema_has_the_design_columns_in_order() {
        let schema = dataset_schema(None, false);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["key", "image", "label", "labels", "width", "height", "format", "content_hash", "source", "source_index"]
        );
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
    }
}
