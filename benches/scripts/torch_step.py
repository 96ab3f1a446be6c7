#!/usr/bin/env python3
"""PyTorch versions of the seven seed models (docs/models.md), timed over the same
training step as our harness: train-mode forward, cross-entropy, backward, AdamW step.

Prints one JSON object per model: {"model", "img_s", "step_ms", "params", "device",
"precision", "losses", ...}; img_s is the batch over the median step, after warm-up steps.
Used by `step_compare`; runnable alone:
    .venv-torch/bin/python benches/scripts/torch_step.py --models all --iters 5
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PARAMS = {
    "vgg": 1_110_826, "resnet-light": 310_474, "resnet-heavy": 3_921_994,
    "resnext-small": 1_087_114, "resnext-large": 3_090_058,
    "densenet-small": 508_447, "densenet-large": 1_098_724,
}


def conv_bn(cin, cout, k, s=1, g=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=g), nn.BatchNorm2d(cout))


def conv_bn_relu(cin, cout, k, s=1, g=1):
    return nn.Sequential(*conv_bn(cin, cout, k, s, g), nn.ReLU())


class Vgg(nn.Module):
    def __init__(self, c0=32, blocks=3, drop=0.2):
        super().__init__()
        layers = [conv_bn_relu(3, c0, 5)]
        c = c0
        for _ in range(blocks):
            layers += [conv_bn_relu(c, c, 3), nn.Dropout2d(drop), conv_bn_relu(c, 2 * c, 3), nn.MaxPool2d(2)]
            c *= 2
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(c * 4 * 4, c0 * 2 ** blocks // 2)
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(c0 * 2 ** blocks // 2, 10)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.fc2(F.relu(self.drop(self.fc1(x))))


class Vanilla(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, s)
        self.conv2 = conv_bn(cout, cout, 3)
        self.conv3 = conv_bn(cin, cout, 1, s)

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + self.conv3(x))


class Bottleneck(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        b = cout // 4
        self.body = nn.Sequential(conv_bn_relu(cin, b, 1), conv_bn_relu(b, b, 3, s), conv_bn(b, cout, 1))
        self.short = conv_bn(cin, cout, 1, s)

    def forward(self, x):
        return F.relu(self.body(x) + self.short(x))


class ResNet(nn.Module):
    def __init__(self, vanilla_chunks=1, bottleneck_chunks=2, blocks=3, c0=32):
        super().__init__()
        layers = [conv_bn_relu(3, c0, 5)]
        for i in range(vanilla_chunks + bottleneck_chunks):
            c = c0 * 2 ** i
            block = Vanilla if i < vanilla_chunks else Bottleneck
            layers += [block(c, c, 1) for _ in range(blocks - 1)] + [block(c, 2 * c, 2)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c0 * 2 ** (vanilla_chunks + bottleneck_chunks), 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class ResNeXtBlock(nn.Module):
    def __init__(self, cin, cout, s, card=64, width=4):
        super().__init__()
        m = card * width
        self.body = nn.Sequential(conv_bn_relu(cin, m, 1), conv_bn_relu(m, m, 3, s, card), conv_bn(m, cout, 1))
        self.short = conv_bn(cin, cout, 1, s)

    def forward(self, x):
        return F.relu(self.body(x) + self.short(x))


class ResNeXtChunk(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block1 = ResNeXtBlock(c, c, 1)
        self.block2 = ResNeXtBlock(c, 2 * c, 2)
        self.conv = nn.Conv2d(c, 2 * c, 1, 2)

    def forward(self, x):
        return self.block2(self.block1(x)) + self.conv(x)


class ResNeXt(nn.Module):
    def __init__(self, chunks=4, c0=64):
        super().__init__()
        self.stem = conv_bn_relu(3, c0, 5)
        self.chunks = nn.Sequential(*[ResNeXtChunk(c0 * 2 ** i) for i in range(chunks)])
        self.fc = nn.Linear(c0 * 2 ** chunks, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.chunks(self.stem(x)), 1).flatten(1))


class DenseBlock(nn.Module):
    def __init__(self, cin, k, layers=8, width=4):
        super().__init__()
        self.bottles = nn.ModuleList([conv_bn_relu(cin + i * k, width * k, 1) for i in range(layers)])
        self.convs = nn.ModuleList([conv_bn_relu(width * k, k, 3) for _ in range(layers)])
        self.out_channels = cin + layers * k

    def forward(self, x):
        feats = [x]
        for b, c in zip(self.bottles, self.convs):
            feats.append(c(b(x)))
            x = torch.cat(feats, 1)
        return x


class DenseNet(nn.Module):
    def __init__(self, chunks=4, k=12):
        super().__init__()
        c = 4 * k
        layers = [conv_bn_relu(3, c, 5)]
        for _ in range(chunks):
            d = DenseBlock(c, k)
            out = int(d.out_channels * 0.5)
            layers += [d, conv_bn_relu(d.out_channels, out, 1), nn.AvgPool2d(2)]
            c = out
        d = DenseBlock(c, k)
        layers.append(d)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(d.out_channels, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


MODELS = {
    "vgg": Vgg,
    "resnet-light": ResNet,
    "resnet-heavy": lambda: ResNet(vanilla_chunks=2, bottleneck_chunks=3),
    "resnext-small": lambda: ResNeXt(chunks=3),
    "resnext-large": ResNeXt,
    "densenet-small": DenseNet,
    "densenet-large": lambda: DenseNet(chunks=5, k=16),
}


def time_model(name, batch, iters, warmup, channels_last, device="cpu", amp=None):
    torch.manual_seed(0)
    model = MODELS[name]()
    params = sum(p.numel() for p in model.parameters())
    if params != PARAMS[name]:
        sys.exit(f"{name}: {params} parameters, the seed has {PARAMS[name]}")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, 32, 32).to(device=device, memory_format=fmt)
    y = torch.randint(0, 10, (batch,)).to(device)
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(amp)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # waits for the device, as our trainer reads its loss every step

    losses = [step() for _ in range(warmup)]
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    return {"model": name, "img_s": batch / median, "step_ms": median * 1e3, "params": params,
            "device": device, "precision": amp or "f32", "channels_last": channels_last,
            "batch_size": batch, "steps": iters, "warmup": warmup, "losses": losses}


def sgemm_gmac_s(n, reps=5):
    """The f32 matmul ceiling of this machine as PyTorch reaches it: best of `reps` n×n×n
    products, in 1e9 multiply-adds per second."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return n ** 3 / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="all", help="comma-separated names, or all")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--amp", choices=["bf16", "f16"], help="autocast to this dtype (f32 master weights)")
    ap.add_argument("--sgemm", type=int, metavar="N", help="print only the f32 ceiling: GMAC/s of an N×N×N matmul")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.sgemm:
        print(json.dumps({"sgemm_n": a.sgemm, "sgemm_gmac_s": sgemm_gmac_s(a.sgemm), "threads": a.threads}), flush=True)
        return
    if a.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # what a PyTorch user turns on for fixed shapes
    names = list(MODELS) if a.models == "all" else a.models.split(",")
    for n in names:
        if n not in MODELS:
            sys.exit(f"unknown model {n}; valid: {', '.join(MODELS)}")
    for n in names:
        print(json.dumps(time_model(n, a.batch, a.iters, a.warmup, a.channels_last, a.device, a.amp)), flush=True)


if __name__ == "__main__":
    main()
