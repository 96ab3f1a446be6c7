#!/usr/bin/env python3
"""gpu-check.sh's report: every step's outcome and every measurement in OUT/gpu-check.json,
and the ours / PyTorch table in OUT/gpu-check.md.

    gpu_check_report.py WORK OUT MODE DRIVER_CUDA

WORK holds what the steps wrote: steps.jsonl, ours-<build>-<precision>.jsonl (`train speed`),
torch-<precision>.jsonl (torch_step.py), ptx-<build>.txt, e2e-summary.json, e2e-onnx.json
(onnx_accuracy.py).
"""
import json
import pathlib
import platform
import sys

MODELS = ["vgg", "resnet-light", "resnet-heavy", "resnext-small", "resnext-large", "densenet-small", "densenet-large"]


def json_lines(path):
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by a timeout
    return rows


def load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def measurements(work):
    ours = {}
    for f in sorted(work.glob("ours-*.jsonl")):
        build, precision = f.stem[len("ours-train-"):].rsplit("-", 1)
        ours[f"{build} {precision}"] = json_lines(f)
    torch = {f.stem[len("torch-"):]: json_lines(f) for f in sorted(work.glob("torch-*.jsonl"))}
    return ours, torch


def ratio_rows(ours, torch):
    """One row per model and precision: img/s of each of our builds and of PyTorch, and ours / PyTorch."""
    rows = []
    for precision in ["f32", "bf16"]:
        theirs = {r["model"]: r for r in torch.get(precision, [])}
        builds = {k.split()[0]: {r["model"]: r for r in v} for k, v in ours.items() if k.endswith(" " + precision)}
        if not builds:
            continue
        for model in MODELS:
            row = {"model": model, "precision": precision, "torch_img_s": theirs.get(model, {}).get("img_s")}
            for build, by_model in builds.items():
                r = by_model.get(model)
                row[f"{build}_img_s"] = r and r["img_s"]
                row[f"{build}_learns"] = r and r["learns"]
                t = row["torch_img_s"]
                row[f"{build}_ratio"] = r and t and r["img_s"] / t
            rows.append(row)
    return rows


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def markdown(summary):
    rows = summary["ratios"]
    builds = sorted({k[: -len("_img_s")] for r in rows for k in r if k.endswith("_img_s") and k != "torch_img_s"})
    head = ["model", "precision"] + [f"{b} img/s" for b in builds] + ["PyTorch img/s"] + [f"{b} / PyTorch" for b in builds]
    lines = [
        f"# GPU check ({summary['mode']})",
        "",
        f"GPU: {summary['gpu'] or 'none'}; driver CUDA {summary['driver_cuda']}; host {summary['host']}.",
        "Training steps at batch %s (median of %s after %s warm-up), synthetic data: speed, not accuracy."
        % (summary["sizes"].get("batch_size"), summary["sizes"].get("steps"), summary["sizes"].get("warmup")),
        "PyTorch: eager f32; bf16 = autocast + channels_last, cudnn.benchmark on.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * 2 + "---:|" * (len(head) - 2),
    ]
    for r in rows:
        cells = [r["model"], r["precision"]]
        cells += [fmt(r.get(f"{b}_img_s"), ",.0f") + ("" if r.get(f"{b}_learns") in (None, True) else " (loss not falling)") for b in builds]
        cells += [fmt(r["torch_img_s"], ",.0f")] + [fmt(r.get(f"{b}_ratio"), ".2f") for b in builds]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| step | status | s | detail |", "|---|---|---:|---|"]
    for s in summary["steps"]:
        lines.append(f"| {s['step']} | {s['status']} | {s['seconds']} | {s['detail'][:120].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main():
    work, out, mode, driver_cuda = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    steps = json_lines(work / "steps.jsonl")
    ours, torch = measurements(work)
    first = next((r for rows in ours.values() for r in rows), {})
    e2e = load(work / "e2e-summary.json")
    summary = {
        "schema_version": 2,
        "mode": mode,
        "data": "synthetic (speed only; the real set cannot travel)",
        "gpu": next((s["detail"] for s in steps if s["step"] == "gpu"), None),
        "driver_cuda": driver_cuda,
        "host": platform.node(),
        "sizes": {k: first.get(k) for k in ["batch_size", "steps", "warmup"]},
        "ptx": {f.stem[len("ptx-train-"):]: f.read_text().strip() for f in sorted(work.glob("ptx-*.txt"))},
        "ours": ours,
        "torch": torch,
        "ratios": ratio_rows(ours, torch),
        "e2e": e2e and {k: e2e.get(k) for k in ["model", "device", "epochs", "mean_train_img_s", "test_acc", "onnx_parity_max_abs_diff"]},
        "e2e_onnx": load(work / "e2e-onnx.json"),
        "steps": steps,
    }
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "gpu-check.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
