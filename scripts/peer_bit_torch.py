#!/usr/bin/env python3
"""The training-throughput peer of `scripts/bench-train`: BiT ResNet-v2 in PyTorch eager, the
architecture of google-research/big_transfer bit_pytorch/models.py (StdConv2d with biased
variance and eps 1e-10, GroupNorm(32), pre-activation bottlenecks with the stride on the 3x3,
zero-pad-then-maxpool root, 1x1-conv head), trained with SGD momentum 0.9 on random
[-1, 1] batches (no data loading: the peer's ceiling). Uses timm's resnetv2_50x1_bit instead
when --timm is given and timm is installed.

Prints one JSON object: images/s over the timed updates.
"""
import argparse, json, time

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


class ResNetV2(nn.Module):
    def __init__(self, block_units, wf, head_size):
        super().__init__()
        self.root = nn.Sequential(
            StdConv2d(3, 64 * wf, kernel_size=7, stride=2, padding=3, bias=False),
            nn.ConstantPad2d(1, 0),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=0),
        )
        layers = []
        cin = 64 * wf
        for b, units in enumerate(block_units):
            cmid, cout = 64 * wf * 2 ** b, 256 * wf * 2 ** b
            for u in range(units):
                layers.append(PreActBottleneck(cin if u == 0 else cout, cout, cmid, 2 if (u == 0 and b > 0) else 1))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.GroupNorm(32, 2048 * wf), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                                  nn.Conv2d(2048 * wf, head_size, kernel_size=1, bias=True))

    def forward(self, x):
        return self.head(self.body(self.root(x)))[..., 0, 0]


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
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if a.timm:
        import timm
        model = timm.create_model("resnetv2_50x1_bit", num_classes=a.classes)
    else:
        model = ResNetV2([3, 4, 6, 3], 1, a.classes)
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
