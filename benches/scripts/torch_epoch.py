#!/usr/bin/env python3
"""A PyTorch training epoch over the real CIFAR-10 files, for the whole-epoch side of
`benches/scripts/epoch-compare.sh`: the seed's model (torch_step.py), its transforms (random
crop with 4 px zero padding, horizontal flip, normalisation) and AdamW (3e-3, weight decay
0.1), batch 128, in train mode.

The loader is the fastest a PyTorch user would write without extra packages: the whole batch
file decoded once into a uint8 tensor, each batch augmented as tensors (no PIL, no worker
processes), so the figure is PyTorch's training speed, not torchvision's per-image pipeline.
Prints one JSON object: {"model", "images", "seconds", "img_s", "threads", "final_loss"}.

    .venv-torch/bin/python benches/scripts/torch_epoch.py --data DIR --model vgg --images 5120
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import MODELS  # noqa: E402  (the seed's seven models, parameter-checked there)
from torch_fast import crop, normalise  # noqa: E402  (the padded crop and normalisation, written once)

def load_train(data_dir, images):
    """The first `images` records of data_batch_1..5 (1 label byte + 3072 pixel bytes each)."""
    rows = []
    for i in range(1, 6):
        raw = np.fromfile(os.path.join(data_dir, f"data_batch_{i}.bin"), dtype=np.uint8).reshape(-1, 3073)
        rows.append(raw)
        if sum(len(r) for r in rows) >= images:
            break
    raw = np.concatenate(rows)[:images]
    if len(raw) < images:
        sys.exit(f"{data_dir} holds {len(raw)} training images, fewer than --images {images}")
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    pixels = torch.from_numpy(raw[:, 1:].copy()).view(-1, 3, 32, 32)
    return pixels, labels


def augment(batch_u8, gen):
    """RandomCrop(32, padding=4) (zero = black padding) + RandomHorizontalFlip + ToTensor +
    Normalize, batched."""
    x = crop(batch_u8, 4, gen)
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x[flip] = x[flip].flip(3)
    return normalise(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="folder with data_batch_1.bin ... (official binary layout)")
    ap.add_argument("--model", required=True, choices=list(MODELS))
    ap.add_argument("--images", type=int, default=5120, help="training images in the epoch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(42)
    gen = torch.Generator().manual_seed(42)
    pixels, labels = load_train(a.data, a.images)
    model = MODELS[a.model]().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    t = time.perf_counter()
    order = torch.randperm(a.images, generator=gen)
    loss = None
    for start in range(0, a.images - a.batch + 1, a.batch):  # drop_last, as our trainer
        idx = order[start:start + a.batch]
        x, y = augment(pixels[idx], gen), labels[idx]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss = loss.item()
    seconds = time.perf_counter() - t
    trained = (a.images // a.batch) * a.batch
    print(json.dumps({"model": a.model, "images": trained, "seconds": seconds, "img_s": trained / seconds,
                      "threads": a.threads, "final_loss": loss}), flush=True)


if __name__ == "__main__":
    main()
