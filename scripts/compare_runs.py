#!/usr/bin/env python3
"""Validation loss against steps of several charrnn runs on one plot, and a table of where
they end: for comparing runs that differ in one setting (e.g. --precision f32 and bf16).

    python3 scripts/compare_runs.py RUN_DIR[=LABEL] ... --out curves.png

Reads each run's metrics.jsonl; needs matplotlib.
"""
import argparse
import json
import os


def curve(run: str):
    """(steps, validation losses) of a run directory's metrics.jsonl."""
    steps, losses = [], []
    for line in open(os.path.join(run, "metrics.jsonl")):
        m = json.loads(line)
        if m.get("val_loss") is not None:
            steps.append(m["step"])
            losses.append(m["val_loss"])
    return steps, losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories, each optionally =LABEL")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--title", default="validation loss")
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    print("| run | steps | last validation loss | best |")
    print("|---|---|---|---|")
    for spec in a.runs:
        run, _, label = spec.partition("=")
        steps, losses = curve(run)
        if not steps:
            raise SystemExit(f"{run}: no validation losses in metrics.jsonl")
        ax.plot(steps, losses, label=label or run)
        print(f"| {label or run} | {steps[-1]} | {losses[-1]:.4f} | {min(losses):.4f} |")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title(a.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
    main()
