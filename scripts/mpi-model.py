#!/usr/bin/env python3
"""The scaling model of docs/distributed.md (a model, not a measurement).

For a model of P parameters whose step takes C seconds of compute on one node (B streams),
N nodes each computing B streams (the global batch grows to N·B) take C + X(N) per step,
where X is the gradient exchange:

  ring all-reduce (bandwidth-optimal):  X = 2·(N−1)/N · 4P / W            + 2·(N−1)·a
  charrnn's chain (fixed order):        X = 2·(4P + (N−2)·4Q) / W          + 2·(N−1 + P/Q)·a

W is the network's bandwidth (bytes/s), a the latency of one message, Q the chain's piece
(65,536 values): the chain sums pieces along ranks 0 → N−1 and the last rank broadcasts the
total (a pipelined broadcast moves 4P once more per link). Speed-up = N·C / (C + X).
"B for 95%" is the batch per node at which X is 5% of the step (compute grows with B).

Usage: scripts/mpi-model.py NAME:P:C_SECONDS:B ...   e.g. rnn512:329281:0.0451:64
"""
import sys

Q = 65536
LAT = 20e-6  # one message over TCP on a datacentre network


def chain(n, p, w):
    if n == 1:
        return 0.0
    return 2 * (4 * p + max(n - 2, 0) * 4 * Q) / w + 2 * (n - 1 + p / Q) * LAT


def ring(n, p, w):
    return 2 * (n - 1) / n * 4 * p / w + 2 * (n - 1) * LAT


def main():
    nets = [(10, 10e9 / 8), (25, 25e9 / 8), (100, 100e9 / 8)]
    nodes = [2, 4, 8, 16, 32, 64]
    for spec in sys.argv[1:]:
        name, p, c, b = spec.split(":")
        p, c, b = int(p), float(c), int(b)
        print(f"\n{name}: P = {p:,}, C = {c * 1e3:.1f} ms per step at B = {b} per node\n")
        print("| network | exchange | " + " | ".join(f"N = {n}" for n in nodes) + " | B for 95% at N = 64 |")
        print("|---|---|" + "---|" * len(nodes) + "---|")
        for gbit, w in nets:
            for label, x in (("chain", chain), ("ring", ring)):
                cells = [f"{n * c / (c + x(n, p, w)):.1f}×" for n in nodes]
                b95 = b * x(64, p, w) / (0.05 * c)
                print(f"| {gbit} Gb/s | {label} | " + " | ".join(cells) + f" | {b95:.0f} |")


main()
