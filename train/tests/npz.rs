//! `.npy` / `.npz` reading and writing through the public API: round trips, NumPy's exact bytes,
//! every supported header form and dtype, and hostile files (truncated, flipped, lying about their
//! size) that must give a typed error, never a panic or a huge allocation.

use std::io::Write;
use std::path::Path;

use bitkit_train::npz::{encode_npy, parse_npy, read_npy, read_npz, write_npy, write_npz, Array, NpzError};
use proptest::prelude::*;

/// An `.npy` with `dict` as its header text, padded with spaces and '\n' to 64 bytes like NumPy.
fn npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let length_bytes = if version == 1 { 2 } else { 4 };
    let mut header = dict.as_bytes().to_vec();
    while !(8 + length_bytes + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&u16::try_from(header.len()).expect("header length fits").to_le_bytes());
    } else {
        out.extend_from_slice(&u32::try_from(header.len()).expect("header length fits").to_le_bytes());
    }
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn parse(bytes: &[u8]) -> Result<Array, NpzError> {
    parse_npy(bytes, Path::new("x.npz"), "a.npy")
}

fn parse_err(bytes: &[u8]) -> String {
    parse(bytes).expect_err("hostile bytes must not parse").to_string()
}

fn array(shape: &[usize], data: &[f32]) -> Array {
    Array::new(shape.to_vec(), data.to_vec()).expect("shape matches data")
}

/// `np.arange(6, dtype='<f4').reshape(2, 3)` as `np.save` (NumPy 2.4) writes it.
const NUMPY_ARANGE_2X3: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }                                                          \n\x00\x00\x00\x00\x00\x00\x80?\x00\x00\x00@\x00\x00@@\x00\x00\x80@\x00\x00\xa0@";

#[test]
fn encode_npy_matches_numpy_bytes() {
    let arange = array(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(encode_npy(&arange), NUMPY_ARANGE_2X3);
    assert_eq!(parse(NUMPY_ARANGE_2X3).expect("valid .npy"), arange);
    // np.save(np.float32(2.5)) and np.save(np.zeros(5, np.float32)): 118-byte headers, '\n' last.
    let numpy_header = |dict: &str| {
        let mut header = b"\x93NUMPY\x01\x00v\x00".to_vec();
        header.extend_from_slice(dict.as_bytes());
        header.resize(127, b' ');
        header.push(b'\n');
        header
    };
    let scalar = encode_npy(&array(&[], &[2.5]));
    assert_eq!(scalar[..128], numpy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }"));
    assert_eq!(scalar[128..], 2.5f32.to_le_bytes());
    let vector = encode_npy(&array(&[5], &[0.0; 5]));
    assert_eq!(vector[..128], numpy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"));
    assert_eq!(vector.len(), 128 + 20);
}

#[test]
fn encode_npy_aligns_data_to_64_bytes() {
    for shape in [vec![], vec![0], vec![3], vec![1; 7], vec![123_456_789, 0], vec![1; 64]] {
        let len = shape.iter().product();
        let bytes = encode_npy(&array(&shape, &vec![1.0; len]));
        assert_eq!((bytes.len() - len * 4) % 64, 0, "shape {shape:?}");
        assert_eq!(bytes[bytes.len() - len * 4 - 1], b'\n');
        assert_eq!(parse(&bytes).expect("valid .npy").shape, shape);
    }
}

#[test]
fn npz_round_trip_keeps_names_order_and_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weights.npz");
    let gamma = array(&[4], &[1.0, -2.5, f32::MAX, f32::MIN_POSITIVE]);
    let kernel = array(&[1, 2, 3, 2], &(0..12).map(|i| i as f32 * 0.5).collect::<Vec<_>>());
    let scalar = array(&[], &[7.0]);
    let empty = array(&[0, 3], &[]);
    let arrays = [
        ("resnet/block1/unit01/a/group_norm/gamma", &gamma),
        ("resnet/block1/unit01/a/standardized_conv2d/kernel", &kernel),
        ("step", &scalar),
        ("empty", &empty),
    ];
    write_npz(&path, &arrays).expect("write_npz");
    let read = read_npz(&path).expect("read_npz");
    let expected: Vec<(String, Array)> = arrays.iter().map(|(n, a)| (n.to_string(), (*a).clone())).collect();
    assert_eq!(read, expected);
    // Stored members: each member's bytes are exactly encode_npy's.
    let bytes = std::fs::read(&path).expect("reading a test file");
    let member = encode_npy(&kernel);
    assert!(bytes.windows(member.len()).any(|w| w == member));
}

#[test]
fn npy_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("logits.npy");
    let logits = array(&[2, 5], &[0.1, 0.2, 0.3, 0.4, 0.5, -1.0, f32::INFINITY, 0.0, -0.0, 1e-30]);
    write_npy(&path, &logits).expect("write_npy");
    assert_eq!(std::fs::read(&path).expect("reading a test file"), encode_npy(&logits));
    assert_eq!(read_npy(&path).expect("read_npy"), logits);
}

#[test]
fn writing_an_inconsistent_array_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = Array { shape: vec![2, 2], data: vec![1.0; 3] };
    let err = write_npz(&dir.path().join("x.npz"), &[("w", &bad)]).expect_err("must be an error");
    assert!(matches!(err, NpzError::InvalidArray { ref member, len: 3, .. } if member == "w.npy"), "{err}");
    assert!(write_npy(&dir.path().join("x.npy"), &bad).is_err());
    assert!(matches!(Array::new(vec![2, 2], vec![0.0; 3]), Err(NpzError::ArrayShape { len: 3, .. })));
    assert!(Array::new(vec![usize::MAX, 2], vec![]).is_err());
    assert_eq!(Array::new(vec![], vec![1.0]).expect("shape matches data").len(), 1);
    assert!(Array::new(vec![0], vec![]).expect("shape matches data").is_empty());
}

#[test]
fn fortran_order_is_converted_to_c_order() {
    // np.arange(6).reshape(2, 3) is [[0, 1, 2], [3, 4, 5]]; Fortran order stores its columns.
    let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
    let read = parse(&npy(1, dict, &f32_le(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]))).expect("valid .npy");
    assert_eq!(read, array(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    // 3-D: element [i][j][k] = 100i + 10j + k, stored with i fastest.
    let (a, b, c) = (2, 3, 4);
    let fortran: Vec<f32> =
        (0..c).flat_map(|k| (0..b).flat_map(move |j| (0..a).map(move |i| (100 * i + 10 * j + k) as f32))).collect();
    let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }";
    let read = parse(&npy(1, dict, &f32_le(&fortran))).expect("valid .npy");
    let c_order: Vec<f32> =
        (0..a).flat_map(|i| (0..b).flat_map(move |j| (0..c).map(move |k| (100 * i + 10 * j + k) as f32))).collect();
    assert_eq!(read.data, c_order);
}

#[test]
fn f8_f2_and_big_endian_are_converted_to_f32() {
    // np.save of np.array([[1, 2, 3], [4, 5, 6]], dtype='>f8').
    let data: Vec<u8> = (1..=6).flat_map(|v| f64::from(v).to_be_bytes()).collect();
    let read =
        parse(&npy(1, "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 3), }", &data)).expect("valid .npy");
    assert_eq!(read, array(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    let data: Vec<u8> = [0.1f64, -3e40].iter().flat_map(|v| v.to_le_bytes()).collect();
    let read = parse(&npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", &data)).expect("valid .npy");
    assert_eq!(read.data, [0.1f32, f32::NEG_INFINITY]);
    let data: Vec<u8> = [1.0f32, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
    let read = parse(&npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", &data)).expect("valid .npy");
    assert_eq!(read.data, [1.0, -2.0]);
    // np.save of np.array([1.5, -2], dtype='<f2') has data 00 3e 00 c0.
    let read = parse(&npy(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", b"\x00\x3e\x00\xc0"))
        .expect("valid .npy");
    assert_eq!(read.data, [1.5, -2.0]);
    let read = parse(&npy(1, "{'descr': '>f2', 'fortran_order': False, 'shape': (2,), }", b"\x3e\x00\xc0\x00"))
        .expect("valid .npy");
    assert_eq!(read.data, [1.5, -2.0]);
}

#[test]
fn version_2_and_3_headers_parse() {
    let arange = array(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    for version in [2, 3] {
        // NumPy's write_array(version=(2, 0)): a u32 length, the same 64-byte alignment.
        let bytes = npy(version, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &f32_le(&arange.data));
        assert_eq!(&bytes[6..12], &[version, 0, 0x74, 0, 0, 0]);
        assert_eq!(parse(&bytes).expect("valid .npy"), arange);
    }
}

#[test]
fn header_forms_numpy_accepts_parse() {
    let data = f32_le(&[1.0, 2.0]);
    for dict in [
        "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}",
        "{ \"descr\" : \"<f4\" ,'fortran_order':False,'shape':( 2 , ) , }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }",
        "{'descr': '<f4',\n 'fortran_order': False,\n 'shape': (1, 2)}",
    ] {
        assert_eq!(parse(&npy(1, dict, &data)).expect("valid .npy").data, [1.0, 2.0], "{dict}");
    }
    let scalar =
        parse(&npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", &f32_le(&[3.0]))).expect("valid .npy");
    assert_eq!(scalar, array(&[], &[3.0]));
}

#[test]
fn malformed_headers_name_the_reason_and_offset() {
    let four = f32_le(&[0.0; 4]);
    for (dict, reason) in [
        ("{'descr': '<f4', 'fortran_order': False}", "at byte 50: header has no \"shape\" key"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", "at byte 66: unexpected key \"x\""),
        ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", "key \"descr\" appears twice"),
        ("{'descr': '<f4', 'fortran_order': 0, 'shape': (4,)}", "at byte 44: fortran_order must be True or False"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (4)}", "a 1-D shape is written (n,)"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-4,)}", "expected a non-negative integer"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': [4]}", "expected '(', found '['"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", "dimension overflows"),
        (
            "{'descr': '<f4' 'fortran_order': False, 'shape': (4,)}",
            "expected ',' or '}' after the \"descr\" value, found '\\''",
        ),
        ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,)}", "structured dtypes are not supported"),
        (
            "{'descr': '<f4, 'fortran_order': False, 'shape': (4,)}",
            "at byte 27: expected ',' or '}' after the \"descr\" value, found 'f'",
        ),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} x", "unexpected bytes after the header dict"),
        ("['descr', '<f4']", "at byte 10: expected '{', found '['"),
        ("{'descr': 'a\\'b', 'fortran_order': False, 'shape': (4,)}", "escapes in strings are not supported"),
    ] {
        let message = parse_err(&npy(1, dict, &four));
        assert!(message.starts_with("x.npz: member a.npy: bad .npy header"), "{message}");
        assert!(message.contains(reason), "{dict}: {message}");
    }
    let many_dims = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", "1, ".repeat(65));
    assert!(parse_err(&npy(1, &many_dims, &f32_le(&[0.0]))).contains("more than 64 dimensions"));
}

#[test]
fn bad_magic_version_and_header_length_are_errors() {
    let good = NUMPY_ARANGE_2X3;
    let mut bad_magic = good.to_vec();
    bad_magic[1] = b'M';
    assert!(parse_err(&bad_magic).contains("at byte 0: not a .npy file (magic [93, 4d, 55, 4d, 50, 59])"));
    let mut bad_version = good.to_vec();
    bad_version[6] = 4;
    assert!(parse_err(&bad_version).contains("at byte 6: unsupported format version 4.0"));
    let mut long_header = good.to_vec();
    long_header[8..10].copy_from_slice(&200u16.to_le_bytes());
    assert!(parse_err(&long_header).contains("at byte 8: header length 200 runs past the end (152 bytes)"));
    let v2 = npy(2, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", &f32_le(&[1.0]));
    let mut huge_header = v2.clone();
    huge_header[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(parse_err(&huge_header).contains("header length 4294967295 exceeds 1048576"));
    assert!(parse_err(b"").contains("at byte 0: file ends after 0 bytes"));
    assert!(parse_err(b"\x93NUM").contains("at byte 4: file ends after 4 bytes, inside the magic"));
}

#[test]
fn unsupported_dtypes_are_named() {
    for descr in ["<i4", "|u1", "|O", "<U10", "=f4", "|f4", "<c8", "f4", "<f16"] {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
        let err = parse(&npy(1, &dict, &[0; 4])).expect_err("must be an error");
        assert!(matches!(&err, NpzError::Dtype { descr: d, .. } if d == descr), "{err}");
        assert!(err.to_string().starts_with(&format!("x.npz: member a.npy: unsupported dtype \"{descr}\"")));
    }
}

#[test]
fn data_length_mismatch_names_file_member_and_shape() {
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (7, 7, 3, 64), }";
    let bytes = npy(1, dict, &[0; 1000]);
    let err = parse_npy(&bytes, Path::new("BiT-M-R50x1.npz"), "resnet/root_block/standardized_conv2d/kernel.npy")
        .expect_err("must be an error");
    assert_eq!(
        err.to_string(),
        "BiT-M-R50x1.npz: member resnet/root_block/standardized_conv2d/kernel.npy: \
         data is 1000 bytes, header declares 37632 (shape [7, 7, 3, 64], <f4)"
    );
    let mut trailing = NUMPY_ARANGE_2X3.to_vec();
    trailing.push(0);
    assert!(parse_err(&trailing).contains("data is 25 bytes, header declares 24 (shape [2, 3], <f4)"));
}

#[test]
fn truncation_at_every_offset_is_an_error_at_that_offset() {
    let data_offset = 128;
    for len in 0..NUMPY_ARANGE_2X3.len() {
        let err = parse(&NUMPY_ARANGE_2X3[..len]).expect_err("must be an error");
        match err {
            NpzError::DataLength { actual, expected: 24, .. } => assert_eq!(actual as usize, len - data_offset),
            NpzError::Header { offset, .. } => assert!(len < data_offset && offset as usize <= len.max(8), "{len}"),
            other => panic!("truncated to {len}: {other}"),
        }
    }
}

#[test]
fn huge_declared_shapes_fail_before_allocating() {
    let overflow = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }";
    assert!(parse_err(&npy(1, overflow, &[0; 16])).contains("shape [1099511627776, 1099511627776] of <f4 overflows"));
    // 4 TiB declared, 16 bytes present: refused by comparing with the bytes available.
    let terabytes = "{'descr': '<f8', 'fortran_order': True, 'shape': (1073741824, 512), }";
    assert!(parse_err(&npy(1, terabytes, &[0; 16])).contains("data is 16 bytes, header declares 4398046511104"));
}

/// A zip with the given members, each stored or deflated, duplicates allowed.
fn zip_bytes(members: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, deflate) in members {
        let method = if *deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        zip.start_file(*name, zip::write::FileOptions::default().compression_method(method)).expect("zip writer");
        zip.write_all(bytes).expect("zip writer");
    }
    zip.finish().expect("zip writer").into_inner()
}

fn read_npz_bytes(bytes: &[u8]) -> Result<Vec<(String, Array)>, NpzError> {
    let mut file = tempfile::NamedTempFile::new().expect("temp dir");
    file.write_all(bytes).expect("writing a test file");
    read_npz(file.path())
}

#[test]
fn deflated_npz_is_read() {
    // The layout of np.savez_compressed: deflated "<name>.npy" members.
    let kernel = array(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let bytes = zip_bytes(&[("a/kernel.npy", &encode_npy(&kernel), true), ("b.npy", NUMPY_ARANGE_2X3, true)]);
    let read = read_npz_bytes(&bytes).expect("read_npz");
    assert_eq!(read[0], ("a/kernel".to_owned(), kernel));
    assert_eq!(read[1].1.data, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn duplicate_member_names_are_an_error() {
    let bytes = zip_bytes(&[("w.npy", NUMPY_ARANGE_2X3, false), ("w.npy", NUMPY_ARANGE_2X3, true)]);
    let err = read_npz_bytes(&bytes).expect_err("must be an error");
    assert!(matches!(&err, NpzError::DuplicateMember { member, .. } if member == "w.npy"), "{err}");
    let dir = tempfile::tempdir().expect("temp dir");
    let one = array(&[1], &[1.0]);
    let err = write_npz(&dir.path().join("x.npz"), &[("w", &one), ("w", &one)]).expect_err("must be an error");
    assert!(err.to_string().ends_with("x.npz: member w.npy appears twice"), "{err}");
}

#[test]
fn non_npy_members_and_bad_archives_are_errors() {
    let err = read_npz_bytes(&zip_bytes(&[("notes.txt", b"hi", false)])).expect_err("must be an error");
    assert!(err.to_string().ends_with("member notes.txt: not a .npy member"), "{err}");
    let err = read_npz_bytes(NUMPY_ARANGE_2X3).expect_err("must be an error");
    assert!(matches!(err, NpzError::Zip { .. }), "{err}");
    let err = read_npz(Path::new("/nonexistent/x.npz")).expect_err("must be an error");
    assert!(matches!(err, NpzError::Io { op: "opening", .. }), "{err}");
}

#[test]
fn corrupt_member_data_fails_its_crc() {
    let mut bytes = zip_bytes(&[("w.npy", NUMPY_ARANGE_2X3, false)]);
    let at = bytes.windows(4).position(|w| w == b"\x00\x00\xa0@").expect("pattern present");
    bytes[at] ^= 1;
    let err = read_npz_bytes(&bytes).expect_err("must be an error");
    assert!(matches!(err, NpzError::Read { ref member, offset: 152, .. } if member == "w.npy"), "{err}");
}

/// Sets the uncompressed size in the central directory entry of a one-member zip (the last
/// `PK\x01\x02`, since the compressed data before it may contain the signature), as a zip bomb would.
fn patch_declared_size(zip: &mut [u8], size: u32) {
    let at = zip.windows(4).rposition(|w| w == b"PK\x01\x02").expect("a central directory entry");
    zip[at + 24..at + 28].copy_from_slice(&size.to_le_bytes());
}

#[test]
fn zip_bomb_member_fails_without_allocating_its_declared_size() {
    // A header declaring 2^28 floats (1 GiB), then 1 MiB of incompressible data: the deflated
    // size makes the declared 1 GiB plausible, the data runs out after 1 MiB.
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let member = npy(1, dict, &noise);
    let mut bytes = zip_bytes(&[("bomb.npy", &member, true)]);
    patch_declared_size(&mut bytes, 128 + (1 << 30));
    let err = read_npz_bytes(&bytes).expect_err("must be an error");
    let message = err.to_string();
    assert!(
        message
            .ends_with("member bomb.npy: data is 1048576 bytes, header declares 1073741824 (shape [268435456], <f4)"),
        "{message}"
    );
    // Declared far beyond what deflate can produce from the compressed bytes: refused up front.
    let mut bytes = zip_bytes(&[("bomb.npy", &npy(1, dict, &[0; 1024]), true)]);
    patch_declared_size(&mut bytes, 128 + (1 << 30));
    let err = read_npz_bytes(&bytes).expect_err("must be an error");
    assert!(err.to_string().contains("deflated bytes cannot expand to the declared 1073741952"), "{err}");
    // A stored member whose declared size disagrees with its stored size.
    let mut bytes = zip_bytes(&[("w.npy", NUMPY_ARANGE_2X3, false)]);
    patch_declared_size(&mut bytes, 1 << 30);
    let err = read_npz_bytes(&bytes).expect_err("must be an error");
    assert!(err.to_string().contains("stored member is 152 bytes in the archive but declares 1073741824"));
}

fn valid_npy() -> Vec<u8> {
    encode_npy(&array(&[2, 3, 4], &(0..24).map(|i| i as f32).collect::<Vec<_>>()))
}

fn valid_npz() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.npz");
    let (a, b) = (array(&[3, 2], &[1.0; 6]), array(&[], &[2.0]));
    write_npz(&path, &[("resnet/block1/unit01/a/group_norm/gamma", &a), ("b", &b)]).expect("write_npz");
    std::fs::read(path).expect("reading a test file")
}

/// Applies `flips` (position, xor mask) to `bytes`, positions taken modulo the length.
fn flip(mut bytes: Vec<u8>, flips: &[(usize, u8)]) -> Vec<u8> {
    let len = bytes.len();
    for &(at, mask) in flips {
        bytes[at % len] ^= mask.max(1);
    }
    bytes
}

proptest! {
    #[test]
    fn truncated_npy_is_an_error(len in 0usize..224) {
        let bytes = valid_npy();
        prop_assume!(len < bytes.len());
        prop_assert!(parse(&bytes[..len]).is_err());
    }

    #[test]
    fn flipped_npy_never_panics(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let bytes = flip(valid_npy(), &flips);
        if let Ok(read) = parse(&bytes) {
            prop_assert_eq!(Some(read.len()), read.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)));
        }
    }

    #[test]
    fn corrupt_header_length_never_panics(length in any::<u32>(), version in 1u8..=3) {
        let mut bytes = valid_npy();
        bytes[6] = version;
        if version == 1 {
            bytes[8..10].copy_from_slice(&(length as u16).to_le_bytes());
        } else {
            bytes[8..12].copy_from_slice(&length.to_le_bytes());
        }
        let _ = parse(&bytes);
    }

    #[test]
    fn huge_or_odd_shapes_are_errors(dims in prop::collection::vec(prop_oneof![1u64..5, any::<u64>()], 0..5)) {
        let text: String = dims.iter().map(|d| format!("{d}, ")).collect();
        let dict = format!("{{'descr': '<f4', 'fortran_order': True, 'shape': ({text}), }}");
        let result = parse(&npy(1, &dict, &[0; 96]));
        let count = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        prop_assert_eq!(result.is_ok(), count == Some(24));
    }

    #[test]
    fn truncated_npz_is_an_error(len in 0usize..1024) {
        let bytes = valid_npz();
        prop_assume!(len < bytes.len());
        prop_assert!(read_npz_bytes(&bytes[..len]).is_err());
    }

    #[test]
    fn flipped_npz_never_panics(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let bytes = flip(valid_npz(), &flips);
        for (_, read) in read_npz_bytes(&bytes).unwrap_or_default() {
            prop_assert_eq!(Some(read.len()), read.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)));
        }
    }
}

/// zip 0.6's `by_index` panics (unwraps an "invalid password") on an unencrypted entry carrying
/// WinZip's AES extra field; `read_npz` must return an error instead.
#[test]
fn aes_extra_field_on_an_unencrypted_member_is_an_error_not_a_panic() {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file_with_extra_data("w.npy", options).expect("zip writer");
    // The writer refuses tag 0x9901, so write a private tag 0x9999 and patch it: 7 bytes of
    // vendor version 2, vendor "AE", AES-256, inner method stored.
    let field = [0x99, 0x99, 7, 0, 2, 0, b'A', b'E', 3, 0, 0];
    zip.write_all(&field).expect("zip writer");
    zip.end_extra_data().expect("zip writer");
    zip.write_all(NUMPY_ARANGE_2X3).expect("zip writer");
    let mut bytes = zip.finish().expect("zip writer").into_inner();
    for _ in 0..2 {
        let at = bytes.windows(field.len()).position(|w| w == field).expect("pattern present");
        bytes[at] = 0x01;
    }
    let err = read_npz_bytes(&bytes).expect_err("must be an error");
    assert!(err.to_string().ends_with("member w.npy: encrypted members are not supported"), "{err}");
}
