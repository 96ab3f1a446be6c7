#!/usr/bin/env python3
"""Validation accuracy of exported models with one more test-time view pair: the input moved one
pixel down and right (edges repeated, as `--tta flip-translate` does).

    .venv-tools/bin/python benches/scripts/tta_val.py DATA_DIR MODEL.onnx ...

For each model it prints the validation accuracy of the file as it is (its own TTA, named in its
metadata) and of the mean of its logits on the image and on the moved image. A model exported
with `--tta flip` therefore gives the `flip` and the `flip-translate` accuracies of the same
weights without retraining. The validation split is the trainer's (the seed's numpy shuffle with
seed 42, the first 5,000 indices); the test set is never read, so the result may choose a recipe.
"""
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from onnx_accuracy import RECORD, normalised  # noqa: E402  (the record layout and normalisation, written once)

VAL_SIZE, SPLIT_SEED = 5000, 42


def split(data_dir, start=0, count=VAL_SIZE):
    """Labels and pixels of `count` images from position `start` of the trainer's shuffled
    training files: the validation split from 0, the training split from VAL_SIZE on."""
    files = [f"{data_dir}/data_batch_{i}.bin" for i in range(1, 6)]
    records = np.concatenate([np.fromfile(f, dtype=np.uint8).reshape(-1, RECORD) for f in files])
    np.random.seed(SPLIT_SEED)
    order = np.arange(len(records))
    np.random.shuffle(order)
    chosen = records[order[start:start + count]]
    return chosen[:, 0].astype(np.int64), chosen[:, 1:].reshape(-1, 3, 32, 32)


def moved(x):
    """One pixel down and right, the first row and column repeated."""
    x = np.concatenate([x[:, :, :1], x[:, :, :-1]], 2)
    return np.concatenate([x[:, :, :, :1], x[:, :, :, :-1]], 3)


def logits(session, x, batch=500):
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    labels, pixels = split(sys.argv[1])
    for path in sys.argv[2:]:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        x = normalised(pixels, meta)
        own = logits(session, x)
        with_moved = (own + logits(session, moved(x))) / 2
        acc = lambda z: 100 * np.mean(z.argmax(1) == labels)
        print(f"{path}: own TTA ({meta.get('cifar.tta', 'none')}) {acc(own):.2f} %, "
              f"with the moved views {acc(with_moved):.2f} % validation accuracy")


if __name__ == "__main__":
    main()
