#!/usr/bin/env python3
"""Classifies a run's test images with its exported ONNX graph in this Python's onnxruntime
(any version, CPU) and compares the accuracy with the one the run measured itself.

gpu-check.sh uses it on the lent GPU machine, where the ONNX Runtime library `train` links
(1.31) may not fit the carry but a CPU onnxruntime is installed: the network trained and
evaluated on CUDA must classify the same images the same way once exported and run on the CPU.
A few images near a tie may flip between the two devices, hence the tolerance.

    onnx_accuracy.py RUN_DIR DATA_DIR [--tolerance 0.01]   # prints one JSON line; exit 1 if off
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

RECORD = 1 + 3 * 32 * 32  # label byte + CHW pixels (the official binary layout)


def test_images(data_dir: Path, count: int):
    raw = np.fromfile(data_dir / "test_batch.bin", dtype=np.uint8).reshape(-1, RECORD)[:count]
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def normalised(pixels, props):
    mean = np.array(json.loads(props["cifar.mean"]), dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(json.loads(props["cifar.std"]), dtype=np.float32).reshape(1, 3, 1, 1)
    return ((pixels.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--tolerance", type=float, default=0.01, help="largest accuracy difference (fraction)")
    a = ap.parse_args()
    summary = json.loads((a.run_dir / "summary.json").read_text())
    session = ort.InferenceSession(str(a.run_dir / summary["onnx"]), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    pixels, labels = test_images(a.data_dir, summary["test_images"])
    x = normalised(pixels, props)
    predicted = np.concatenate([session.run(["logits"], {"input": x[i:i + 64]})[0].argmax(1) for i in range(0, len(x), 64)])
    onnx_acc = float((predicted == labels).mean())
    result = {
        "onnxruntime": ort.__version__,
        "images": int(len(labels)),
        "onnx_test_acc": onnx_acc,
        "run_test_acc": summary["test_acc"],
        "run_device": summary["device"],
        "difference": abs(onnx_acc - summary["test_acc"]),
        "tolerance": a.tolerance,
    }
    print(json.dumps(result))
    sys.exit(0 if result["difference"] <= a.tolerance else 1)


if __name__ == "__main__":
    main()
