#!/usr/bin/env python3
"""Compare two charrnn model files: every tensor's bytes and every metadata entry.

Usage: scripts/same-model.py A.safetensors B.safetensors [--ignore KEY ...]
Exits 0 when they hold the same run, bit for bit; 1 (naming the differences) otherwise.
Metadata order and layout inside the file may differ: safetensors writes a map.
"""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {
        name: data[base + t["data_offsets"][0] : base + t["data_offsets"][1]]
        for name, t in header.items()
    }
    return meta, tensors


def main():
    args = sys.argv[1:]
    ignore = set()
    while "--ignore" in args:
        i = args.index("--ignore")
        ignore.add(args[i + 1])
        del args[i : i + 2]
    (ma, ta), (mb, tb) = read(args[0]), read(args[1])
    diffs = [f"tensor {k}" for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)]
    for k in sorted((set(ma) | set(mb)) - ignore):
        a, b = ma.get(k), mb.get(k)
        try:
            a, b = json.loads(a), json.loads(b)
        except (TypeError, ValueError):
            pass  # plain strings (the format's name) compare as they are
        if a != b:
            diffs.append(f"metadata {k}")
    if diffs:
        print("differ: " + ", ".join(diffs))
        sys.exit(1)
    print(f"same: {len(ta)} tensors, {len(ma)} metadata entries")


main()
