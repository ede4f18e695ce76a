//! BiT ResNet-v2 (BIT_SPEC §3): pre-activation bottlenecks, GroupNorm(32) everywhere, weight
//! standardization on every conv but the head, a zero-pad-then-maxpool root, and a plain
//! GN → ReLU → global-average-pool → linear head.
//!
//! Parameters live in a `tch::nn::VarStore` under the names of [`Variant::parameters`]
//! (the BiT .npz keys with `.` for `/`), in PyTorch layout (convs OIHW).

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::variant::{UnitShape, Variant, GROUPS};

/// ε of weight standardization: inside the square root, biased variance (BIT_SPEC §3.1; timm's
/// 1e-8 differs).
pub const WS_EPS: f64 = 1e-10;
/// ε of GroupNorm (BIT_SPEC §3.2).
pub const GN_EPS: f64 = 1e-5;

/// A convolution whose kernel is standardized per output channel on every forward pass.
#[derive(Debug)]
pub struct StdConv2d {
    pub kernel: Tensor,
    stride: i64,
    padding: i64,
}

impl StdConv2d {
    fn new(p: &nn::Path<'_>, shape: [i64; 4], stride: i64, padding: i64) -> StdConv2d {
        // He-normal over fan-out, as timm; standardization makes the scale irrelevant to the
        // forward pass, and official weights overwrite it anyway.
        let fan_out = (shape[0] * shape[2] * shape[3]) as f64;
        let init = Init::Randn { mean: 0.0, stdev: (2.0 / fan_out).sqrt() };
        let kernel = (p / "standardized_conv2d").var("kernel", &shape, init);
        StdConv2d { kernel, stride, padding }
    }

    /// ŵ = (w − mean) / sqrt(var + 1e-10), mean and biased variance over (in, kh, kw).
    pub fn standardized(&self) -> Tensor {
        standardize(&self.kernel)
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = self.standardized();
        let w = if w.kind() != x.kind() { w.to_kind(x.kind()) } else { w };
        x.conv2d(&w, None::<Tensor>, [self.stride, self.stride], [self.padding, self.padding], [1, 1], 1)
    }
}

/// Weight standardization of an OIHW kernel (computed in the kernel's own precision).
pub fn standardize(w: &Tensor) -> Tensor {
    let (var, mean) = w.var_mean_dim([1i64, 2, 3].as_slice(), false, true);
    (w - mean) / (var + WS_EPS).sqrt()
}

/// GroupNorm(32) with a per-channel affine γ (init 1) and β (init 0).
#[derive(Debug)]
pub struct GroupNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
}

impl GroupNorm {
    fn new(p: &nn::Path<'_>, channels: i64) -> GroupNorm {
        let p = p / "group_norm";
        GroupNorm {
            gamma: p.var("gamma", &[channels], Init::Const(1.0)),
            beta: p.var("beta", &[channels], Init::Const(0.0)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if x.kind() == self.gamma.kind() {
            x.group_norm(GROUPS, Some(&self.gamma), Some(&self.beta), GN_EPS, true)
        } else {
            // Reduced precision: normalise in float32, continue in the input's precision.
            x.to_kind(self.gamma.kind())
                .group_norm(GROUPS, Some(&self.gamma), Some(&self.beta), GN_EPS, true)
                .to_kind(x.kind())
        }
    }
}

/// The pre-activation bottleneck (BIT_SPEC §3.4).
#[derive(Debug)]
pub struct PreActBottleneck {
    pub shape: UnitShape,
    gn1: GroupNorm,
    conv1: StdConv2d,
    /// 1x1, strided, reading the pre-activation; only where the shape changes.
    proj: Option<StdConv2d>,
    gn2: GroupNorm,
    conv2: StdConv2d,
    gn3: GroupNorm,
    conv3: StdConv2d,
}

impl PreActBottleneck {
    fn new(p: &nn::Path<'_>, u: &UnitShape) -> PreActBottleneck {
        let (a, b, c) = (p / "a", p / "b", p / "c");
        PreActBottleneck {
            shape: u.clone(),
            gn1: GroupNorm::new(&a, u.cin),
            conv1: StdConv2d::new(&a, [u.cmid, u.cin, 1, 1], 1, 0),
            proj: u.projection.then(|| StdConv2d::new(&(&a / "proj"), [u.cout, u.cin, 1, 1], u.stride, 0)),
            gn2: GroupNorm::new(&b, u.cmid),
            conv2: StdConv2d::new(&b, [u.cmid, u.cmid, 3, 3], u.stride, 1),
            gn3: GroupNorm::new(&c, u.cmid),
            conv3: StdConv2d::new(&c, [u.cout, u.cmid, 1, 1], 1, 0),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let a = self.gn1.forward(x).relu();
        // The projection reads the pre-activation; the identity shortcut the raw input.
        let shortcut = match &self.proj {
            Some(proj) => proj.forward(&a),
            None => x.shallow_clone(),
        };
        let h = self.conv1.forward(&a);
        let h = self.conv2.forward(&self.gn2.forward(&h).relu());
        let h = self.conv3.forward(&self.gn3.forward(&h).relu());
        // No activation after the add.
        h + shortcut
    }
}

/// The whole network.
#[derive(Debug)]
pub struct ResNetV2 {
    pub variant: Variant,
    pub classes: i64,
    root: StdConv2d,
    units: Vec<PreActBottleneck>,
    norm: GroupNorm,
    pub head_kernel: Tensor,
    pub head_bias: Tensor,
}

impl ResNetV2 {
    /// Creates the parameters under `p` (normally `vs.root()`). The head starts at zero, as
    /// BiT's `zero_head=True`; load weights to replace the rest.
    pub fn new(p: &nn::Path<'_>, variant: Variant, classes: i64) -> ResNetV2 {
        let root = StdConv2d::new(&(p / "root_block"), [variant.root_width, 3, 7, 7], 2, 3);
        let units = variant.unit_shapes().iter().map(|u| PreActBottleneck::new(&unit_path(p, u), u)).collect();
        let norm = GroupNorm::new(p, variant.feature_dim());
        let head = p / "head" / "conv2d";
        let head_kernel = head.var("kernel", &[classes, variant.feature_dim(), 1, 1], Init::Const(0.0));
        let head_bias = head.var("bias", &[classes], Init::Const(0.0));
        ResNetV2 { variant, classes, root, units, norm, head_kernel, head_bias }
    }

    /// Root: 7x7/2 standardized conv (pad 3), then zero pad 1 and 3x3/2 max-pool without
    /// padding — not `MaxPool2d(padding=1)`, whose −inf padding differs at the border.
    pub fn root(&self, x: &Tensor) -> Tensor {
        self.root.forward(x).constant_pad_nd([1i64, 1, 1, 1].as_slice()).max_pool2d(
            [3, 3],
            [2, 2],
            [0, 0],
            [1, 1],
            false,
        )
    }

    /// Pre-head features: root, the four blocks, GN, ReLU, global average pool → [N, 2048·wf].
    pub fn features(&self, x: &Tensor) -> Tensor {
        let mut h = self.root(x);
        for unit in &self.units {
            h = unit.forward(&h);
        }
        self.norm.forward(&h).relu().mean_dim([2i64, 3].as_slice(), false, None::<Kind>)
    }

    /// Logits [N, classes] for a float NCHW batch in [-1, 1].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let feat = self.features(x);
        let w = self.head_kernel.flatten(1, 3);
        let (w, b) = if feat.kind() != w.kind() {
            (w.to_kind(feat.kind()), self.head_bias.to_kind(feat.kind()))
        } else {
            (w, self.head_bias.shallow_clone())
        };
        // The head is a 1x1 conv with bias on a 1x1 map: a linear layer.
        feat.linear(&w, Some(&b))
    }
}

fn unit_path<'a>(p: &nn::Path<'a>, u: &UnitShape) -> nn::Path<'a> {
    p / format!("block{}", u.block) / format!("unit{:02}", u.unit)
}
