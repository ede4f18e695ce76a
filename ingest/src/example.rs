//! `tf.train.Example` decoding: a zero-copy protobuf parser for the payload of a TFRecord
//! (FORMATS.md §3; `tensorflow/core/example/{example,feature}.proto`; protobuf encoding guide).
//!
//! ```text
//! Example  { Features features = 1; }
//! Features { map<string, Feature> feature = 1; }     map entry = { string key = 1; Feature value = 2; }
//! Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
//! BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1; }  Int64List { repeated int64 value = 1; }
//! ```
//!
//! On the wire, `{"label": int64_list[3]}` is 18 bytes (tag = field << 3 | wire type;
//! wire types VARINT 0, I64 1, LEN 2, I32 5):
//!
//! ```text
//! 0a 10                  Example.features              field 1, LEN 16
//!    0a 0e               Features.feature map entry    field 1, LEN 14
//!       0a 05 "label"    entry key                     field 1, LEN 5
//!       12 05            entry value (Feature)         field 2, LEN 5
//!          1a 03         Feature.int64_list            field 3, LEN 3
//!             0a 01 03   Int64List.value, packed       field 1, LEN 1: varint 3
//! ```
//!
//! What a conforming protobuf parser accepts, this one accepts, because TensorFlow writers and
//! third-party converters differ:
//! - repeated scalars packed (`0a` LEN, several chunks concatenate) or unpacked (`08` varint
//!   per int64, `0d` fixed32 per float), mixed in any order;
//! - fields in any order, unknown fields (wire types 0, 1, 2, 5) skipped at every level, and a
//!   known field number with an unexpected wire type treated as unknown, as protobuf does;
//! - merge semantics: repeated `Example.features`, repeated entry `value`s and repeated lists of
//!   the same kind merge (lists concatenate); for the `kind` oneof and the entry key the last one
//!   wins; for a key that appears in several map entries the last entry wins (protobuf map rule);
//! - negative int64 as 10-byte two's-complement varints (int64 uses no zigzag).
//!
//! A map entry whose `Feature` has no kind set holds no values of any type; TensorFlow treats it
//! as missing, and so does [`Example`]: the key is dropped (together with earlier entries).
//!
//! Invariants: no panic and no allocation sized by a declared length that was not first checked
//! against the bytes that remain; bytes values and keys borrow from the record (no copies of the
//! image bytes); group wire types (3, 4), field number 0 and 6/7 wire types are errors, as are
//! truncated or over-long varints and keys that are not UTF-8. Errors carry the byte offset
//! (within the record) of the tag, length or value that failed.

use crate::{RecordError, RejectKind};

/// One feature of an Example, borrowing from the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature<'a> {
    Bytes(Vec<&'a [u8]>),
    Float(Vec<f32>),
    Int64(Vec<i64>),
}

impl Feature<'_> {
    /// The proto field name of this kind (`bytes_list`, `float_list`, `int64_list`), for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Feature::Bytes(_) => "bytes_list",
            Feature::Float(_) => "float_list",
            Feature::Int64(_) => "int64_list",
        }
    }

    /// Number of values in the list.
    pub fn len(&self) -> usize {
        match self {
            Feature::Bytes(values) => values.len(),
            Feature::Float(values) => values.len(),
            Feature::Int64(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decoded Example: features in the order of their (last) occurrence in the record.
///
/// Each key appears once ([`parse_example`] keeps the last entry of a duplicated key).
///
/// ```
/// use bitkit_ingest::example::parse_example;
///
/// let record = b"\x0a\x10\x0a\x0e\x0a\x05label\x12\x05\x1a\x03\x0a\x01\x03";
/// let example = parse_example(record).unwrap();
/// assert_eq!(example.int64_list("label"), Some(&[3i64][..]));
/// assert_eq!(example.bytes_list("label"), None); // present, but not a bytes_list
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Example<'a> {
    pub features: Vec<(&'a str, Feature<'a>)>,
}

impl<'a> Example<'a> {
    pub fn get(&self, key: &str) -> Option<&Feature<'a>> {
        self.features.iter().rev().find(|(k, _)| *k == key).map(|(_, f)| f)
    }

    /// The values of `key` if it is a `bytes_list` (`None` if absent or of another kind).
    pub fn bytes_list(&self, key: &str) -> Option<&[&'a [u8]]> {
        match self.get(key)? {
            Feature::Bytes(values) => Some(values),
            _ => None,
        }
    }

    /// The values of `key` if it is a `float_list` (`None` if absent or of another kind).
    pub fn float_list(&self, key: &str) -> Option<&[f32]> {
        match self.get(key)? {
            Feature::Float(values) => Some(values),
            _ => None,
        }
    }

    /// The values of `key` if it is an `int64_list` (`None` if absent or of another kind).
    pub fn int64_list(&self, key: &str) -> Option<&[i64]> {
        match self.get(key)? {
            Feature::Int64(values) => Some(values),
            _ => None,
        }
    }
}

/// Why a record is not a valid `tf.train.Example`; `offset` is a byte offset in the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tf.train.Example: byte {offset}: {reason}")]
pub struct ExampleError {
    pub offset: usize,
    pub reason: String,
}

/// A malformed Example rejects its record; the caller adds index and offset.
impl From<ExampleError> for RecordError {
    fn from(error: ExampleError) -> Self {
        RecordError::new(RejectKind::Malformed, error.to_string())
    }
}

/// Decodes a serialized `tf.train.Example`, borrowing keys and bytes values from `data`.
pub fn parse_example(data: &[u8]) -> Result<Example<'_>, ExampleError> {
    let mut parsed = Parsed::default();
    let mut message = Cursor::new(data);
    while !message.is_empty() {
        match message.read_tag("Example")? {
            (1, Wire::Len) => parse_features(message.read_len("Example.features")?, &mut parsed)?,
            (_, wire) => message.skip(wire, "Example")?,
        }
    }
    Ok(parsed.into_example())
}

/// Map entries in wire order, before duplicate keys are resolved.
#[derive(Default)]
struct Parsed<'a> {
    features: Vec<(&'a str, Feature<'a>)>,
    /// Indices into `features` of entries whose Feature had no kind (placeholders to drop).
    unset: Vec<usize>,
}

impl<'a> Parsed<'a> {
    fn push(&mut self, key: &'a str, feature: Option<Feature<'a>>) {
        if feature.is_none() {
            self.unset.push(self.features.len());
        }
        // `Vec::new()` does not allocate: the placeholder is free.
        self.features.push((key, feature.unwrap_or(Feature::Bytes(Vec::new()))));
    }

    /// Keeps the last entry of each key, in wire order, and drops kind-less entries.
    fn into_example(self) -> Example<'a> {
        let Parsed { mut features, unset } = self;
        let n = features.len();
        // Up to this many entries a quadratic scan (at most 120 key comparisons) beats sorting
        // and needs no allocation; TPU/TFDS image records have 2 to ~15 keys.
        const SCAN_MAX: usize = 16;
        if n <= SCAN_MAX {
            let mut keep: u32 = 0;
            for (i, (key, _)) in features.iter().enumerate() {
                let later = features.get(i + 1..).unwrap_or_default();
                if !unset.contains(&i) && !later.iter().any(|(other, _)| other == key) {
                    keep |= 1 << i;
                }
            }
            if keep.count_ones() as usize != n {
                let mut i = 0;
                features.retain(|_| {
                    let kept = keep & (1 << i) != 0;
                    i += 1;
                    kept
                });
            }
        } else {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_unstable_by(|&a, &b| features[a].0.cmp(features[b].0).then(a.cmp(&b)));
            let mut keep = vec![true; n];
            for pair in order.windows(2) {
                if let [earlier, later] = *pair {
                    if features[earlier].0 == features[later].0 {
                        keep[earlier] = false;
                    }
                }
            }
            for &i in &unset {
                if let Some(slot) = keep.get_mut(i) {
                    *slot = false;
                }
            }
            let mut kept = keep.into_iter();
            features.retain(|_| kept.next().unwrap_or(false));
        }
        Example { features }
    }
}

fn parse_features<'a>(mut message: Cursor<'a>, parsed: &mut Parsed<'a>) -> Result<(), ExampleError> {
    while !message.is_empty() {
        match message.read_tag("Features")? {
            (1, Wire::Len) => {
                let (key, feature) = parse_entry(message.read_len("Features.feature entry")?)?;
                parsed.push(key, feature);
            }
            (_, wire) => message.skip(wire, "Features")?,
        }
    }
    Ok(())
}

/// One `map<string, Feature>` entry; a missing key is `""`, a missing value has no kind.
fn parse_entry(mut entry: Cursor<'_>) -> Result<(&str, Option<Feature<'_>>), ExampleError> {
    let mut key = "";
    let mut feature = None;
    while !entry.is_empty() {
        match entry.read_tag("feature entry")? {
            (1, Wire::Len) => key = entry.read_len("feature key")?.into_str("feature key")?,
            (2, Wire::Len) => parse_feature(entry.read_len("Feature")?, &mut feature)?,
            (_, wire) => entry.skip(wire, "feature entry")?,
        }
    }
    Ok((key, feature))
}

/// Merges one `Feature` message into `feature`: a list of the kind already set extends it,
/// a list of another kind replaces it (oneof: last one wins).
fn parse_feature<'a>(mut message: Cursor<'a>, feature: &mut Option<Feature<'a>>) -> Result<(), ExampleError> {
    while !message.is_empty() {
        match message.read_tag("Feature")? {
            (1, Wire::Len) => {
                let list = message.read_len("Feature.bytes_list")?;
                let mut values = match feature.take() {
                    Some(Feature::Bytes(values)) => values,
                    _ => Vec::new(),
                };
                parse_bytes_list(list, &mut values)?;
                *feature = Some(Feature::Bytes(values));
            }
            (2, Wire::Len) => {
                let list = message.read_len("Feature.float_list")?;
                let mut values = match feature.take() {
                    Some(Feature::Float(values)) => values,
                    _ => Vec::new(),
                };
                parse_float_list(list, &mut values)?;
                *feature = Some(Feature::Float(values));
            }
            (3, Wire::Len) => {
                let list = message.read_len("Feature.int64_list")?;
                let mut values = match feature.take() {
                    Some(Feature::Int64(values)) => values,
                    _ => Vec::new(),
                };
                parse_int64_list(list, &mut values)?;
                *feature = Some(Feature::Int64(values));
            }
            (_, wire) => message.skip(wire, "Feature")?,
        }
    }
    Ok(())
}

fn parse_bytes_list<'a>(mut list: Cursor<'a>, values: &mut Vec<&'a [u8]>) -> Result<(), ExampleError> {
    while !list.is_empty() {
        match list.read_tag("BytesList")? {
            (1, Wire::Len) => values.push(list.read_len("BytesList.value")?.rest),
            (_, wire) => list.skip(wire, "BytesList")?,
        }
    }
    Ok(())
}

fn parse_float_list(mut list: Cursor<'_>, values: &mut Vec<f32>) -> Result<(), ExampleError> {
    while !list.is_empty() {
        match list.read_tag("FloatList")? {
            (1, Wire::Len) => {
                let packed = list.read_len("FloatList.value")?;
                if packed.rest.len() % 4 != 0 {
                    return Err(packed.error(
                        packed.offset,
                        format!("FloatList.value: packed length {} is not a multiple of 4", packed.rest.len()),
                    ));
                }
                values.reserve(packed.rest.len() / 4);
                values.extend(packed.rest.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
            }
            (1, Wire::I32) => values.push(f32::from_bits(list.read_fixed32("FloatList.value")?)),
            (_, wire) => list.skip(wire, "FloatList")?,
        }
    }
    Ok(())
}

fn parse_int64_list(mut list: Cursor<'_>, values: &mut Vec<i64>) -> Result<(), ExampleError> {
    while !list.is_empty() {
        match list.read_tag("Int64List")? {
            (1, Wire::Len) => {
                let mut packed = list.read_len("Int64List.value")?;
                // Every varint ends in exactly one byte below 0x80: an exact count, bounded by
                // the bytes actually present.
                values.reserve(packed.rest.iter().filter(|&&b| b < 0x80).count());
                while !packed.is_empty() {
                    // Two's complement: int64 is not zigzag-encoded, -1 is ten bytes.
                    values.push(packed.read_varint("Int64List.value")? as i64);
                }
            }
            (1, Wire::Varint) => values.push(list.read_varint("Int64List.value")? as i64),
            (_, wire) => list.skip(wire, "Int64List")?,
        }
    }
    Ok(())
}

/// A protobuf varint has at most 10 bytes (64 bits / 7 per byte).
const MAX_VARINT_BYTES: usize = 10;

/// The wire types a proto3 message may use (groups, 3 and 4, are proto2-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Varint,
    I64,
    Len,
    I32,
}

/// The unread bytes of one (sub)message and the record offset of the first of them.
#[derive(Debug, Clone, Copy)]
struct Cursor<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { rest: data, offset: 0 }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn error(&self, offset: usize, reason: String) -> ExampleError {
        ExampleError { offset, reason }
    }

    /// Splits off the first `n` bytes; `None` (and nothing consumed) if fewer remain.
    fn take(&mut self, n: usize) -> Option<Cursor<'a>> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        let taken = Cursor { rest: head, offset: self.offset };
        self.rest = tail;
        self.offset += n;
        Some(taken)
    }

    #[inline]
    fn read_varint(&mut self, what: &str) -> Result<u64, ExampleError> {
        // Tags, lengths and small ints are one byte: the common case gets no loop.
        if let [byte @ 0..=0x7f, tail @ ..] = self.rest {
            self.rest = tail;
            self.offset += 1;
            return Ok(u64::from(*byte));
        }
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().take(MAX_VARINT_BYTES).enumerate() {
            // The 10th byte's bits above 2^63 fall off, as in protobuf's own parser.
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                let start = self.offset;
                self.take(i + 1).ok_or_else(|| self.error(start, format!("{what}: varint past the end")))?;
                return Ok(value);
            }
        }
        Err(if self.rest.is_empty() {
            self.error(self.offset, format!("{what}: message ends before a varint"))
        } else if self.rest.len() >= MAX_VARINT_BYTES {
            self.error(self.offset, format!("{what}: varint longer than {MAX_VARINT_BYTES} bytes"))
        } else {
            self.error(
                self.offset,
                format!("{what}: truncated varint ({} bytes, all with the continuation bit)", self.rest.len()),
            )
        })
    }

    fn read_tag(&mut self, what: &str) -> Result<(u64, Wire), ExampleError> {
        let start = self.offset;
        let tag = self.read_varint(what)?;
        let field = tag >> 3;
        if field == 0 || tag > u64::from(u32::MAX) {
            return Err(self.error(start, format!("{what}: invalid tag {tag:#x} (field number 0 or over 29 bits)")));
        }
        match tag & 7 {
            0 => Ok((field, Wire::Varint)),
            1 => Ok((field, Wire::I64)),
            2 => Ok((field, Wire::Len)),
            5 => Ok((field, Wire::I32)),
            wire @ (3 | 4) => {
                Err(self.error(start, format!("{what}: field {field} uses group wire type {wire}, not supported")))
            }
            wire => Err(self.error(start, format!("{what}: field {field} has invalid wire type {wire}"))),
        }
    }

    /// A length-delimited field's body, checked against the bytes left in this message.
    fn read_len(&mut self, what: &str) -> Result<Cursor<'a>, ExampleError> {
        let start = self.offset;
        let len = self.read_varint(what)?;
        let left = self.rest.len();
        usize::try_from(len).ok().and_then(|n| self.take(n)).ok_or_else(|| {
            self.error(start, format!("{what}: length {len} runs past the end of its message ({left} bytes left)"))
        })
    }

    fn read_fixed32(&mut self, what: &str) -> Result<u32, ExampleError> {
        match self.take(4).map(|bytes| bytes.rest) {
            Some(&[b0, b1, b2, b3]) => Ok(u32::from_le_bytes([b0, b1, b2, b3])),
            _ => Err(self.fixed_truncated(4, what)),
        }
    }

    fn fixed_truncated(&self, width: usize, what: &str) -> ExampleError {
        self.error(
            self.offset,
            format!("{what}: truncated fixed{} value ({} of {width} bytes left)", width * 8, self.rest.len()),
        )
    }

    /// Skips the value of an unknown field.
    fn skip(&mut self, wire: Wire, what: &str) -> Result<(), ExampleError> {
        match wire {
            Wire::Varint => self.read_varint(what).map(drop),
            Wire::I64 => self.take(8).map(drop).ok_or_else(|| self.fixed_truncated(8, what)),
            Wire::Len => self.read_len(what).map(drop),
            Wire::I32 => self.take(4).map(drop).ok_or_else(|| self.fixed_truncated(4, what)),
        }
    }

    fn into_str(self, what: &str) -> Result<&'a str, ExampleError> {
        std::str::from_utf8(self.rest).map_err(|error| {
            self.error(
                self.offset + error.valid_up_to(),
                format!("{what}: not valid UTF-8 after {} bytes", error.valid_up_to()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- a small encoder: the inverse of the parser, with knobs for every wire form ----

    fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn tag(out: &mut Vec<u8>, field: u64, wire: u64) {
        varint(out, field << 3 | wire);
    }

    fn len_field(out: &mut Vec<u8>, field: u64, body: &[u8]) {
        tag(out, field, 2);
        varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }

    /// An unknown field of each wire type (`kind` picks one), numbered `field`.
    fn unknown_field(out: &mut Vec<u8>, field: u64, kind: u8) {
        match kind % 4 {
            0 => {
                tag(out, field, 0);
                varint(out, u64::MAX);
            }
            1 => {
                tag(out, field, 1);
                out.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            }
            2 => len_field(out, field, b"\x0a\x03xyz unknown"),
            _ => {
                tag(out, field, 5);
                out.extend_from_slice(&[9, 9, 9, 9]);
            }
        }
    }

    /// Deterministic choices for the encoder (xorshift64*).
    struct Choices(u64);

    impl Choices {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn coin(&mut self) -> bool {
            self.below(2) == 0
        }
        /// Maybe an unknown field (numbered `first_free` or above) at this point of a message.
        fn maybe_unknown(&mut self, out: &mut Vec<u8>, first_free: u64) {
            if self.below(4) == 0 {
                let field = first_free + self.below(20);
                let kind = self.below(4) as u8;
                unknown_field(out, field, kind);
            }
        }
        /// Splits `0..n` into consecutive ranges (possibly empty ones, at least one).
        fn split(&mut self, n: usize) -> Vec<std::ops::Range<usize>> {
            let mut ranges = Vec::new();
            let mut start = 0;
            loop {
                let end = if self.below(3) == 0 { n } else { start + self.below((n - start) as u64 + 1) as usize };
                ranges.push(start..end);
                if end == n {
                    return ranges;
                }
                start = end;
            }
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Values {
        Bytes(Vec<Vec<u8>>),
        Float(Vec<f32>),
        Int64(Vec<i64>),
    }

    /// The list fields of one Feature (one or several, merged by the parser).
    fn encode_lists(values: &Values, choices: &mut Choices) -> Vec<Vec<u8>> {
        let mut fields = Vec::new();
        let (field, n) = match values {
            Values::Bytes(v) => (1, v.len()),
            Values::Float(v) => (2, v.len()),
            Values::Int64(v) => (3, v.len()),
        };
        for range in choices.split(n) {
            let mut list = Vec::new();
            choices.maybe_unknown(&mut list, 2);
            for chunk in choices.split(range.len()) {
                let chunk = range.start + chunk.start..range.start + chunk.end;
                let packed = choices.coin();
                match values {
                    Values::Bytes(v) => {
                        for value in &v[chunk] {
                            len_field(&mut list, 1, value);
                        }
                    }
                    Values::Float(v) if packed => {
                        let body: Vec<u8> = v[chunk].iter().flat_map(|f| f.to_le_bytes()).collect();
                        len_field(&mut list, 1, &body);
                    }
                    Values::Float(v) => {
                        for f in &v[chunk] {
                            tag(&mut list, 1, 5);
                            list.extend_from_slice(&f.to_le_bytes());
                        }
                    }
                    Values::Int64(v) if packed => {
                        let mut body = Vec::new();
                        for &i in &v[chunk] {
                            varint(&mut body, i as u64);
                        }
                        len_field(&mut list, 1, &body);
                    }
                    Values::Int64(v) => {
                        for &i in &v[chunk] {
                            tag(&mut list, 1, 0);
                            varint(&mut list, i as u64);
                        }
                    }
                }
                choices.maybe_unknown(&mut list, 2);
            }
            let mut out = Vec::new();
            len_field(&mut out, field, &list);
            fields.push(out);
        }
        fields
    }

    /// A whole Example: entries spread over several `features` fields, each entry's value
    /// split over several `value` fields, keys before or after values, unknown fields.
    fn encode_example(entries: &[(String, Values)], seed: u64) -> Vec<u8> {
        let mut choices = Choices(seed | 1);
        let mut encoded_entries = Vec::new();
        for (key, values) in entries {
            let lists = encode_lists(values, &mut choices);
            let mut entry = Vec::new();
            let key_first = choices.coin();
            if key_first {
                if choices.below(4) == 0 {
                    len_field(&mut entry, 1, b"overwritten key");
                }
                len_field(&mut entry, 1, key.as_bytes());
            }
            for group in choices.split(lists.len()) {
                if group.is_empty() && !lists.is_empty() {
                    continue;
                }
                let mut feature = Vec::new();
                for list in &lists[group] {
                    choices.maybe_unknown(&mut feature, 4);
                    feature.extend_from_slice(list);
                }
                choices.maybe_unknown(&mut entry, 3);
                len_field(&mut entry, 2, &feature);
            }
            if !key_first {
                len_field(&mut entry, 1, key.as_bytes());
            }
            choices.maybe_unknown(&mut entry, 3);
            encoded_entries.push(entry);
        }
        let mut out = Vec::new();
        for group in choices.split(encoded_entries.len()) {
            let mut features = Vec::new();
            for entry in &encoded_entries[group] {
                choices.maybe_unknown(&mut features, 2);
                len_field(&mut features, 1, entry);
            }
            choices.maybe_unknown(&mut out, 2);
            len_field(&mut out, 1, &features);
        }
        choices.maybe_unknown(&mut out, 2);
        out
    }

    /// Comparable form: floats as bits (NaN != NaN otherwise).
    #[derive(Debug, PartialEq)]
    enum Plain {
        Bytes(Vec<Vec<u8>>),
        Float(Vec<u32>),
        Int64(Vec<i64>),
    }

    fn plain_values(values: &Values) -> Plain {
        match values {
            Values::Bytes(v) => Plain::Bytes(v.clone()),
            Values::Float(v) => Plain::Float(v.iter().map(|f| f.to_bits()).collect()),
            Values::Int64(v) => Plain::Int64(v.clone()),
        }
    }

    fn plain(example: &Example<'_>) -> Vec<(String, Plain)> {
        example
            .features
            .iter()
            .map(|(key, feature)| {
                let values = match feature {
                    Feature::Bytes(v) => Plain::Bytes(v.iter().map(|b| b.to_vec()).collect()),
                    Feature::Float(v) => Plain::Float(v.iter().map(|f| f.to_bits()).collect()),
                    Feature::Int64(v) => Plain::Int64(v.clone()),
                };
                (key.to_string(), values)
            })
            .collect()
    }

    /// Map semantics: each key once, at its last occurrence, with its last value.
    fn expected(entries: &[(String, Values)]) -> Vec<(String, Plain)> {
        entries
            .iter()
            .enumerate()
            .filter(|(i, (key, _))| !entries[i + 1..].iter().any(|(other, _)| other == key))
            .map(|(_, (key, values))| (key.clone(), plain_values(values)))
            .collect()
    }

    fn parse_err(data: &[u8]) -> ExampleError {
        parse_example(data).expect_err("malformed example")
    }

    fn int64_feature(key: &str, body: &[u8]) -> Vec<u8> {
        let mut feature = Vec::new();
        len_field(&mut feature, 3, body);
        single_entry(key, &feature)
    }

    fn single_entry(key: &str, feature: &[u8]) -> Vec<u8> {
        let mut entry = Vec::new();
        len_field(&mut entry, 1, key.as_bytes());
        len_field(&mut entry, 2, feature);
        let mut features = Vec::new();
        len_field(&mut features, 1, &entry);
        let mut example = Vec::new();
        len_field(&mut example, 1, &features);
        example
    }

    const LABEL_3: &[u8] = b"\x0a\x10\x0a\x0e\x0a\x05label\x12\x05\x1a\x03\x0a\x01\x03";

    // ---- valid inputs ----

    #[test]
    fn formats_md_label_example() {
        let example = parse_example(LABEL_3).expect("valid");
        assert_eq!(example.features, vec![("label", Feature::Int64(vec![3]))]);
        assert_eq!(example.int64_list("label"), Some(&[3][..]));
        assert_eq!(int64_feature("label", b"\x0a\x01\x03"), LABEL_3);
        let entries = [("label".to_string(), Values::Int64(vec![3]))];
        assert_eq!(plain(&parse_example(&encode_example(&entries, 7)).expect("valid")), expected(&entries));
    }

    #[test]
    fn empty_record_is_an_empty_example() {
        assert_eq!(parse_example(b"").expect("valid"), Example::default());
        assert_eq!(parse_example(b"\x0a\x00").expect("valid"), Example::default());
    }

    #[test]
    fn bytes_borrow_from_the_record() {
        let mut feature = Vec::new();
        let mut list = Vec::new();
        len_field(&mut list, 1, b"\xff\xd8\xff\xe0 jpeg");
        len_field(&mut feature, 1, &list);
        let record = single_entry("image/encoded", &feature);
        let example = parse_example(&record).expect("valid");
        let image = example.bytes_list("image/encoded").expect("bytes")[0];
        assert_eq!(image, b"\xff\xd8\xff\xe0 jpeg");
        let range = record.as_ptr_range();
        assert!(range.contains(&image.as_ptr()), "a copy, not a borrow");
        assert_eq!(example.get("image/encoded").map(Feature::kind_name), Some("bytes_list"));
        assert_eq!(example.int64_list("image/encoded"), None);
        assert_eq!(example.bytes_list("missing"), None);
    }

    #[test]
    fn packed_and_unpacked_int64_are_equal() {
        let packed = int64_feature("k", b"\x0a\x03\x01\x96\x01"); // [1, 150]
        let unpacked = int64_feature("k", b"\x08\x01\x08\x96\x01");
        let chunks = int64_feature("k", b"\x0a\x01\x01\x0a\x02\x96\x01");
        let mixed = int64_feature("k", b"\x08\x01\x0a\x02\x96\x01");
        let want = Example { features: vec![("k", Feature::Int64(vec![1, 150]))] };
        for record in [packed, unpacked, chunks, mixed] {
            assert_eq!(parse_example(&record).expect("valid"), want);
        }
    }

    #[test]
    fn packed_and_unpacked_float_are_equal() {
        let (a, b) = (1.5f32.to_le_bytes(), (-0.25f32).to_le_bytes());
        let list = |body: Vec<u8>| {
            let mut feature = Vec::new();
            len_field(&mut feature, 2, &body);
            single_entry("f", &feature)
        };
        let packed = list([&[0x0a, 8][..], &a, &b].concat());
        let unpacked = list([&[0x0d][..], &a, &[0x0d], &b].concat());
        let chunks = list([&[0x0a, 4][..], &a, &[0x0a, 0], &[0x0a, 4], &b].concat());
        let want = Example { features: vec![("f", Feature::Float(vec![1.5, -0.25]))] };
        for record in [packed, unpacked, chunks] {
            assert_eq!(parse_example(&record).expect("valid"), want);
        }
    }

    #[test]
    fn negative_int64_are_ten_byte_varints() {
        let minus_one = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
        let min = b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01";
        let packed = int64_feature("k", &[&[0x0a, 20][..], minus_one, min].concat());
        let unpacked = int64_feature("k", &[&[0x08][..], minus_one, &[0x08], min].concat());
        for record in [packed, unpacked] {
            assert_eq!(parse_example(&record).expect("valid").int64_list("k"), Some(&[-1, i64::MIN][..]));
        }
    }

    #[test]
    fn unknown_fields_are_skipped_at_every_level() {
        let unknown = |field: u64| {
            let mut out = Vec::new();
            for kind in 0..4 {
                unknown_field(&mut out, field + u64::from(kind), kind);
            }
            out
        };
        // Wraps `body` as field 1 or 2 (LEN) between unknown fields numbered from `first_free`.
        let wrap = |field: u64, body: &[u8], first_free: u64| {
            let mut out = unknown(first_free);
            len_field(&mut out, field, body);
            out.extend(unknown(first_free));
            out
        };
        let list = [unknown(2), b"\x0a\x01\x03".to_vec(), unknown(2)].concat();
        let feature = wrap(3, &list, 4);
        let mut entry = unknown(3);
        len_field(&mut entry, 1, b"label");
        entry.extend(wrap(2, &feature, 3));
        let features = wrap(1, &entry, 2);
        let example = wrap(1, &features, 2);
        assert_eq!(parse_example(&example).expect("valid").features, vec![("label", Feature::Int64(vec![3]))]);
        // Known field numbers with an unexpected wire type are unknown fields too.
        let odd = [&b"\x08\x07\x0d\x00\x00\x00\x00"[..], &example[..]].concat();
        assert_eq!(parse_example(&odd).expect("valid").int64_list("label"), Some(&[3][..]));
    }

    #[test]
    fn any_field_order_within_an_entry() {
        let record = b"\x0a\x10\x0a\x0e\x12\x05\x1a\x03\x0a\x01\x03\x0a\x05label";
        assert_eq!(parse_example(record).expect("valid").int64_list("label"), Some(&[3][..]));
    }

    #[test]
    fn duplicate_keys_keep_the_last_entry_in_its_position() {
        let mut example = int64_feature("a", b"\x0a\x01\x01");
        example.extend(int64_feature("b", b"\x0a\x01\x02"));
        example.extend(int64_feature("a", b"\x0a\x01\x03"));
        let parsed = parse_example(&example).expect("valid");
        assert_eq!(parsed.features, vec![("b", Feature::Int64(vec![2])), ("a", Feature::Int64(vec![3]))]);
    }

    #[test]
    fn many_keys_take_the_sorting_path() {
        let mut example = Vec::new();
        let keys: Vec<String> = (0..40).map(|i| format!("k{}", i % 25)).collect();
        for (i, key) in keys.iter().enumerate() {
            example.extend(int64_feature(key, &[0x08, i as u8]));
        }
        let parsed = parse_example(&example).expect("valid");
        let want: Vec<(&str, Feature)> = (15..40).map(|i| (keys[i].as_str(), Feature::Int64(vec![i as i64]))).collect();
        assert_eq!(parsed.features, want);
    }

    #[test]
    fn merge_semantics() {
        // Two bytes_lists in one Feature concatenate; a later other kind replaces (oneof).
        let bytes_twice = single_entry("k", b"\x0a\x03\x0a\x01a\x0a\x03\x0a\x01b");
        assert_eq!(parse_example(&bytes_twice).expect("valid").bytes_list("k"), Some(&[&b"a"[..], b"b"][..]));
        let replaced = single_entry("k", b"\x0a\x03\x0a\x01a\x1a\x02\x08\x05\x0a\x03\x0a\x01b");
        assert_eq!(parse_example(&replaced).expect("valid").bytes_list("k"), Some(&[&b"b"[..]][..]));
        // Two value fields in one entry merge like one Feature.
        let values_twice = b"\x0a\x12\x0a\x10\x0a\x01k\x12\x04\x1a\x02\x08\x01\x12\x05\x1a\x03\x0a\x01\x02";
        assert_eq!(parse_example(values_twice).expect("valid").int64_list("k"), Some(&[1, 2][..]));
        // Two key fields: the last wins.
        let keys_twice = b"\x0a\x0e\x0a\x0c\x0a\x01x\x0a\x01k\x12\x04\x1a\x02\x08\x01";
        assert_eq!(parse_example(keys_twice).expect("valid").features, vec![("k", Feature::Int64(vec![1]))]);
        // Two Example.features fields merge into one map.
        let mut split = int64_feature("a", b"\x08\x01");
        split.extend(int64_feature("b", b"\x08\x02"));
        assert_eq!(parse_example(&split).expect("valid").features.len(), 2);
    }

    #[test]
    fn entries_without_a_kind_drop_the_key() {
        // "a" = [1], then "a" with an empty Feature, then an entry with neither key nor value.
        let mut example = int64_feature("a", b"\x08\x01");
        example.extend(single_entry("a", b""));
        example.extend(b"\x0a\x02\x0a\x00");
        example.extend(int64_feature("b", b""));
        let parsed = parse_example(&example).expect("valid");
        assert_eq!(parsed.features, vec![("b", Feature::Int64(vec![]))]);
        assert!(parsed.get("a").is_none());
        assert!(parsed.get("").is_none());
        // A missing key is the empty string.
        let no_key = b"\x0a\x06\x0a\x04\x12\x02\x1a\x00";
        assert_eq!(parse_example(no_key).expect("valid").features, vec![("", Feature::Int64(vec![]))]);
    }

    #[test]
    fn record_error_is_malformed() {
        let error: RecordError = parse_err(b"\x0a").into();
        assert_eq!(error.kind, RejectKind::Malformed);
        assert_eq!(error.reason, "tf.train.Example: byte 1: Example.features: message ends before a varint");
    }

    // ---- every error path, with its offset ----

    #[test]
    fn malformed_inputs_name_the_failing_byte() {
        let cases: Vec<(Vec<u8>, usize, &str)> = vec![
            (b"\x80".to_vec(), 0, "Example: truncated varint (1 bytes, all with the continuation bit)"),
            (
                vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                1,
                "Example: varint longer than 10 bytes",
            ),
            (b"\x0a\x05abc".to_vec(), 1, "Example.features: length 5 runs past the end of its message (3 bytes left)"),
            (
                b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01".to_vec(),
                1,
                "Example.features: length 18446744073709551615 runs past the end of its message (0 bytes left)",
            ),
            (b"\x00".to_vec(), 0, "Example: invalid tag 0x0 (field number 0 or over 29 bits)"),
            (b"\x80\x80\x80\x80\x10".to_vec(), 0, "Example: invalid tag 0x100000000 (field number 0 or over 29 bits)"),
            (b"\x0b".to_vec(), 0, "Example: field 1 uses group wire type 3, not supported"),
            (b"\x0a\x01\x0c".to_vec(), 2, "Features: field 1 uses group wire type 4, not supported"),
            (b"\x0e".to_vec(), 0, "Example: field 1 has invalid wire type 6"),
            (b"\x17".to_vec(), 0, "Example: field 2 has invalid wire type 7"),
            (b"\x09\x01\x02".to_vec(), 1, "Example: truncated fixed64 value (2 of 8 bytes left)"),
            (b"\x0d\x01".to_vec(), 1, "Example: truncated fixed32 value (1 of 4 bytes left)"),
            (
                b"\x0a\x04\x0a\x02\x0a\x05".to_vec(),
                5,
                "feature key: length 5 runs past the end of its message (0 bytes left)",
            ),
            (b"\x0a\x06\x0a\x04\x0a\x02a\xff".to_vec(), 7, "feature key: not valid UTF-8 after 1 bytes"),
            (single_entry("k", b"\x12\x03\x0a\x01\x00"), 13, "FloatList.value: packed length 1 is not a multiple of 4"),
            (
                single_entry("k", b"\x12\x02\x0d\x00"),
                12,
                "FloatList.value: truncated fixed32 value (1 of 4 bytes left)",
            ),
            (
                int64_feature("k", b"\x0a\x02\x01\x80"),
                14,
                "Int64List.value: truncated varint (1 bytes, all with the continuation bit)",
            ),
            (int64_feature("k", b"\x08"), 12, "Int64List.value: message ends before a varint"),
            (
                single_entry("k", b"\x0a\x02\x0a\x05"),
                12,
                "BytesList.value: length 5 runs past the end of its message (0 bytes left)",
            ),
            (single_entry("k", b"\x1a\x01\x0b"), 11, "Int64List: field 1 uses group wire type 3, not supported"),
        ];
        for (record, offset, reason) in cases {
            let error = parse_err(&record);
            assert_eq!((error.offset, error.reason.as_str()), (offset, reason), "record {record:02x?}");
            assert!(error.offset <= record.len());
        }
    }

    #[test]
    fn example_truncated_at_every_offset_is_an_error() {
        let entries = [
            ("image/encoded".to_string(), Values::Bytes(vec![b"\xff\xd8 not really a jpeg".to_vec()])),
            ("image/class/label".to_string(), Values::Int64(vec![-7, 1 << 40])),
            ("weights".to_string(), Values::Float(vec![0.5, 2.0])),
        ];
        for seed in 0..20 {
            let record = encode_example(&entries, seed);
            parse_example(&record).expect("the whole record is valid");
            for cut in 0..record.len() {
                match parse_example(&record[..cut]) {
                    // Cutting between top-level fields leaves a valid, shorter Example.
                    Ok(example) => assert!(example.features.len() <= entries.len()),
                    Err(error) => assert!(error.offset <= cut, "seed {seed} cut {cut}: {error}"),
                }
            }
        }
        // One top-level field: every proper prefix but the empty one is an error.
        for cut in 1..LABEL_3.len() {
            let error = parse_err(&LABEL_3[..cut]);
            assert!(error.offset <= cut, "cut {cut}: {error}");
        }
    }

    fn values_strategy() -> impl Strategy<Value = Values> {
        prop_oneof![
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..4).prop_map(Values::Bytes),
            prop::collection::vec(any::<f32>(), 0..6).prop_map(Values::Float),
            prop::collection::vec(any::<i64>(), 0..6).prop_map(Values::Int64),
        ]
    }

    fn entries_strategy() -> impl Strategy<Value = Vec<(String, Values)>> {
        // Few distinct keys, so duplicates (last-wins) are common; some non-ASCII ones.
        let key = prop_oneof!["[ab]{0,2}", "\\PC{0,6}", Just("image/encoded".to_string())];
        prop::collection::vec((key, values_strategy()), 0..24)
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(entries in entries_strategy(), seed in any::<u64>()) {
            let record = encode_example(&entries, seed);
            let example = parse_example(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(plain(&example), expected(&entries));
        }

        #[test]
        fn mutated_examples_never_panic(
            entries in entries_strategy(),
            seed in any::<u64>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut record = encode_example(&entries, seed);
            if !record.is_empty() {
                for (position, mask) in &flips {
                    let i = position.index(record.len());
                    record[i] ^= mask;
                }
            }
            record.truncate(cut.index(record.len() + 1));
            if let Err(error) = parse_example(&record) {
                prop_assert!(error.offset <= record.len());
            }
        }

        #[test]
        fn random_bytes_never_panic(record in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Err(error) = parse_example(&record) {
                prop_assert!(error.offset <= record.len());
            }
        }
    }
}
