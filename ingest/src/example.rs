//! `tf.train.Example` decoding (OWNER: helper A). Stub: signatures only.

/// One feature of an Example, borrowing from the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature<'a> {
    Bytes(Vec<&'a [u8]>),
    Float(Vec<f32>),
    Int64(Vec<i64>),
}

/// A decoded Example: features in the order of their (last) occurrence in the record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Example<'a> {
    pub features: Vec<(&'a str, Feature<'a>)>,
}

impl<'a> Example<'a> {
    pub fn get(&self, key: &str) -> Option<&Feature<'a>> {
        self.features.iter().rev().find(|(k, _)| *k == key).map(|(_, f)| f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tf.train.Example: byte {offset}: {reason}")]
pub struct ExampleError {
    pub offset: usize,
    pub reason: String,
}

pub fn parse_example(_data: &[u8]) -> Result<Example<'_>, ExampleError> {
    Err(ExampleError { offset: 0, reason: "not implemented yet".into() })
}
