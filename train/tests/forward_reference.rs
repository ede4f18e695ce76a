//! The tiny model's forward pass against an independent reference: the BiT ResNet-v2 of
//! BIT_SPEC §3 written out in plain f64 loops (no libtorch), fed the same parameters.

use bitkit_train::tch::{self, Device, Kind, Tensor};
use bitkit_train::variant::Variant;
use bitkit_train::Model;
use std::collections::HashMap;

/// One image, CHW.
#[derive(Clone)]
struct Map {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f64>,
}

impl Map {
    fn at(&self, c: usize, y: usize, x: usize) -> f64 {
        self.v[(c * self.h + y) * self.w + x]
    }
}

/// Weight standardization: per output channel, biased variance, eps 1e-10 inside the sqrt.
fn standardize(w: &[f64], out: usize) -> Vec<f64> {
    let per = w.len() / out;
    let mut r = Vec::with_capacity(w.len());
    for o in 0..out {
        let s = &w[o * per..(o + 1) * per];
        let mean = s.iter().sum::<f64>() / per as f64;
        let var = s.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / per as f64;
        r.extend(s.iter().map(|x| (x - mean) / (var + 1e-10).sqrt()));
    }
    r
}

/// Convolution with a standardized OIHW kernel, symmetric zero padding.
fn conv(x: &Map, w: &[f64], out: usize, k: usize, stride: usize, pad: usize) -> Map {
    let w = standardize(w, out);
    let oh = (x.h + 2 * pad - k) / stride + 1;
    let ow = (x.w + 2 * pad - k) / stride + 1;
    let mut v = vec![0.0; out * oh * ow];
    for o in 0..out {
        for y in 0..oh {
            for xx in 0..ow {
                let mut acc = 0.0;
                for i in 0..x.c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let sy = (y * stride + ky) as isize - pad as isize;
                            let sx = (xx * stride + kx) as isize - pad as isize;
                            if sy < 0 || sx < 0 || sy >= x.h as isize || sx >= x.w as isize {
                                continue;
                            }
                            acc += w[((o * x.c + i) * k + ky) * k + kx] * x.at(i, sy as usize, sx as usize);
                        }
                    }
                }
                v[(o * oh + y) * ow + xx] = acc;
            }
        }
    }
    Map { c: out, h: oh, w: ow, v }
}

/// GroupNorm: 32 contiguous channel groups, biased variance, eps 1e-5, per-channel affine.
fn group_norm(x: &Map, gamma: &[f64], beta: &[f64]) -> Map {
    let groups = 32;
    let per = x.c / groups;
    let plane = x.h * x.w;
    let mut v = x.v.clone();
    for g in 0..groups {
        let s = &x.v[g * per * plane..(g + 1) * per * plane];
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        let var = s.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / s.len() as f64;
        for c in g * per..(g + 1) * per {
            for p in 0..plane {
                let i = c * plane + p;
                v[i] = (x.v[i] - mean) / (var + 1e-5).sqrt() * gamma[c] + beta[c];
            }
        }
    }
    Map { v, ..x.clone() }
}

fn relu(x: &Map) -> Map {
    Map { v: x.v.iter().map(|a| a.max(0.0)).collect(), ..x.clone() }
}

/// Zero pad 1, then 3x3 stride-2 max-pool without padding.
fn pad_then_maxpool(x: &Map) -> Map {
    let (h, w) = (x.h + 2, x.w + 2);
    let get = |c: usize, y: usize, xx: usize| {
        if y == 0 || xx == 0 || y > x.h || xx > x.w {
            0.0
        } else {
            x.at(c, y - 1, xx - 1)
        }
    };
    let (oh, ow) = ((h - 3) / 2 + 1, (w - 3) / 2 + 1);
    let mut v = vec![f64::NEG_INFINITY; x.c * oh * ow];
    for c in 0..x.c {
        for y in 0..oh {
            for xx in 0..ow {
                let mut m = f64::NEG_INFINITY;
                for ky in 0..3 {
                    for kx in 0..3 {
                        m = m.max(get(c, y * 2 + ky, xx * 2 + kx));
                    }
                }
                v[(c * oh + y) * ow + xx] = m;
            }
        }
    }
    Map { c: x.c, h: oh, w: ow, v }
}

fn reference_logits(p: &HashMap<String, Vec<f64>>, variant: Variant, image: Map, classes: usize) -> Vec<f64> {
    let get = |n: &str| p.get(n).unwrap_or_else(|| panic!("no parameter {n}")).as_slice();
    let mut h = conv(&image, get("root_block.standardized_conv2d.kernel"), variant.root_width as usize, 7, 2, 3);
    h = pad_then_maxpool(&h);
    for u in variant.unit_shapes() {
        let at = |s: &str| format!("block{}.unit{:02}.{s}", u.block, u.unit);
        let (cmid, cout) = (u.cmid as usize, u.cout as usize);
        let a = relu(&group_norm(&h, get(&at("a.group_norm.gamma")), get(&at("a.group_norm.beta"))));
        let shortcut = if u.projection {
            conv(&a, get(&at("a.proj.standardized_conv2d.kernel")), cout, 1, u.stride as usize, 0)
        } else {
            h.clone()
        };
        let x = conv(&a, get(&at("a.standardized_conv2d.kernel")), cmid, 1, 1, 0);
        let x = relu(&group_norm(&x, get(&at("b.group_norm.gamma")), get(&at("b.group_norm.beta"))));
        let x = conv(&x, get(&at("b.standardized_conv2d.kernel")), cmid, 3, u.stride as usize, 1);
        let x = relu(&group_norm(&x, get(&at("c.group_norm.gamma")), get(&at("c.group_norm.beta"))));
        let mut x = conv(&x, get(&at("c.standardized_conv2d.kernel")), cout, 1, 1, 0);
        for (o, s) in x.v.iter_mut().zip(&shortcut.v) {
            *o += s;
        }
        h = x;
    }
    let h = relu(&group_norm(&h, get("group_norm.gamma"), get("group_norm.beta")));
    let plane = (h.h * h.w) as f64;
    let feat: Vec<f64> =
        (0..h.c).map(|c| h.v[c * h.h * h.w..(c + 1) * h.h * h.w].iter().sum::<f64>() / plane).collect();
    let w = get("head.conv2d.kernel");
    let b = get("head.conv2d.bias");
    (0..classes).map(|k| b[k] + (0..h.c).map(|c| w[k * h.c + c] * feat[c]).sum::<f64>()).collect()
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("tensor to vec")
}

#[test]
fn tiny_forward_matches_the_plain_reference() {
    tch::set_num_threads(2);
    let variant = Variant::by_name("tiny").expect("tiny");
    let classes = 7;
    let model = Model::new(variant, classes, Device::Cpu, 3);
    // Non-trivial norms and head (training starts them at 1 / 0 / 0).
    tch::manual_seed(11);
    tch::no_grad(|| {
        for (name, mut t) in model.vs.variables() {
            if name.ends_with("gamma") {
                t.copy_(&(Tensor::rand_like(&t) + 0.5));
            } else if name.ends_with("beta") || name.starts_with("head.") {
                t.copy_(&((Tensor::rand_like(&t) - 0.5) * 0.4));
            }
        }
    });
    let params: HashMap<String, Vec<f64>> = model.vs.variables().iter().map(|(n, t)| (n.clone(), to_f64(t))).collect();

    // Odd size: exercises the pad-then-pool border and the strided 3x3 convs' padding.
    let (n, side) = (2i64, 37i64);
    let x = Tensor::rand([n, 3, side, side], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let logits = tch::no_grad(|| model.net.forward(&x));
    assert_eq!(logits.size(), vec![n, classes]);
    let got = to_f64(&logits);
    let xs = to_f64(&x);
    let plane = (3 * side * side) as usize;
    let mut max_err = 0f64;
    let mut max_abs = 0f64;
    for i in 0..n as usize {
        let image = Map { c: 3, h: side as usize, w: side as usize, v: xs[i * plane..(i + 1) * plane].to_vec() };
        let want = reference_logits(&params, variant, image, classes as usize);
        for (k, w) in want.iter().enumerate() {
            max_err = max_err.max((got[i * classes as usize + k] - w).abs());
            max_abs = max_abs.max(w.abs());
        }
    }
    assert!(max_abs > 0.05, "logits too small to compare: {max_abs}");
    assert!(max_err <= 1e-4 * max_abs.max(1.0), "max |libtorch - reference| = {max_err} (logits up to {max_abs})");
}

/// BiT's root pads with zeros before pooling: −inf padding (PyTorch `MaxPool2d(padding=1)`)
/// would differ wherever the border activations are negative.
#[test]
fn root_pads_with_zeros_not_minus_infinity() {
    let variant = Variant::by_name("tiny").expect("tiny");
    let model = Model::new(variant, 3, Device::Cpu, 0);
    let x = Tensor::rand([1, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let root = tch::no_grad(|| model.net.root(&x));
    assert_eq!(root.size(), vec![1, variant.root_width, 4, 4]);
    // The corner output sees the zero padding: it is never below 0.
    let corner = root.narrow(2, 0, 1).narrow(3, 0, 1);
    assert!(corner.min().double_value(&[]) >= 0.0);
}

/// The GPU options on CPU: bf16 activations (float32 weights, norms and loss) stay close to
/// float32 and back-propagate into float32 gradients; channels-last input gives the same
/// logits as NCHW.
#[test]
fn bf16_and_channels_last_paths_agree_with_float32() {
    use bitkit_train::data::to_channels_last;
    let variant = Variant::by_name("tiny").expect("tiny");
    let model = Model::new(variant, 5, Device::Cpu, 9);
    tch::manual_seed(2);
    tch::no_grad(|| {
        for (name, mut t) in model.vs.variables() {
            if name.starts_with("head.") {
                t.copy_(&((Tensor::rand_like(&t) - 0.5) * 0.4));
            }
        }
    });
    let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let f32_logits = model.net.forward(&x);
    let scale = f32_logits.abs().max().double_value(&[]);
    assert!(scale > 0.05);

    let cl = tch::no_grad(|| model.net.forward(&to_channels_last(&x)));
    let diff = (&cl - &f32_logits).abs().max().double_value(&[]);
    assert!(diff <= 1e-4 * scale.max(1.0), "channels-last differs by {diff}");

    let bf16_logits = model.net.forward(&x.to_kind(Kind::BFloat16));
    assert_eq!(bf16_logits.kind(), Kind::BFloat16);
    let diff = (bf16_logits.to_kind(Kind::Float) - &f32_logits).abs().max().double_value(&[]);
    assert!(diff <= 0.1 * scale.max(1.0), "bf16 differs by {diff} (scale {scale})");
    let labels = Tensor::from_slice(&[0i64, 1, 2, 3]);
    let loss = bitkit_train::data::cross_entropy(&bf16_logits, &labels);
    assert_eq!(loss.kind(), Kind::Float);
    loss.backward();
    for (name, t) in model.vs.variables() {
        let g = t.grad();
        assert!(g.defined(), "{name} has no gradient");
        assert_eq!(g.kind(), Kind::Float, "{name}");
        assert!(g.isfinite().all().int64_value(&[]) == 1, "{name} has a non-finite gradient");
    }
}
