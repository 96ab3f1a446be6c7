#!/usr/bin/env python3
"""How well exported models fit their training images against how well they generalise: the
accuracy on clean (unaugmented) images of the trainer's training split beside the validation
accuracy, and the gap between them.

    .venv-tools/bin/python benches/scripts/fit_gap.py DATA_DIR MODEL.onnx ... [--train-images N]

A recipe whose model scores little more on its own training images than on validation
under-fits: a milder augmentation or less regularisation may help it. One that scores far more
over-fits. The test set is never read, so the result may choose a recipe. Each file runs as
exported (with its own test-time augmentation, named in its metadata).
"""
import argparse

import numpy as np
import onnxruntime as ort

from tta_val import VAL_SIZE, logits, normalised, split


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--train-images", type=int, default=10000, help="training images scored (from the split's start)")
    a = ap.parse_args()
    sets = {"train": split(a.data_dir, VAL_SIZE, a.train_images), "val": split(a.data_dir)}
    print("| model | TTA | clean train % | val % | gap (points) |")
    print("|---|---|---:|---:|---:|")
    for path in a.models:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        acc = {}
        for name, (labels, pixels) in sets.items():
            acc[name] = 100 * np.mean(logits(session, normalised(pixels, meta)).argmax(1) == labels)
        print(f"| {path} | {meta.get('cifar.tta', 'none')} | {acc['train']:.2f} | {acc['val']:.2f} | {acc['train'] - acc['val']:.2f} |")


if __name__ == "__main__":
    main()
