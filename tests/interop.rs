//! Reading bitkit's output with other tools: pyarrow and Hugging Face `datasets`.
//!
//! `scripts/test` sets BITKIT_PYTHON to the project's .venv (pyarrow, datasets, Pillow).

use crate::util::{s, TestDir};
use bitkit_fixtures as fx;
use std::process::Command;

const CHECK: &str = r#"
import json, sys, glob
import pyarrow as pa, pyarrow.parquet as pq
ds = sys.argv[1]
files = sorted(glob.glob(ds + "/part-*.parquet"))
schema = pq.read_schema(files[0])
assert schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())]), schema
assert schema.field("label").type == pa.int64()
assert schema.field("labels").type == pa.list_(pa.int64())
assert schema.field("width").type == pa.int32() and schema.field("height").type == pa.int32()
assert schema.field("content_hash").type == pa.binary(32)
assert schema.field("source_index").type == pa.int64()
hf = json.loads(schema.metadata[b"huggingface"])
assert hf["info"]["features"]["image"]["_type"] == "Image"
kv = pq.ParquetFile(files[0]).metadata.metadata
assert b"huggingface" in kv, kv.keys()
table = pq.read_table(files)
manifest = json.load(open(ds + "/dataset.json"))
assert table.num_rows == manifest["rows"], (table.num_rows, manifest["rows"])

import datasets
d = datasets.load_dataset("parquet", data_files=files, split="train")
assert isinstance(d.features["image"], datasets.Image), d.features
assert isinstance(d.features["label"], datasets.ClassLabel), d.features
assert d.features["label"].names == manifest["classes"]
row = d[0]
img = row["image"]
assert img.size == (row["width"], row["height"]), (img.size, row["width"], row["height"])
img.load()
print(json.dumps({"rows": len(d), "first_label": d.features["label"].int2str(row["label"])}))
"#;

#[test]
fn pyarrow_and_huggingface_datasets_read_the_output() {
    let Ok(python) = std::env::var("BITKIT_PYTHON") else {
        // `cargo test` outside scripts/test has no Python environment; scripts/test always has.
        eprintln!("BITKIT_PYTHON not set: run ./scripts/test for the interoperability test");
        return;
    };
    let t = TestDir::new();
    let set = fx::synthetic_set(3, 4, 30);
    fx::write_imagenet_tars(&t.path("in"), &set).expect("fixtures");
    t.bitkit(&["ingest", "--format", "imagenet-tar", "in", "--out", "ds", "--quiet"]).expect_code(0);
    let output = Command::new(&python)
        .args(["-c", CHECK, s(&t.path("ds"))])
        .env("HF_DATASETS_CACHE", t.path("hf-cache"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("python runs");
    assert!(output.status.success(), "python check failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value =
        serde_json::from_slice(output.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).unwrap_or(b"{}"))
            .expect("json");
    assert_eq!(result["rows"], 12);
    assert!(result["first_label"].as_str().is_some_and(|l| l.starts_with('n')), "{result}");
}
