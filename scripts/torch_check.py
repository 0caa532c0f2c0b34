#!/usr/bin/env python3
"""Load a charrnn model file into PyTorch and check that both give the same loss on a text.

The model file's tensors are mapped onto nn.RNN / nn.GRU / nn.LSTM plus an nn.Linear head
(the mapping is documented in docs/pytorch.md; `--show-mapping` prints the one used for a
file), the text is encoded with the model's own vocabulary and laid out exactly as
`charrnn eval` lays it out (B contiguous streams, each from a zero state, every symbol but a
stream's first predicted), the loss is computed in float64, and `charrnn eval --json` is run
on the same file and text. One JSON line reports both losses and their relative difference;
the exit status is 1 when the difference exceeds --tolerance (or the two counted a different
number of predictions), 2 on bad input, 0 otherwise.

Handles format version 1 (one vanilla layer: W_xh, W_hh, b_h, W_hy, b_y) and version 2
(an explicit embedding's embed, layers.<l>.W_ih, layers.<l>.W_hh, layers.<l>.b, a GRU's
layers.<l>.b_hn, W_hy, b_y) files
of every cell (rnn, gru, lstm) and any number of layers. Needs torch (CPU is enough); the
safetensors file is parsed by hand, so nothing else is needed.

Usage example:

    python3 scripts/torch_check.py --model runs/x/model.safetensors val.txt \\
        --charrnn target/release/charrnn --batch 64 --tolerance 1e-4

    python3 scripts/torch_check.py --model runs/x/model.safetensors --show-mapping
"""

import argparse
import array
import json
import math
import subprocess
import sys

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("torch_check.py needs PyTorch: pip install torch (the CPU build is enough)")

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
TORCH_CLASS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
GATE_NAMES = {"rnn": ["h"], "gru": ["r", "z", "n"], "lstm": ["i", "f", "g", "o"]}
V1_NAMES = {"layers.0.W_ih": "W_xh", "layers.0.W_hh": "W_hh", "layers.0.b": "b_h"}


class InputError(Exception):
    """Bad model file, text or arguments: reported on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------------
# The model file


def read_safetensors(path):
    """(tensor headers, metadata, raw data) of a safetensors file.

    Layout: an 8-byte little-endian header length N, N bytes of JSON (name -> {dtype, shape,
    data_offsets}, plus an optional "__metadata__" of strings), then the tensors' bytes, with
    data_offsets relative to the start of that data.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputError(f"cannot read model file {path}: {e}") from e
    if len(raw) < 8:
        raise InputError(f"{path}: too short to be a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise InputError(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: the header is not JSON ({e}); not a safetensors file") from e
    meta = header.pop("__metadata__", None) or {}
    return header, meta, memoryview(raw)[8 + n :]


def f32_tensor(headers, data, name, shape, path):
    """Tensor `name` as a float64 torch tensor of `shape`, checked to be F32 of that shape."""
    h = headers.get(name)
    if h is None:
        raise InputError(f"{path}: tensor `{name}` is missing")
    if h.get("dtype") != "F32" or list(h.get("shape", [])) != list(shape):
        raise InputError(
            f"{path}: tensor `{name}` is {h.get('dtype')} {h.get('shape')}, "
            f"expected F32 {list(shape)}"
        )
    start, end = h["data_offsets"]
    count = math.prod(shape)
    if end - start != 4 * count or end > len(data):
        raise InputError(f"{path}: tensor `{name}` has bad data offsets {h['data_offsets']}")
    values = array.array("f")
    values.frombytes(data[start:end])
    if sys.byteorder == "big":
        values.byteswap()  # the file is little-endian
    return torch.frombuffer(values, dtype=torch.float32).to(torch.float64).reshape(shape)


class CharrnnModel:
    """What a charrnn model file holds that evaluation needs."""

    def __init__(self, path):
        self.path = path
        headers, meta, data = read_safetensors(path)
        if meta.get("format") != "charrnn":
            raise InputError(f"{path}: metadata `format` is {meta.get('format')!r}, not 'charrnn'")
        self.version = meta.get("format_version")
        if self.version not in ("1", "2"):
            raise InputError(f"{path}: format_version {self.version!r}; this script reads 1 and 2")

        def field(key):
            if key not in meta:
                raise InputError(f"{path}: metadata has no `{key}` entry")
            try:
                return json.loads(meta[key])
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: metadata `{key}` is malformed: {e}") from e

        model = field("model")
        self.vocab_size = int(model["vocab"])
        self.hidden = int(model["hidden"])
        self.cell = str(model.get("cell", "rnn")).lower()
        self.layers = int(model.get("layers", 1))
        # An explicit embedding table (V, E) in front of layer 0, or None (folded into W_ih).
        self.embed = int(model["embed"]) if model.get("embed") is not None else None
        if self.cell not in GATES:
            raise InputError(f"{path}: unknown cell {self.cell!r}")
        if self.version == "1" and (self.cell != "rnn" or self.layers != 1):
            raise InputError(f"{path}: a version-1 file holds one vanilla layer")
        vocab = field("vocab")
        self.kind = str(vocab["kind"]).lower()
        if self.kind not in ("chars", "bytes"):
            raise InputError(f"{path}: unknown vocabulary kind {vocab['kind']!r}")
        self.symbols = [int(s) for s in vocab["symbols"]]
        if len(self.symbols) != self.vocab_size:
            raise InputError(
                f"{path}: the vocabulary has {len(self.symbols)} symbols, "
                f"the model V={self.vocab_size}"
            )
        self.seq_len = int(field("config")["seq_len"])

        # The parameters, under their version-2 names whatever the file's version.
        self.params = {}
        self.file_names = {}
        for name, shape in self.layout():
            fname = V1_NAMES.get(name, name) if self.version == "1" else name
            self.file_names[name] = fname
            self.params[name] = f32_tensor(headers, data, fname, shape, path)

    def layout(self):
        """(version-2 name, shape) of every parameter, in the file's layout order."""
        v, h, g = self.vocab_size, self.hidden, GATES[self.cell]
        out = []
        if self.embed is not None:
            out.append(("embed", (v, self.embed)))
        for l in range(self.layers):
            width = (v if self.embed is None else self.embed) if l == 0 else h
            out.append((f"layers.{l}.W_ih", (width, g * h)))
            out.append((f"layers.{l}.W_hh", (h, g * h)))
            out.append((f"layers.{l}.b", (g * h,)))
            if self.cell == "gru":
                out.append((f"layers.{l}.b_hn", (h,)))
        out.append(("W_hy", (h, v)))
        out.append(("b_y", (v,)))
        return out

    def encode(self, raw, name):
        """The text's symbol ids under the model's vocabulary (InputError on an unknown one)."""
        index = {s: i for i, s in enumerate(self.symbols)}
        if self.kind == "chars":
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{name}: invalid UTF-8 at byte {e.start} (the model reads characters)"
                ) from e
            symbols = [ord(c) for c in text]
        else:
            symbols = list(raw)
        ids = [index.get(s, -1) for s in symbols]
        if -1 in ids:
            pos = ids.index(-1)
            unknown = sorted({s for s, i in zip(symbols, ids) if i < 0})
            shown = ", ".join(describe(s, self.kind) for s in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise InputError(
                f"{name}: {len(unknown)} symbol(s) not in the model's vocabulary of "
                f"{self.vocab_size}: {shown}{more}; the first is at symbol {pos} "
                f"(line {symbols[:pos].count(10) + 1}). Cut the text to before it "
                "or use a model trained on text that contains it."
            )
        return ids


def describe(symbol, kind):
    if kind == "bytes":
        return f"byte 0x{symbol:02x}"
    return f"U+{symbol:04X} {chr(symbol)!r}"


# ---------------------------------------------------------------------------------------------
# The PyTorch model and the mapping


class TorchCharLm(nn.Module):
    """One-hot input -> nn.RNN/GRU/LSTM (input_size V) -> nn.Linear(H, V); with an explicit
    embedding, nn.Embedding(V, E) -> nn.RNN/GRU/LSTM (input_size E) -> nn.Linear(H, V)."""

    def __init__(self, cell, vocab, hidden, layers, embed=None):
        super().__init__()
        kind = getattr(nn, TORCH_CLASS[cell])
        extra = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.vocab = vocab
        self.embedding = nn.Embedding(vocab, embed) if embed is not None else None
        width = vocab if embed is None else embed
        self.rnn = kind(width, hidden, num_layers=layers, bias=True, **extra)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state):
        """ids (T, B) -> logits (T, B, V) and the state after the last step."""
        if self.embedding is None:
            x = nn.functional.one_hot(ids, self.vocab).to(self.head.weight.dtype)
        else:
            x = self.embedding(ids)
        hs, state = self.rnn(x, state)
        return self.head(hs), state


def mapping(m):
    """Rows (charrnn name or None, PyTorch state_dict key, transform, the PyTorch tensor).

    charrnn names are the version-2 ones (`m.file_names` has what the file calls them).
    """
    h, g, p = m.hidden, GATES[m.cell], m.params
    rows = []
    if m.embed is not None:
        rows.append(("embed", "embedding.weight", "as is", p["embed"].clone()))
    for l in range(m.layers):
        rnn, src = f"rnn.{{}}_l{l}", f"layers.{l}.{{}}"
        rows.append((src.format("W_ih"), rnn.format("weight_ih"), "transpose",
                     p[src.format("W_ih")].t()))
        rows.append((src.format("W_hh"), rnn.format("weight_hh"), "transpose",
                     p[src.format("W_hh")].t()))
        rows.append((src.format("b"), rnn.format("bias_ih"), "as is", p[src.format("b")].clone()))
        bias_hh = torch.zeros(g * h, dtype=torch.float64)
        if m.cell == "gru":
            # The n gate's hidden-side bias sits inside r * (h W_hn + b_hn): it stays apart.
            bias_hh[2 * h :] = p[src.format("b_hn")]
            rows.append((src.format("b_hn"), rnn.format("bias_hh"),
                         f"n block [{2 * h}:{3 * h}], rest 0", bias_hh))
        else:
            rows.append((None, rnn.format("bias_hh"), "zeros (b already holds the whole bias)",
                         bias_hh))
    rows.append(("W_hy", "head.weight", "transpose", m.params["W_hy"].t()))
    rows.append(("b_y", "head.bias", "as is", m.params["b_y"].clone()))
    return rows


def build_torch_model(m):
    """The float64 PyTorch model holding the file's weights (load_state_dict is strict)."""
    model = TorchCharLm(m.cell, m.vocab_size, m.hidden, m.layers, m.embed).double()
    state = {key: t.contiguous() for _, key, _, t in mapping(m)}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def show_mapping(m):
    gates = ", ".join(GATE_NAMES[m.cell])
    print(
        f"# {m.path}: format_version {m.version}, {m.cell} x {m.layers} layer(s), "
        f"V={m.vocab_size} H={m.hidden}, gate blocks ({gates}) in columns of width {m.hidden}"
    )
    if m.embed is None:
        front, width = "fed one-hot (T, B, V) inputs", m.vocab_size
    else:
        front, width = f"after embedding = nn.Embedding({m.vocab_size}, {m.embed})", m.embed
    print(
        f"# PyTorch: rnn = nn.{TORCH_CLASS[m.cell]}({width}, {m.hidden}, "
        f"num_layers={m.layers}) {front}; "
        f"head = nn.Linear({m.hidden}, {m.vocab_size})"
    )
    for name, key, how, t in mapping(m):
        if name is None:
            src, shape = "-", "-"
        else:
            src = m.file_names[name]
            if src != name:
                src = f"{src} (v1 name of {name})"
            shape = "x".join(str(s) for s in m.params[name].shape)
        dst = "x".join(str(s) for s in t.shape)
        print(f"{src:<32} ({shape:>9}) -> {key:<18} ({dst:>9}) {how}")
    state = "(L, B, 2H: h then c)" if m.cell == "lstm" else "(L, B, H)"
    if m.version == "1":
        state = "(B, H)"
    print(
        f"{'optim.m.*, optim.v.*':<32} {'':>11} -> not loaded (optimizer state)\n"
        f"{'state.h' if m.version == '1' else 'state':<32} {'':>11} -> not loaded (the training "
        f"streams' carried state, {state}; eval starts every stream from zeros)"
    )


# ---------------------------------------------------------------------------------------------
# Evaluation, laid out as `charrnn eval` lays it out


@torch.no_grad()
def torch_loss(model, m, ids, max_batch):
    """(mean loss in nats per predicted symbol, predictions, streams) over `ids`.

    batch = clamp(n / (seq_len + 1), 1, max_batch); stream b holds ids[b*S : (b+1)*S] with
    S = n // batch; each stream starts from a zero state and carries it through; positions
    1..S-1 of every stream are predicted.
    """
    n = len(ids)
    if n < 2:
        raise InputError(f"the text has {n} symbol(s); at least 2 are needed")
    batch = min(max(n // (m.seq_len + 1), 1), max(max_batch, 1))
    per = n // batch
    data = torch.tensor(ids[: per * batch], dtype=torch.long).view(batch, per).t()  # (S, B)
    zeros = torch.zeros(m.layers, batch, m.hidden, dtype=torch.float64)
    state = (zeros, zeros.clone()) if m.cell == "lstm" else zeros
    # Steps per forward call, so that the one-hot inputs stay near 2^22 numbers (32 MiB).
    chunk = max(1, min(1024, (1 << 22) // (batch * m.vocab_size)))
    total = 0.0
    for p in range(0, per - 1, chunk):
        x = data[p : min(p + chunk, per - 1)]
        y = data[p + 1 : p + 1 + x.shape[0]]
        logits, state = model(x, state)
        total += nn.functional.cross_entropy(
            logits.reshape(-1, m.vocab_size), y.reshape(-1), reduction="sum"
        ).item()
    count = (per - 1) * batch
    return total / count, count, batch


def charrnn_loss(binary, model_path, text_path, batch, threads):
    cmd = [binary, "eval", "--model", model_path, text_path, "--batch", str(batch), "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise InputError(f"cannot run {binary}: {e} (build it, or pass --charrnn PATH)") from e
    if run.returncode != 0:
        raise InputError(f"`{' '.join(cmd)}` failed ({run.returncode}):\n{run.stderr.strip()}")
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as e:
        raise InputError(f"`{' '.join(cmd)}` did not end with a JSON line: {run.stdout!r}") from e


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("text", nargs="?", help="text to evaluate on (optional with --show-mapping)")
    ap.add_argument("--model", required=True, help="charrnn model file (safetensors)")
    ap.add_argument("--charrnn", default="target/release/charrnn", help="charrnn binary")
    ap.add_argument("--batch", type=int, default=64,
                    help="at most this many streams (as eval's --batch)")
    ap.add_argument("--tolerance", type=float, default=1e-4,
                    help="largest relative difference accepted")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for PyTorch and for charrnn eval")
    ap.add_argument("--show-mapping", action="store_true", help="print the tensor mapping used")
    ap.add_argument("--no-charrnn", action="store_true", help="only compute the PyTorch loss")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))

    try:
        m = CharrnnModel(args.model)
        if args.show_mapping:
            show_mapping(m)
        if args.text is None:
            if args.show_mapping:
                return 0
            raise InputError("give a TEXT to evaluate on (or only --show-mapping)")
        if args.batch < 1:
            raise InputError("--batch must be at least 1")
        try:
            with open(args.text, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise InputError(f"cannot read {args.text}: {e}") from e
        ids = m.encode(raw, args.text)
        model = build_torch_model(m)
        loss, count, batch = torch_loss(model, m, ids, args.batch)
        report = {
            "model": args.model,
            "format_version": int(m.version),
            "cell": m.cell,
            "layers": m.layers,
            "hidden": m.hidden,
            "vocab": m.vocab_size,
            "streams": batch,
            "chars": count,
            "torch_loss": loss,
        }
        if args.no_charrnn:
            print(json.dumps(report))
            return 0
        ref = charrnn_loss(args.charrnn, args.model, args.text, args.batch, args.threads)
    except InputError as e:
        print(f"torch_check: {e}", file=sys.stderr)
        return 2

    theirs = float(ref["loss"])
    rel = abs(theirs - loss) / abs(loss) if loss != 0 else abs(theirs - loss)
    same_count = int(ref.get("chars", -1)) == count
    report.update(
        {
            "charrnn_loss": theirs,
            "charrnn_chars": ref.get("chars"),
            "abs_diff": abs(theirs - loss),
            "rel_diff": rel,
            "tolerance": args.tolerance,
        }
    )
    report["ok"] = bool(same_count and rel <= args.tolerance)
    print(json.dumps(report))
    if not same_count:
        print(
            f"torch_check: charrnn counted {ref.get('chars')} predictions, PyTorch {count}: "
            "the two lay the text out differently",
            file=sys.stderr,
        )
    elif not report["ok"]:
        print(f"torch_check: relative difference {rel:.3g} exceeds {args.tolerance:g}",
              file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
