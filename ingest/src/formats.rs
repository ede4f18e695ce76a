//! The input formats and the per-record decode step that runs on rayon workers.
//!
//! [`decode_raw`] turns a framed [`RawRecord`] into a [`SourceRecord`]: for TFRecord it checks
//! the data CRC and parses the `tf.train.Example`; for every format it maps labels to class ids.

use crate::classes::ClassList;
use crate::example::{parse_example, Feature};
use crate::{RawLabel, RawPayload, RawRecord, RecordError, RejectKind, SourceRecord};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// ImageNet-21k / ILSVRC train: a directory of per-synset tars, or the outer tar of them.
    ImagenetTar,
    /// Flat tars; the class is the member's parent directory.
    Tar,
    /// WebDataset tars: samples grouped by key, labels from `.cls`, `.json` or `.txt`.
    Webdataset,
    /// TFRecord shards of `tf.train.Example` (JFT / TFDS style).
    Tfrecord,
    /// An ImageFolder tree `ROOT/<class>/<image>`.
    Folder,
    /// CIFAR-10/100 binary batches.
    Cifar,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::ImagenetTar => "imagenet-tar",
            Format::Tar => "tar",
            Format::Webdataset => "webdataset",
            Format::Tfrecord => "tfrecord",
            Format::Folder => "folder",
            Format::Cifar => "cifar",
        }
    }
}

/// Feature keys of TFRecord Examples (`--image-key`, `--label-key`, `--label-offset`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TfRecordKeys {
    pub image_key: String,
    pub label_key: String,
    /// Feature whose first value becomes `image.path` when present.
    pub filename_key: String,
    /// Subtracted from every stored label: 1 for the 1-based Inception/TPU convention.
    pub label_offset: i64,
}

pub const DEFAULT_IMAGE_KEY: &str = "image/encoded";
pub const DEFAULT_LABEL_KEY: &str = "image/class/label";
pub const DEFAULT_FILENAME_KEY: &str = "image/filename";

impl Default for TfRecordKeys {
    fn default() -> Self {
        TfRecordKeys {
            image_key: DEFAULT_IMAGE_KEY.into(),
            label_key: DEFAULT_LABEL_KEY.into(),
            filename_key: DEFAULT_FILENAME_KEY.into(),
            label_offset: 0,
        }
    }
}

/// What [`decode_raw`] needs besides the record.
#[derive(Debug, Clone)]
pub struct DecodeContext {
    /// Shared by every shard's context (ImageNet-21k: 21,843 names, 21,841 shards).
    pub classes: Option<std::sync::Arc<ClassList>>,
    pub tfrecord: TfRecordKeys,
    /// Shard name, used in TFRecord keys (`<shard>/<index>`).
    pub shard_name: String,
}

/// Interprets one framed record. Errors carry the record's index and offset.
pub fn decode_raw(raw: RawRecord, context: &DecodeContext) -> Result<SourceRecord, RecordError> {
    let RawRecord { index, offset, payload } = raw;
    let locate = |e: RecordError| e.at(index, offset);
    match payload {
        RawPayload::Image { key, path, bytes, label } => {
            let labels = resolve_label(label, context).map_err(|e| locate(e.named(key.clone())))?;
            Ok(SourceRecord { index, offset, key, path, bytes, labels })
        }
        RawPayload::TfRecord { data, masked_data_crc } => {
            crate::tfrecord::check_data_crc(&data, masked_data_crc).map_err(locate)?;
            let example = parse_example(&data).map_err(|e| locate(e.into()))?;
            let keys = &context.tfrecord;
            let path = match example.get(&keys.filename_key) {
                Some(Feature::Bytes(values)) => values.first().map(|v| String::from_utf8_lossy(v).into_owned()),
                _ => None,
            };
            let key = format!("{}/{index}", context.shard_name);
            let image = match example.get(&keys.image_key) {
                Some(Feature::Bytes(values)) => match values.as_slice() {
                    // A view of the record, not a copy: the image is most of its bytes.
                    [one] => data.slice_ref(one),
                    [] => {
                        return Err(locate(RecordError::new(
                            RejectKind::MissingField,
                            format!("feature {:?} is an empty bytes_list", keys.image_key),
                        )))
                    }
                    more => {
                        return Err(locate(RecordError::new(
                            RejectKind::Malformed,
                            format!(
                                "feature {:?} holds {} values; one image per record expected",
                                keys.image_key,
                                more.len()
                            ),
                        )))
                    }
                },
                Some(other) => {
                    return Err(locate(RecordError::new(
                        RejectKind::Malformed,
                        format!("feature {:?} is a {}, not a bytes_list", keys.image_key, other.kind_name()),
                    )))
                }
                None => {
                    let present: Vec<&str> = example.features.iter().map(|(k, _)| *k).collect();
                    return Err(locate(RecordError::new(
                        RejectKind::MissingField,
                        format!("no feature {:?} (features present: {})", keys.image_key, present.join(", ")),
                    )));
                }
            };
            let label = match example.get(&keys.label_key) {
                Some(Feature::Int64(values)) => {
                    let shifted: Option<Vec<i64>> = values.iter().map(|v| v.checked_sub(keys.label_offset)).collect();
                    match shifted {
                        Some(ids) => RawLabel::Ids(ids),
                        None => {
                            return Err(locate(RecordError::new(
                                RejectKind::BadLabel,
                                format!(
                                    "a label of {:?} overflows when --label-offset {} is subtracted",
                                    keys.label_key, keys.label_offset
                                ),
                            )))
                        }
                    }
                }
                Some(other) => {
                    return Err(locate(RecordError::new(
                        RejectKind::BadLabel,
                        format!("feature {:?} is a {}, not an int64_list", keys.label_key, other.kind_name()),
                    )))
                }
                None => RawLabel::Missing,
            };
            let labels = resolve_label(label, context).map_err(|e| locate(e.named(key.clone())))?;
            Ok(SourceRecord { index, offset, key, path, bytes: image, labels })
        }
    }
}

/// Maps a raw label to class ids, checking them against the class list when there is one.
fn resolve_label(label: RawLabel, context: &DecodeContext) -> Result<Vec<i64>, RecordError> {
    let ids = match label {
        RawLabel::ClassName(name) => match &context.classes {
            Some(classes) => match classes.id_of(&name) {
                Some(id) => vec![id],
                None => {
                    return Err(RecordError::new(
                        RejectKind::BadLabel,
                        format!("class {name:?} is not in the class list ({} classes)", classes.len()),
                    ))
                }
            },
            None => {
                return Err(RecordError::new(
                    RejectKind::BadLabel,
                    format!("class {name:?} found but no class list is known"),
                ))
            }
        },
        RawLabel::Ids(ids) => ids,
        RawLabel::SideFile { extension, bytes } => parse_side_label(&extension, &bytes, context)?,
        RawLabel::Missing => return Err(RecordError::new(RejectKind::BadLabel, "the record has no label")),
    };
    if ids.is_empty() {
        return Err(RecordError::new(RejectKind::BadLabel, "the label list is empty"));
    }
    for &id in &ids {
        if id < 0 {
            return Err(RecordError::new(
                RejectKind::BadLabel,
                format!("label {id} is negative (wrong --label-offset?)"),
            ));
        }
        if let Some(classes) = &context.classes {
            if !classes.contains_id(id) {
                return Err(RecordError::new(
                    RejectKind::BadLabel,
                    format!("label {id} is outside the class list (0..{})", classes.len()),
                ));
            }
        }
    }
    Ok(ids)
}

/// WebDataset label files: `.cls` holds an integer; `.txt` an integer or a class name;
/// `.json` a number, a list of numbers, or an object with `label`, `labels` or `cls`.
fn parse_side_label(extension: &str, bytes: &[u8], context: &DecodeContext) -> Result<Vec<i64>, RecordError> {
    let bad = |reason: String| RecordError::new(RejectKind::BadLabel, format!(".{extension} label: {reason}"));
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?.trim();
    match extension {
        "json" => {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
            let value = match &value {
                serde_json::Value::Object(map) => ["label", "labels", "cls"]
                    .iter()
                    .find_map(|k| map.get(*k))
                    .ok_or_else(|| bad("object has none of \"label\", \"labels\", \"cls\"".into()))?,
                other => other,
            };
            let as_id = |v: &serde_json::Value| v.as_i64().ok_or_else(|| bad(format!("{v} is not an integer")));
            match value {
                serde_json::Value::Array(items) => items.iter().map(as_id).collect(),
                other => Ok(vec![as_id(other)?]),
            }
        }
        _ => match text.parse::<i64>() {
            Ok(id) => Ok(vec![id]),
            Err(_) if extension == "txt" => match &context.classes {
                Some(classes) => classes
                    .id_of(text)
                    .map(|id| vec![id])
                    .ok_or_else(|| bad(format!("class {text:?} is not in the class list"))),
                None => Err(bad(format!("{text:?} is not an integer and no --classes list maps names"))),
            },
            Err(_) => Err(bad(format!("{text:?} is not an integer"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(classes: Option<&[&str]>) -> DecodeContext {
        DecodeContext {
            classes: classes
                .map(|c| ClassList::try_from_names(c.iter().map(|s| s.to_string()).collect()).expect("unique"))
                .map(std::sync::Arc::new),
            tfrecord: TfRecordKeys::default(),
            shard_name: "train.tfrecord-00000-of-00001".into(),
        }
    }

    fn image(label: RawLabel) -> RawRecord {
        RawRecord {
            index: 3,
            offset: 1536,
            payload: RawPayload::Image { key: "k".into(), path: None, bytes: vec![1].into(), label },
        }
    }

    #[test]
    fn class_names_map_through_the_list() {
        let ctx = context(Some(&["n1", "n2"]));
        assert_eq!(decode_raw(image(RawLabel::ClassName("n2".into())), &ctx).expect("known").labels, [1]);
        let err = decode_raw(image(RawLabel::ClassName("n9".into())), &ctx).expect_err("unknown");
        assert_eq!((err.kind, err.index, err.offset), (RejectKind::BadLabel, Some(3), Some(1536)));
    }

    #[test]
    fn side_file_labels() {
        let ctx = context(Some(&["cat", "dog", "eel"]));
        let side =
            |ext: &str, text: &str| RawLabel::SideFile { extension: ext.into(), bytes: text.as_bytes().to_vec() };
        let labels = |l| decode_raw(image(l), &ctx).map(|r| r.labels);
        assert_eq!(labels(side("cls", "2\n")), Ok(vec![2]));
        assert_eq!(labels(side("txt", "dog")), Ok(vec![1]));
        assert_eq!(labels(side("json", r#"{"label": 1}"#)), Ok(vec![1]));
        assert_eq!(labels(side("json", "[0, 2]")), Ok(vec![0, 2]));
        assert!(labels(side("cls", "7")).is_err(), "out of the class list");
        assert!(labels(side("json", "{")).is_err());
        assert!(labels(RawLabel::Missing).is_err());
    }
}
