#!/usr/bin/env python3
"""Table and time-to-accuracy chart of finished (or running) `train` runs, side by side.

    runs_report.py --title TITLE --cpu CPU --md OUT.md --svg OUT.svg [--test] NAME=RUN_DIR ...

RUN_DIR is a run folder (the one holding metrics.jsonl). Each run's accuracy per epoch is the
better of its raw weights and their EMA on validation, against cumulative minutes of training
and validation. The flags column is flags.txt in RUN_DIR or the folder above (the sweep writes it), else
the recipe's preset and schedule. --test adds the test accuracy of runs that finished: for
reporting finished runs only; the sweep never passes it (recipes are chosen on validation).
"""
import argparse
import json
import os

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]


def load_run(name, run_dir):
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    accs = [max(r["val_acc"], r.get("val_acc_ema", 0.0)) for r in rows]
    minutes, t = [], 0.0
    for r in rows:
        t += r["epoch_seconds"] / 60
        minutes.append(t)
    flags_files = [f for f in (os.path.join(run_dir, "flags.txt"), os.path.join(run_dir, os.pardir, "flags.txt")) if os.path.exists(f)]
    if flags_files:
        flags = open(flags_files[0]).read().strip()
    else:
        recipe = json.load(open(os.path.join(run_dir, "recipe.json")))
        flags = f"--recipe {recipe.get('preset') or 'seed'} --epochs {recipe['epochs']} (schedule {recipe.get('schedule', 'multistep')})"
    summary_file = os.path.join(run_dir, "summary.json")
    test = json.load(open(summary_file))["test_acc"] if os.path.exists(summary_file) else None
    return {"name": name, "flags": flags, "accs": accs, "minutes": minutes, "test": test}


def table(runs, title, cpu, with_test):
    test_head, test_rule = (" test % |", "---:|") if with_test else ("", "")
    lines = [f"# {title}", "", f"CPU: {cpu}. Validation accuracy: best epoch, raw weights or their EMA.", "",
             f"| rank | run | epochs | best val % | final val % |{test_head} train + val minutes | flags |",
             f"|---:|---|---:|---:|---:|{test_rule}---:|---|"]
    for i, r in enumerate(runs, 1):
        test = ""
        if with_test:
            test = f" {100 * r['test']:.2f} |" if r["test"] is not None else " — |"
        lines.append(f"| {i} | {r['name']} | {len(r['accs'])} | {100 * max(r['accs']):.2f} | {100 * r['accs'][-1]:.2f} |"
                     f"{test} {r['minutes'][-1]:.1f} | `{r['flags']}` |")
    return "\n".join(lines) + "\n"


def chart(runs, title, x_axis):
    W, H, L, B = 640, 400, 60, 50
    xs_of = (lambda r: r["minutes"]) if x_axis == "minutes" else (lambda r: list(range(1, len(r["accs"]) + 1)))
    tmax = max(xs_of(r)[-1] for r in runs) or 1
    amax = min(1.0, max(max(r["accs"]) for r in runs) + 0.05)
    amin = max(0.0, min(min(r["accs"]) for r in runs) - 0.05)
    x = lambda t: L + (W - L - 20) * t / tmax
    y = lambda a: H - B - (H - B - 30) * (a - amin) / (amax - amin)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - 20}" y2="{H - B}" stroke="black"/><line x1="{L}" y1="30" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">{"minutes (training and validation)" if x_axis == "minutes" else "epochs"}</text>',
           f'<text x="16" y="{H / 2}" transform="rotate(-90 16 {H / 2})" text-anchor="middle">validation accuracy</text>']
    for k in range(6):
        a = amin + (amax - amin) * k / 5
        t = tmax * k / 5
        svg.append(f'<text x="{L - 6}" y="{y(a) + 4:.1f}" text-anchor="end">{100 * a:.0f}%</text>')
        svg.append(f'<text x="{x(t):.1f}" y="{H - B + 16}" text-anchor="middle">{t:.0f}</text>')
    for i, r in enumerate(runs):
        c = COLORS[i % len(COLORS)]
        pts = " ".join(f"{x(t):.1f},{y(a):.1f}" for t, a in zip(xs_of(r), r["accs"]))
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        svg.append(f'<text x="{L + 10}" y="{40 + 16 * i}" fill="{c}">{r["name"]}: {100 * max(r["accs"]):.1f}%</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--title", required=True)
    p.add_argument("--cpu", required=True, help="the CPU model the runs trained on")
    p.add_argument("--md", required=True)
    p.add_argument("--svg", required=True)
    p.add_argument("--x", choices=["minutes", "epochs"], default="minutes",
                   help="the chart's horizontal axis: minutes (time to accuracy; runs must have had the cores alike) or epochs")
    p.add_argument("--test", action="store_true", help="add finished runs' test accuracy (reporting only)")
    p.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    args = p.parse_args()
    runs = []
    for spec in args.runs:
        name, _, run_dir = spec.partition("=")
        if not run_dir or not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
            p.error(f"{spec}: expected NAME=RUN_DIR with RUN_DIR/metrics.jsonl")
        runs.append(load_run(name, run_dir))
    runs.sort(key=lambda r: -max(r["accs"]))
    md = table(runs, args.title, args.cpu, args.test)
    open(args.md, "w").write(md)
    open(args.svg, "w").write(chart(runs, f"{args.title} ({args.cpu})", args.x))
    print(md, end="")


if __name__ == "__main__":
    main()
