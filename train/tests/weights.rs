//! BiT .npz files in the official key layout (BIT_SPEC §4.2), written here by hand from the
//! spec: loaded into the model with the right transposes, exported back byte-equal, heads
//! replaced when the class count differs, and damaged files refused by name.

use bitkit_train::npz::{read_npz, write_npz, Array};
use bitkit_train::tch::{Device, Kind, Tensor};
use bitkit_train::weights::{export_bit_npz, model_from_file, HeadLoad};
use std::path::Path;

/// A deterministic pseudo-random array (no libtorch involved).
fn array(shape: &[usize], seed: u64) -> Array {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    Array::new(shape.to_vec(), data).expect("array")
}

/// The official keys and HWIO shapes of a BiT model with `units` per block and root width
/// `root` (BIT_SPEC §3.5, §4.2), written out from the spec's table.
fn official_layout(units: [usize; 4], root: usize, classes: usize) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![("resnet/root_block/standardized_conv2d/kernel".to_owned(), vec![7, 7, 3, root])];
    let mut cin = root;
    for (b, &count) in units.iter().enumerate() {
        let cmid = root << b;
        let cout = 4 * cmid;
        for u in 1..=count {
            let p = format!("resnet/block{}/unit{u:02}", b + 1);
            let unit_cin = if u == 1 { cin } else { cout };
            v.push((format!("{p}/a/group_norm/gamma"), vec![unit_cin]));
            v.push((format!("{p}/a/group_norm/beta"), vec![unit_cin]));
            v.push((format!("{p}/a/standardized_conv2d/kernel"), vec![1, 1, unit_cin, cmid]));
            if u == 1 {
                v.push((format!("{p}/a/proj/standardized_conv2d/kernel"), vec![1, 1, unit_cin, cout]));
            }
            v.push((format!("{p}/b/group_norm/gamma"), vec![cmid]));
            v.push((format!("{p}/b/group_norm/beta"), vec![cmid]));
            v.push((format!("{p}/b/standardized_conv2d/kernel"), vec![3, 3, cmid, cmid]));
            v.push((format!("{p}/c/group_norm/gamma"), vec![cmid]));
            v.push((format!("{p}/c/group_norm/beta"), vec![cmid]));
            v.push((format!("{p}/c/standardized_conv2d/kernel"), vec![1, 1, cmid, cout]));
        }
        cin = cout;
    }
    v.push(("resnet/group_norm/gamma".into(), vec![cin]));
    v.push(("resnet/group_norm/beta".into(), vec![cin]));
    v.push(("resnet/head/conv2d/kernel".into(), vec![1, 1, cin, classes]));
    v.push(("resnet/head/conv2d/bias".into(), vec![classes]));
    v
}

fn write_official(path: &Path, classes: usize) -> Vec<(String, Array)> {
    let arrays: Vec<(String, Array)> = official_layout([1, 1, 1, 1], 32, classes)
        .into_iter()
        .enumerate()
        .map(|(i, (k, s))| (k, array(&s, i as u64)))
        .collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(k, a)| (k.as_str(), a)).collect();
    write_npz(path, &refs).expect("write npz");
    arrays
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().flatten(0, -1)).expect("vec")
}

#[test]
fn official_layout_loads_with_transposes_and_exports_back_identically() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("BiT-M-tiny.npz");
    let arrays = write_official(&src, 21);
    let (model, head) = model_from_file(&src, None, false, Device::Cpu).expect("load");
    assert_eq!(model.net.variant.name, "tiny");
    assert_eq!(model.net.classes, 21);
    assert_eq!(head, HeadLoad::Loaded);

    let vars = model.vs.variables();
    // HWIO [7,7,3,32] → OIHW [32,3,7,7]: element (o,i,h,w) = npz (h,w,i,o).
    let root = &vars["root_block.standardized_conv2d.kernel"];
    assert_eq!(root.size(), vec![32, 3, 7, 7]);
    let npz_root = &arrays[0].1;
    let got = values(root);
    for &(o, i, h, w) in &[(0, 0, 0, 0), (31, 2, 6, 6), (5, 1, 3, 2), (17, 0, 6, 1)] {
        assert_eq!(got[((o * 3 + i) * 7 + h) * 7 + w], npz_root.data[((h * 7 + w) * 3 + i) * 32 + o]);
    }
    // a/group_norm normalises the unit input: cin channels (block2's input is 128 wide).
    assert_eq!(vars["block2.unit01.a.group_norm.gamma"].size(), vec![128]);
    assert_eq!(vars["block2.unit01.b.group_norm.gamma"].size(), vec![64]);
    // Head: [1,1,C,K] → [K,C,1,1].
    assert_eq!(vars["head.conv2d.kernel"].size(), vec![21, 1024, 1, 1]);

    let out = dir.path().join("exported.npz");
    export_bit_npz(&model, &out).expect("export");
    let mut back = read_npz(&out).expect("read back");
    let mut original = arrays.clone();
    back.sort_by(|a, b| a.0.cmp(&b.0));
    original.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(back.len(), original.len());
    for ((ka, a), (kb, b)) in back.iter().zip(&original) {
        assert_eq!(ka, kb);
        assert_eq!(a, b, "{ka} differs after the round trip");
    }
}

#[test]
fn a_different_class_count_replaces_the_head_with_zeros() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("BiT-S-tiny.npz");
    write_official(&src, 1000);
    let (model, head) = model_from_file(&src, Some(10), false, Device::Cpu).expect("load");
    assert_eq!(head, HeadLoad::Replaced { file_classes: 1000 });
    let vars = model.vs.variables();
    assert_eq!(vars["head.conv2d.kernel"].size(), vec![10, 1024, 1, 1]);
    assert_eq!(vars["head.conv2d.kernel"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert_eq!(vars["head.conv2d.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    // Same count, transfer: BiT still starts from a zero head.
    let (model, head) = model_from_file(&src, Some(1000), true, Device::Cpu).expect("load");
    assert_eq!(head, HeadLoad::Zeroed);
    assert_eq!(model.vs.variables()["head.conv2d.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
}

#[test]
fn damaged_weight_files_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    // A missing parameter.
    let layout = official_layout([1, 1, 1, 1], 32, 5);
    let arrays: Vec<(String, Array)> = layout
        .iter()
        .filter(|(k, _)| !k.ends_with("block3/unit01/b/standardized_conv2d/kernel"))
        .map(|(k, s)| (k.clone(), array(s, 1)))
        .collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let path = dir.path().join("missing.npz");
    write_npz(&path, &refs).expect("write");
    let err = model_from_file(&path, None, false, Device::Cpu).expect_err("missing key").to_string();
    assert!(err.contains("missing.npz") && err.contains("block3/unit01/b/standardized_conv2d/kernel"), "{err}");

    // A wrongly shaped parameter.
    let arrays: Vec<(String, Array)> = layout
        .iter()
        .map(|(k, s)| {
            let s = if k.ends_with("block1/unit01/c/group_norm/gamma") { vec![s[0] + 1] } else { s.clone() };
            (k.clone(), array(&s, 1))
        })
        .collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let path = dir.path().join("shape.npz");
    write_npz(&path, &refs).expect("write");
    let err = model_from_file(&path, None, false, Device::Cpu).expect_err("bad shape").to_string();
    assert!(err.contains("block1/unit01/c/group_norm/gamma"), "{err}");

    // Not an npz at all, and a truncated one.
    let path = dir.path().join("junk.npz");
    std::fs::write(&path, b"PK\x03\x04 definitely not a zip").expect("write");
    let err = model_from_file(&path, None, false, Device::Cpu).expect_err("junk").to_string();
    assert!(err.contains("junk.npz"), "{err}");
    let good = dir.path().join("good.npz");
    write_official(&good, 3);
    let bytes = std::fs::read(&good).expect("read");
    let cut = dir.path().join("cut.npz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let err = model_from_file(&cut, None, false, Device::Cpu).expect_err("truncated").to_string();
    assert!(err.contains("cut.npz"), "{err}");
}
