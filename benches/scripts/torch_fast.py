#!/usr/bin/env python3
"""The fast recipe in PyTorch: a reference run beside `train --recipe fast`, to tell a limit of
the recipe from a shortfall of our trainer at the full epoch budget.

Same data and choices as `train --model M --recipe fast` (recipe/mod.rs): the seed's split
(numpy seed 42, the first 5,000 shuffled records validate), the seed's model (torch_step.py),
AdamW (lr 3e-3, weight decay 0.1 on every parameter), batch 128 with the last partial batch
kept, a linear warm-up over `--warmup-epochs` then a linear decay to `--final-lr-frac` (stepped
per batch), label smoothing, an EMA of the parameters and BatchNorm statistics with decay
min(d, (1 + t) / (10 + t)), zero-padded random crop of `--crop-padding` pixels, alternating
flips, and flip TTA (mean of the logits) for validation and test. Each epoch scores the raw
weights and the EMA on validation; the better of all of them is scored once on the test set.

`--out DIR` is a run folder as `train` writes one, so `runs_report.py` sets the two side by side:
`metrics.jsonl` (one line per epoch, `train`'s field names), `summary.json` (the final object,
also printed), `flags.txt`, and `state.pt`, a resume point written after every epoch (weights,
EMA, optimizer, random streams): the same command continues from it, so a run outlives the
session that started it.

    .venv-torch/bin/python benches/scripts/torch_fast.py --data DIR --model resnet-light --out ~/cifar-runs/torch-rl
"""
import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import MODELS  # noqa: E402  (the seed's seven models, parameter-checked there)

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)


def read_records(paths):
    raw = np.concatenate([np.fromfile(p, dtype=np.uint8).reshape(-1, 3073) for p in paths])
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    return torch.from_numpy(raw[:, 1:].copy()).view(-1, 3, 32, 32), labels


def seed_split(records, val=5000):
    """The seed's `np.random.seed(42); np.random.shuffle(indices)`: first `val` validate."""
    np.random.seed(42)
    idx = list(range(records))
    np.random.shuffle(idx)
    return torch.tensor(idx[val:]), torch.tensor(idx[:val])


def crop(batch_u8, pad, gen):
    """Zero-padded random crop, as floats 0–255: each offset uniform over 2 pad + 1 positions
    (torchvision's RandomCrop(32, padding=pad)), rows drawn before columns."""
    n = batch_u8.shape[0]
    x = F.pad(batch_u8.float(), (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(32)).view(n, 1, 32, 1).expand(n, 3, 32, 32 + 2 * pad)
    x = x.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(32)).view(n, 1, 1, 32).expand(n, 3, 32, 32)
    return x.gather(3, cols)


def normalise(batch):
    return ((batch.float() / 255.0 - MEAN) / STD).contiguous()


def augment(batch_u8, flips, pad, gen):
    """The crop, the given flips, normalisation."""
    x = crop(batch_u8, pad, gen)
    x[flips] = x[flips].flip(3)
    return normalise(x)


@torch.no_grad()
def accuracy(model, pixels, labels, batch=500):
    """Flip-TTA accuracy: the mean of the logits of the image and its mirror."""
    model.eval()
    right = 0
    for s in range(0, len(labels), batch):
        x = normalise(pixels[s:s + batch])
        logits = (model(x) + model(x.flip(3))) / 2
        right += (logits.argmax(1) == labels[s:s + batch]).sum().item()
    model.train()
    return right / len(labels)


class Ema:
    def __init__(self, model, decay):
        self.model, self.decay, self.updates = copy.deepcopy(model), decay, 0

    @torch.no_grad()
    def update(self, model):
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(cur, alpha=1 - d)
            else:
                avg.copy_(cur)
        self.updates += 1


def lr_at(step, total, warmup, peak, final_frac):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min((step - warmup) / max(total - warmup, 1), 1.0)
    return peak * (1 - (1 - final_frac) * p)


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with data_batch_1.bin ... test_batch.bin")
    ap.add_argument("--model", required=True, choices=list(MODELS))
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup-epochs", type=float, default=2.0)
    ap.add_argument("--final-lr-frac", type=float, default=0.0)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--crop-padding", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--train-images", type=int, help="train on the split's first N images only (a smoke run)")
    ap.add_argument("--out", required=True, help="run folder: metrics.jsonl, summary.json, flags.txt, state.pt")
    return ap.parse_args()


def train_epoch(a, model, ema, opt, pixels, labels, train_idx, epoch, step, gen, first_flip):
    steps_per_epoch = -(-len(train_idx) // a.batch)
    total, warmup = a.epochs * steps_per_epoch, round(a.warmup_epochs * steps_per_epoch)
    order = train_idx[torch.randperm(len(train_idx), generator=gen)]
    seen = right = loss_sum = 0
    for s in range(0, len(order), a.batch):
        idx = order[s:s + a.batch]
        flips = first_flip[idx] ^ (epoch % 2 == 1)
        x, y = augment(pixels[idx], flips, a.crop_padding, gen), labels[idx]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, warmup, a.lr, a.final_lr_frac)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=a.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
        step += 1
        seen += len(y)
        right += (logits.argmax(1) == y).sum().item()
        loss_sum += loss.item() * len(y)
    return step, loss_sum / seen, right / seen


def save_state(path, epochs, epochs_done, step, best, model, ema, opt, gen):
    state = {"epochs": epochs, "epochs_done": epochs_done, "step": step, "best": best, "model": model.state_dict(),
             "ema": ema.model.state_dict(), "ema_updates": ema.updates, "opt": opt.state_dict(),
             "gen": gen.get_state(), "torch_rng": torch.get_rng_state()}
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def keep_lines(path, n):
    """Drops lines past the first `n` (an epoch whose state was never saved), so a resumed
    run's metrics equal an uninterrupted one's."""
    if os.path.exists(path):
        lines = open(path).read().splitlines(keepends=True)[:n]
        with open(path, "w") as f:
            f.writelines(lines)


def load_state(path, epochs, model, ema, opt, gen):
    state = torch.load(path, weights_only=False)
    if state["epochs"] != epochs:
        sys.exit(f"{path} is a run of {state['epochs']} epochs, not --epochs {epochs}: the schedule depends on it")
    model.load_state_dict(state["model"])
    ema.model.load_state_dict(state["ema"])
    ema.updates = state["ema_updates"]
    opt.load_state_dict(state["opt"])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["best"], state["epochs_done"]


def main():
    a = parse()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    pixels, labels = read_records([os.path.join(a.data, f"data_batch_{i}.bin") for i in range(1, 6)])
    test_pixels, test_labels = read_records([os.path.join(a.data, "test_batch.bin")])
    train_idx, val_idx = seed_split(len(labels))
    train_idx = train_idx[:a.train_images] if a.train_images else train_idx
    val_pixels, val_labels = pixels[val_idx], labels[val_idx]
    first_flip = torch.rand(len(labels), generator=gen) < 0.5
    model = MODELS[a.model]().train()
    ema = Ema(model, a.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    step, best, first_epoch, started = 0, (-1.0, None, None, None), 0, time.perf_counter()
    os.makedirs(a.out, exist_ok=True)
    state_file, metrics_file = os.path.join(a.out, "state.pt"), os.path.join(a.out, "metrics.jsonl")
    with open(os.path.join(a.out, "flags.txt"), "w") as f:
        f.write(f"PyTorch {torch.__version__}: torch_fast.py --model {a.model} --epochs {a.epochs} --lr {a.lr} "
                f"--weight-decay {a.weight_decay} --warmup-epochs {a.warmup_epochs} --label-smoothing "
                f"{a.label_smoothing} --ema-decay {a.ema_decay} --crop-padding {a.crop_padding}\n")
    if os.path.exists(state_file):
        step, best, first_epoch = load_state(state_file, a.epochs, model, ema, opt, gen)
        print(f"resuming after epoch {first_epoch} of {a.epochs}", file=sys.stderr, flush=True)
    keep_lines(metrics_file, first_epoch)
    for epoch in range(first_epoch, a.epochs):
        t = time.perf_counter()
        step, loss, train_acc = train_epoch(a, model, ema, opt, pixels, labels, train_idx, epoch, step, gen, first_flip)
        seconds = time.perf_counter() - t
        raw, avg = accuracy(model, val_pixels, val_labels), accuracy(ema.model, val_pixels, val_labels)
        for acc, which, net in [(raw, "raw", model), (avg, "ema", ema.model)]:
            if acc > best[0]:
                best = (acc, which, epoch + 1, copy.deepcopy(net.state_dict()))
        line = {"epoch": epoch + 1, "train_loss": loss, "train_acc": train_acc, "val_acc": raw,
                "val_acc_ema": avg, "epoch_seconds": seconds, "train_img_s": len(train_idx) / seconds}
        print(json.dumps(line), flush=True)
        with open(metrics_file, "a") as f:
            f.write(json.dumps(line) + "\n")
        save_state(state_file, a.epochs, epoch + 1, step, best, model, ema, opt, gen)
    model.load_state_dict(best[3])
    test = accuracy(model, test_pixels, test_labels)
    summary = {"model": a.model, "epochs": a.epochs, "crop_padding": a.crop_padding,
               "best_val_acc": best[0], "evaluated_weights": best[1], "best_epoch": best[2],
               "test_acc": test, "minutes_this_session": (time.perf_counter() - started) / 60,
               "threads": a.threads, "torch": torch.__version__}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
