#!/usr/bin/env python3
"""The training-throughput peer of `scripts/bench-train`, and the cross-framework check of
`bitkit model export` (`--check-npz`): BiT ResNet-v2 in PyTorch eager, the
architecture of google-research/big_transfer bit_pytorch/models.py (StdConv2d with biased
variance and eps 1e-10, GroupNorm(32), pre-activation bottlenecks with the stride on the 3x3,
zero-pad-then-maxpool root, 1x1-conv head), trained with SGD momentum 0.9 on random
[-1, 1] batches (no data loading: the peer's ceiling). Uses timm's resnetv2_50x1_bit instead
when --timm is given and timm is installed.

Prints one JSON object: images/s over the timed updates.
"""
import argparse, json, time
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


class StdConv2d(nn.Conv2d):
    def forward(self, x):
        w = self.weight
        v, m = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
        w = (w - m) / torch.sqrt(v + 1e-10)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def conv3x3(cin, cout, stride=1):
    return StdConv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return StdConv2d(cin, cout, kernel_size=1, stride=stride, padding=0, bias=False)


def tf2th(conv_weights):
    """big_transfer's bit_pytorch/models.py: HWIO kernels to OIHW."""
    if conv_weights.ndim == 4:
        conv_weights = conv_weights.transpose([3, 2, 0, 1])
    return torch.from_numpy(conv_weights)


class PreActBottleneck(nn.Module):
    def __init__(self, cin, cout, cmid, stride):
        super().__init__()
        self.gn1 = nn.GroupNorm(32, cin)
        self.conv1 = conv1x1(cin, cmid)
        self.gn2 = nn.GroupNorm(32, cmid)
        self.conv2 = conv3x3(cmid, cmid, stride)
        self.gn3 = nn.GroupNorm(32, cmid)
        self.conv3 = conv1x1(cmid, cout)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample = conv1x1(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.gn1(x))
        residual = x
        if hasattr(self, "downsample"):
            residual = self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.gn2(out)))
        out = self.conv3(self.relu(self.gn3(out)))
        return out + residual

    def load_from(self, weights, prefix):
        with torch.no_grad():
            self.conv1.weight.copy_(tf2th(weights[f"{prefix}a/standardized_conv2d/kernel"]))
            self.conv2.weight.copy_(tf2th(weights[f"{prefix}b/standardized_conv2d/kernel"]))
            self.conv3.weight.copy_(tf2th(weights[f"{prefix}c/standardized_conv2d/kernel"]))
            self.gn1.weight.copy_(tf2th(weights[f"{prefix}a/group_norm/gamma"]))
            self.gn2.weight.copy_(tf2th(weights[f"{prefix}b/group_norm/gamma"]))
            self.gn3.weight.copy_(tf2th(weights[f"{prefix}c/group_norm/gamma"]))
            self.gn1.bias.copy_(tf2th(weights[f"{prefix}a/group_norm/beta"]))
            self.gn2.bias.copy_(tf2th(weights[f"{prefix}b/group_norm/beta"]))
            self.gn3.bias.copy_(tf2th(weights[f"{prefix}c/group_norm/beta"]))
            if hasattr(self, "downsample"):
                self.downsample.weight.copy_(tf2th(weights[f"{prefix}a/proj/standardized_conv2d/kernel"]))


class ResNetV2(nn.Module):
    """BiT's ResNetV2 with its module names (root.conv, body.blockB.unitUU, head.gn/conv);
    `root` is the root width, 64 x the width factor."""

    def __init__(self, block_units, root, head_size):
        super().__init__()
        self.root = nn.Sequential(OrderedDict([
            ("conv", StdConv2d(3, root, kernel_size=7, stride=2, padding=3, bias=False)),
            ("pad", nn.ConstantPad2d(1, 0)),
            ("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=0)),
        ]))
        blocks = []
        cin = root
        for b, units in enumerate(block_units):
            cmid, cout = root * 2 ** b, 4 * root * 2 ** b
            unit_list = [(f"unit{u + 1:02d}", PreActBottleneck(cin if u == 0 else cout, cout, cmid,
                                                              2 if (u == 0 and b > 0) else 1)) for u in range(units)]
            blocks.append((f"block{b + 1}", nn.Sequential(OrderedDict(unit_list))))
            cin = cout
        self.body = nn.Sequential(OrderedDict(blocks))
        self.head = nn.Sequential(OrderedDict([
            ("gn", nn.GroupNorm(32, cin)), ("relu", nn.ReLU(inplace=True)), ("avg", nn.AdaptiveAvgPool2d(output_size=1)),
            ("conv", nn.Conv2d(cin, head_size, kernel_size=1, bias=True)),
        ]))

    def forward(self, x):
        x = self.head(self.body(self.root(x)))
        assert x.shape[-2:] == (1, 1)
        return x[..., 0, 0]

    def load_from(self, weights, prefix="resnet/"):
        """big_transfer's `ResNetV2.load_from` (zero_head=False)."""
        with torch.no_grad():
            self.root.conv.weight.copy_(tf2th(weights[f"{prefix}root_block/standardized_conv2d/kernel"]))
            self.head.gn.weight.copy_(tf2th(weights[f"{prefix}group_norm/gamma"]))
            self.head.gn.bias.copy_(tf2th(weights[f"{prefix}group_norm/beta"]))
            self.head.conv.weight.copy_(tf2th(weights[f"{prefix}head/conv2d/kernel"]))
            self.head.conv.bias.copy_(tf2th(weights[f"{prefix}head/conv2d/bias"]))
            for bname, block in self.body.named_children():
                for uname, unit in block.named_children():
                    unit.load_from(weights, prefix=f"{prefix}{bname}/{uname}/")


def check_npz(npz, inputs, logits):
    """Loads a BiT .npz (e.g. written by `bitkit model export`) the way big_transfer does, runs
    the float32 NCHW batch `inputs` and compares with `logits` (e.g. from `bitkit model forward`).
    Prints the max absolute difference and the logits' scale as JSON."""
    import numpy as np
    w = np.load(npz)
    units = [max(int(k.split("/")[2][4:]) for k in w.files if k.startswith(f"resnet/block{b}/")) for b in range(1, 5)]
    root = w["resnet/root_block/standardized_conv2d/kernel"].shape[3]
    classes = w["resnet/head/conv2d/kernel"].shape[3]
    model = ResNetV2(units, root, classes)
    model.load_from(w)
    model.eval()
    with torch.no_grad():
        got = model(torch.from_numpy(np.load(inputs))).numpy()
    want = np.load(logits)
    print(json.dumps({"block_units": units, "root": int(root), "classes": int(classes),
                      "max_abs_diff": float(np.abs(got - want).max()), "scale": float(np.abs(want).max())}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--timm", action="store_true")
    ap.add_argument("--check-npz", metavar="W.npz", help="load W.npz as big_transfer does, compare logits")
    ap.add_argument("--input", help="with --check-npz: float32 NCHW .npy")
    ap.add_argument("--logits", help="with --check-npz: the logits to compare with (.npy)")
    a = ap.parse_args()
    if a.check_npz:
        check_npz(a.check_npz, a.input, a.logits)
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if a.timm:
        import timm
        model = timm.create_model("resnetv2_50x1_bit", num_classes=a.classes)
    else:
        model = ResNetV2([3, 4, 6, 3], 64, a.classes)
    model = model.to(dev)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    x = torch.rand(a.batch, 3, a.resolution, a.resolution, device=dev) * 2 - 1
    if a.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)

    def step():
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(a.warmup):
        step().item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    print(json.dumps({"peer": "timm" if a.timm else "bit_pytorch", "resolution": a.resolution, "batch": a.batch,
                      "threads": torch.get_num_threads(), "device": a.device, "bf16": a.bf16,
                      "images_per_s": a.batch * a.steps / dt}))


if __name__ == "__main__":
    main()
