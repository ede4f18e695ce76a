//! Weights in and out: the official BiT `.npz` files (BIT_SPEC §4.2), our safetensors
//! checkpoints, and the inference of the variant from a weight file.
//!
//! BiT keys are `resnet/<name with / separators>`, kernels HWIO; ours are the var-store names
//! of [`Variant::parameters`] (`.` separators), kernels OIHW. Every 4-D array is transposed
//! with axes (3, 2, 0, 1) on the way in and (2, 3, 1, 0) on the way out; 1-D arrays are
//! copied. `a/group_norm` is the norm of the unit *input* (cin channels).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;
use crate::model::ResNetV2;
use crate::npz::{self, Array};
use crate::variant::{Variant, VARIANTS};

/// The prefix of every key in the official files.
pub const NPZ_PREFIX: &str = "resnet/";

/// A network with its parameters.
#[derive(Debug)]
pub struct Model {
    pub vs: VarStore,
    pub net: ResNetV2,
}

impl Model {
    /// Fresh parameters (He-normal convs, GN γ=1 β=0, zero head), seeded.
    pub fn new(variant: Variant, classes: i64, device: Device, seed: u64) -> Model {
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let net = ResNetV2::new(&vs.root(), variant, classes);
        Model { vs, net }
    }

    /// Parameters by name, sorted (the optimizer's and checkpoints' stable order).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// blake3 over every parameter (name, shape, little-endian f32 bytes) in name order: the
    /// weight hash of metrics, checkpoints and `bitkit audit diff`.
    pub fn weight_hash(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        for (name, t) in self.named_parameters() {
            h.update(name.as_bytes());
            for d in t.size() {
                h.update(&d.to_le_bytes());
            }
            h.update(&tensor_f32_bytes(&t));
        }
        h.finalize()
    }
}

fn tensor_f32_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let v: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap_or_default();
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Named shapes of a weight file, in var-store naming, for [`infer_variant`].
pub type Shapes = BTreeMap<String, Vec<i64>>;

/// Which variant and head size a set of parameters belongs to: block units from the highest
/// `unitNN` per block, width from the root kernel, classes from the head (DESIGN §3).
pub fn infer_variant(shapes: &Shapes, path: &Path) -> Result<(Variant, i64), TrainError> {
    let bad = |reason: String| TrainError::Weights { path: path.to_owned(), reason };
    let root = shapes
        .get("root_block.standardized_conv2d.kernel")
        .ok_or_else(|| bad("no root_block/standardized_conv2d/kernel: not a BiT ResNet-v2".into()))?;
    let root_width = *root.first().ok_or_else(|| bad("empty root kernel shape".into()))?;
    let mut units = [0usize; 4];
    for name in shapes.keys() {
        let mut parts = name.split('.');
        let (Some(block), Some(unit)) = (parts.next(), parts.next()) else { continue };
        let (Some(b), Some(u)) = (block.strip_prefix("block"), unit.strip_prefix("unit")) else {
            continue;
        };
        if let (Ok(b @ 1..=4), Ok(u)) = (b.parse::<usize>(), u.parse::<usize>()) {
            units[b - 1] = units[b - 1].max(u);
        }
    }
    let head = shapes.get("head.conv2d.kernel").ok_or_else(|| bad("no head/conv2d/kernel".into()))?;
    let classes = *head.first().ok_or_else(|| bad("empty head kernel shape".into()))?;
    let variant = VARIANTS
        .iter()
        .copied()
        .find(|v| v.units == units && v.root_width == root_width)
        .ok_or_else(|| bad(format!("no known variant has block units {units:?} and root width {root_width}")))?;
    Ok((variant, classes))
}

/// The official layout read into var-store naming and PyTorch layout.
#[derive(Debug)]
pub struct LoadedWeights {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, Tensor>,
}

impl LoadedWeights {
    pub fn shapes(&self) -> Shapes {
        self.tensors.iter().map(|(k, t)| (k.clone(), t.size())).collect()
    }
}

/// Reads a BiT `.npz` (keys `resnet/...`, HWIO kernels).
pub fn read_bit_npz(path: &Path) -> Result<LoadedWeights, TrainError> {
    let arrays =
        npz::read_npz(path).map_err(|e| TrainError::Weights { path: path.to_owned(), reason: e.to_string() })?;
    let mut tensors = BTreeMap::new();
    for (key, array) in arrays {
        let Some(rest) = key.strip_prefix(NPZ_PREFIX) else {
            return Err(TrainError::Weights {
                path: path.to_owned(),
                reason: format!("key {key:?} does not start with {NPZ_PREFIX:?}: not a BiT .npz"),
            });
        };
        tensors.insert(rest.replace('/', "."), from_hwio(&array));
    }
    Ok(LoadedWeights { path: path.to_owned(), tensors })
}

/// Reads one of our safetensors files (var-store names, OIHW).
pub fn read_safetensors(path: &Path) -> Result<LoadedWeights, TrainError> {
    let named = Tensor::read_safetensors(path)
        .map_err(|e| TrainError::Weights { path: path.to_owned(), reason: e.to_string() })?;
    Ok(LoadedWeights { path: path.to_owned(), tensors: named.into_iter().collect() })
}

/// Reads `.npz` (BiT) or `.safetensors` (ours) by extension.
pub fn read_weights(path: &Path) -> Result<LoadedWeights, TrainError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npz") => read_bit_npz(path),
        Some("safetensors") => read_safetensors(path),
        _ => Err(TrainError::Weights {
            path: path.to_owned(),
            reason: "expected a BiT .npz or a .safetensors file".into(),
        }),
    }
}

/// What happened to the head on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLoad {
    /// Same class count: the file's head was loaded.
    Loaded,
    /// Different class count: the head stays zero-initialized (BiT transfer).
    Replaced { file_classes: i64 },
    /// The caller asked for a fresh zero head whatever the file holds.
    Zeroed,
}

/// Copies `weights` into `model`. Every body parameter must be present with the right shape;
/// the head is loaded only when `keep_head` and the class counts agree.
pub fn load_into(model: &mut Model, weights: &LoadedWeights, keep_head: bool) -> Result<HeadLoad, TrainError> {
    let bad = |reason: String| TrainError::Weights { path: weights.path.clone(), reason };
    let mut head = HeadLoad::Loaded;
    let file_classes = weights.tensors.get("head.conv2d.kernel").map(|t| t.size()[0]);
    let replace_head = !keep_head || file_classes != Some(model.net.classes);
    if replace_head {
        head = match (keep_head, file_classes) {
            (true, Some(c)) => HeadLoad::Replaced { file_classes: c },
            _ => HeadLoad::Zeroed,
        };
    }
    let mut used = 0usize;
    tch::no_grad(|| -> Result<(), TrainError> {
        for (name, mut var) in model.vs.variables() {
            let is_head = name.starts_with("head.");
            if is_head && replace_head {
                let _ = var.zero_();
                used += weights.tensors.contains_key(&name) as usize;
                continue;
            }
            let t = weights
                .tensors
                .get(&name)
                .ok_or_else(|| bad(format!("missing {}{}", NPZ_PREFIX, name.replace('.', "/"))))?;
            if t.size() != var.size() {
                return Err(bad(format!(
                    "{}{}: shape {:?} (PyTorch layout), the {} model expects {:?}",
                    NPZ_PREFIX,
                    name.replace('.', "/"),
                    t.size(),
                    model.net.variant,
                    var.size()
                )));
            }
            var.f_copy_(&t.to_kind(var.kind()).to_device(var.device()))?;
            used += 1;
        }
        Ok(())
    })?;
    if used != weights.tensors.len() {
        let names: Vec<String> = model.vs.variables().into_keys().collect();
        let extra: Vec<&String> = weights.tensors.keys().filter(|k| !names.contains(k)).take(5).collect();
        return Err(bad(format!("unexpected parameters {extra:?}: not a {} model", model.net.variant)));
    }
    Ok(head)
}

/// Builds a model from a weight file, inferring the variant; `classes` replaces the head when
/// it differs from the file's (or `zero_head` forces a fresh head).
pub fn model_from_file(
    path: &Path,
    classes: Option<i64>,
    zero_head: bool,
    device: Device,
) -> Result<(Model, HeadLoad), TrainError> {
    let weights = read_weights(path)?;
    let (variant, file_classes) = infer_variant(&weights.shapes(), path)?;
    let mut model = Model::new(variant, classes.unwrap_or(file_classes), device, 0);
    let head = load_into(&mut model, &weights, !zero_head)?;
    Ok((model, head))
}

/// Writes the model in the official BiT layout (HWIO kernels, `resnet/` keys), openable by
/// big_transfer's `load_from` and timm. Atomic: a temporary name, then rename.
pub fn export_bit_npz(model: &Model, path: &Path) -> Result<(), TrainError> {
    let mut arrays = Vec::new();
    for (name, t) in model.named_parameters() {
        arrays.push((format!("{NPZ_PREFIX}{}", name.replace('.', "/")), to_hwio(&t)?));
    }
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let tmp = tmp_path(path);
    npz::write_npz(&tmp, &refs).map_err(|e| TrainError::Weights { path: path.to_owned(), reason: e.to_string() })?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Writes the parameters as safetensors (var-store names, OIHW), atomically.
pub fn save_safetensors(named: &[(String, Tensor)], path: &Path) -> Result<(), TrainError> {
    let tmp = tmp_path(path);
    let cpu: Vec<(String, Tensor)> =
        named.iter().map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&cpu, &tmp)
        .map_err(|e| TrainError::Checkpoint { path: path.to_owned(), reason: e.to_string() })?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// npz array (HWIO for 4-D) → tensor in PyTorch layout.
fn from_hwio(a: &Array) -> Tensor {
    let shape: Vec<i64> = a.shape.iter().map(|&d| d as i64).collect();
    let t = Tensor::from_slice(&a.data).reshape(shape.as_slice());
    if shape.len() == 4 {
        t.permute([3i64, 2, 0, 1].as_slice()).contiguous()
    } else {
        t
    }
}

/// Tensor in PyTorch layout → npz array (HWIO for 4-D), float32.
fn to_hwio(t: &Tensor) -> Result<Array, TrainError> {
    let t = t.detach().to_device(Device::Cpu).to_kind(Kind::Float);
    let t = if t.dim() == 4 { t.permute([2i64, 3, 1, 0].as_slice()) } else { t };
    let t = t.contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<f32>::try_from(t.flatten(0, -1)).map_err(TrainError::Torch)?;
    Array::new(shape, data).map_err(|e| TrainError::Config(e.to_string()))
}
