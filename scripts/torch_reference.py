#!/usr/bin/env python3
"""The peer's number: the same char-level task trained with PyTorch's nn.RNN / nn.GRU / nn.LSTM.

nn.Embedding(V, E) -> nn.RNN(tanh) / nn.GRU / nn.LSTM(E, H, num_layers=L, dropout=P) ->
nn.Dropout(P) -> nn.Linear(H, V) (E = H unless --embed or --one-hot; the dropout is charrnn's
--dropout: on every layer's output, i.e. between layers and before the head, none on the
input), stateful truncated BPTT over B contiguous streams (the layout charrnn uses; the state,
h or the LSTM's (h, c), is carried from chunk to chunk and detached, and reset to zero at each
epoch), mean cross-entropy, Adam, global-norm clipping, validation on the last --val-frac of
the corpus as up to 64 streams from a zero state (as `charrnn train` measures it).
Prints one JSON line per evaluation: {"epoch", "step", "train_loss", "val_loss", "secs",
"train_secs"} (train_secs: seconds of training steps only, evaluation excluded), after every
epoch or, with --eval-every N, every N steps. --target-loss X stops at the first evaluation
with val_loss <= X (time to a target loss, as `charrnn train --target-loss`); with
--val-screen K it screens its evaluations as charrnn does (K of the 64 validation streams;
the whole part only within --screen-margin of the target, the gap taken at the last whole
evaluation; a screened-only line has "screen_loss" and "val_loss": null). --bf16 runs
the forward pass under torch.autocast("cpu", dtype=torch.bfloat16) (oneDNN's bf16 kernels:
AMX or AVX512-BF16 where the CPU has them), the backward in the matching precisions, with
fp32 weights and Adam state: PyTorch's fastest recipe on such CPUs.

With --bench-steps N it trains no epochs and evaluates nothing: it runs N warm-up steps, then
times N training steps (forward + backward + clip + optimizer step) and prints one JSON line
{"cell", "layers", "hidden", "batch", "seq_len", "threads", "chars_per_sec", "steps", "secs",
"torch_version", "mkldnn_enabled"}, chars_per_sec = N·B·T / secs. --no-mkldnn sets
torch.backends.mkldnn.enabled = False (on CPU PyTorch's LSTM runs on oneDNN when it is on).

Needs torch (`pip install torch`); not part of the test suite. Examples:

    python3 scripts/torch_reference.py data/tinyshakespeare.txt --hidden 512 \\
        --batch 64 --seq-len 64 --lr 2e-3 --epochs 30 --threads 1

    # gated cells, stacked layers, dropout between layers and before the head
    python3 scripts/torch_reference.py data/tinyshakespeare.txt --cell lstm \\
        --layers 2 --dropout 0.2 --hidden 512 --batch 64 --seq-len 64 --lr 2e-3 --epochs 30
    python3 scripts/torch_reference.py data/tinyshakespeare.txt --cell gru \\
        --hidden 512 --batch 64 --seq-len 64 --lr 2e-3 --epochs 30 --threads 1

    # training throughput: 20 warm-up steps, then 20 timed ones (add --no-mkldnn to compare)
    python3 scripts/torch_reference.py data/tinyshakespeare.txt --cell lstm \\
        --hidden 512 --batch 64 --seq-len 64 --threads 1 --bench-steps 20
"""

import argparse
import copy
import json
import math
import time

import torch
from torch import nn


def xavier(model, hidden: int):
    """charrnn's --init xavier: every gate block (H rows) of every recurrent weight, and the
    output weight, from U(+-sqrt(6 / (fan_in + fan_out))); every bias 0."""

    def glorot(block):
        bound = math.sqrt(6.0 / (block.shape[0] + block.shape[1]))
        block.uniform_(-bound, bound)

    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            if name.startswith("bias"):
                p.zero_()
            else:
                for block in p.split(hidden, dim=0):
                    glorot(block)
        glorot(model.out.weight)
        model.out.bias.zero_()


class CharRnn(nn.Module):
    """Embedding -> RNN (tanh) / GRU / LSTM, `layers` deep -> dropout -> linear logits."""

    def __init__(
        self,
        vocab: int,
        embed: int,
        hidden: int,
        cell: str = "rnn",
        layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.cell, self.layers, self.hidden = cell, layers, hidden
        self.embed = nn.Embedding(vocab, embed)
        # PyTorch's `dropout=` acts between layers only (and warns when there is one layer).
        between = dropout if layers > 1 else 0.0
        if cell == "rnn":
            self.rnn = nn.RNN(
                embed, hidden, num_layers=layers, nonlinearity="tanh", dropout=between
            )
        else:
            module = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
            self.rnn = module(embed, hidden, num_layers=layers, dropout=between)
        # Identity when off, so that p = 0 draws no random numbers.
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(hidden, vocab)

    def zero_state(self, batch: int):
        """h of shape (L, B, H), or the LSTM's (h, c)."""
        h = torch.zeros(self.layers, batch, self.hidden)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def forward(self, x, state):
        # x: (T, B) ids; state: as zero_state.
        hs, state = self.rnn(self.embed(x), state)
        return self.out(self.drop(hs)), state


def detach(state):
    """Cuts the graph behind the carried state (both h and c for the LSTM)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def streams(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """(S, B): stream b is ids[b*S : (b+1)*S]."""
    per = len(ids) // batch
    return ids[: per * batch].view(batch, per).t().contiguous()


@torch.no_grad()
def evaluate(model, ids, seq_len, max_batch=64):
    model.eval()
    # As charrnn's evaluate: B = clamp(n / (T + 1), 1, 64) streams from a zero state.
    batch = max(1, min(len(ids) // (seq_len + 1), max_batch))
    data = streams(ids, batch)
    state = model.zero_state(batch)
    total, count = 0.0, 0
    for p in range(0, data.shape[0] - 1, seq_len):
        x = data[p : min(p + seq_len, data.shape[0] - 1)]
        y = data[p + 1 : p + 1 + x.shape[0]]
        logits, state = model(x, state)
        total += nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
        ).item()
        count += y.numel()
    model.train()
    return total / count


def screen_of(ids, seq_len, k):
    """K of the streams `evaluate` cuts `ids` into, end to end, as charrnn's --val-screen
    picks them (the middle of each of K equal runs of streams); None when K is too many."""
    batch = max(1, min(len(ids) // (seq_len + 1), 64))
    if k >= batch:
        return None
    per = len(ids) // batch
    picked = [(2 * i + 1) * batch // (2 * k) for i in range(k)]
    return torch.cat([ids[j * per : (j + 1) * per] for j in picked])


def train_step(model, opt, x, y, state, clip, bf16=False):
    """One step on one chunk: forward, mean cross-entropy, backward, clip, Adam."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, state = model(x, detach(state))
    loss = nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)
    )
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss, state


def bench(model, opt, data, a):
    """N warm-up steps, then N timed ones; returns the JSON row."""
    steps_per_epoch = (data.shape[0] - 1) // a.seq_len
    state, k = model.zero_state(a.batch), 0

    def run(n):
        nonlocal state, k
        for _ in range(n):
            if k == steps_per_epoch:  # wrap to the start as an epoch does
                state, k = model.zero_state(a.batch), 0
            p = k * a.seq_len
            x, y = data[p : p + a.seq_len], data[p + 1 : p + 1 + a.seq_len]
            _, state = train_step(model, opt, x, y, state, a.clip, a.bf16)
            k += 1

    run(a.bench_steps)
    start = time.perf_counter()
    run(a.bench_steps)
    secs = time.perf_counter() - start
    return {
        "cell": a.cell,
        "layers": a.layers,
        "hidden": a.hidden,
        "batch": a.batch,
        "seq_len": a.seq_len,
        "threads": torch.get_num_threads(),
        "chars_per_sec": round(a.bench_steps * a.batch * a.seq_len / secs, 1),
        "steps": a.bench_steps,
        "secs": round(secs, 4),
        "torch_version": torch.__version__,
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
        "bf16": a.bf16,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--cell", choices=["rnn", "gru", "lstm"], default="rnn")
    ap.add_argument("--layers", type=int, default=1, help="stacked recurrent layers")
    ap.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout on every layer's output (between layers and before the head)",
    )
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--embed", type=int, default=0, help="embedding width (0: same as --hidden)")
    ap.add_argument(
        "--one-hot", action="store_true", help="one-hot input (a frozen identity embedding)"
    )
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument(
        "--seq-len-warmup",
        default="0:0",
        metavar="T0:STEPS",
        help="the first STEPS steps on chunks of T0 (charrnn's --seq-len-warmup)",
    )
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0, help="global-norm clip of the mean loss")
    ap.add_argument("--beta1", type=float, default=0.9, help="Adam's first-moment decay")
    ap.add_argument(
        "--embed-std",
        type=float,
        default=1.0,
        help="std of nn.Embedding's N(0, s^2) init (PyTorch's default: 1)",
    )
    ap.add_argument(
        "--init",
        choices=["default", "xavier"],
        default="default",
        help="the recurrent and output weights: PyTorch's U(+-1/sqrt(H)) (default), or Glorot "
        "uniform per gate block and zero biases (charrnn's --init xavier); the embedding keeps "
        "its N(0, s^2)",
    )
    ap.add_argument(
        "--head-scale",
        type=float,
        default=1.0,
        help="multiply the output layer's initial weights by this (charrnn's --head-scale)",
    )
    ap.add_argument(
        "--embed-lr-mult",
        type=float,
        default=1.0,
        help="nn.Embedding's weight learns at this multiple of --lr, in a parameter group of "
        "its own (charrnn's --embed-lr-mult; the cosine scales both groups alike)",
    )
    ap.add_argument(
        "--cosine",
        action="store_true",
        help="cosine decay of the rate to 0 over --steps (or over every epoch)",
    )
    ap.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="evaluate an exponential moving average of the weights, updated after every "
        "step with this decay (0: the weights themselves)",
    )
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--val-frac", type=float, default=0.1)
    ap.add_argument(
        "--eval-every", type=int, default=0, help="evaluate every N steps (0: after each epoch)"
    )
    ap.add_argument(
        "--target-loss",
        type=float,
        default=None,
        help="stop at the first evaluation whose validation loss is <= this (nats/char)",
    )
    ap.add_argument(
        "--val-screen",
        type=int,
        default=0,
        help="with --target-loss: screen each evaluation on K of the 64 validation streams",
    )
    ap.add_argument(
        "--screen-margin",
        type=float,
        default=0.05,
        help="nats/char above the target at which a screen reads the whole validation part",
    )
    ap.add_argument(
        "--bf16", action="store_true", help='torch.autocast("cpu", dtype=torch.bfloat16)'
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--bench-steps",
        type=int,
        default=0,
        help="time N training steps after N warm-up ones and print one JSON line (no epochs)",
    )
    ap.add_argument(
        "--no-mkldnn",
        action="store_true",
        help="torch.backends.mkldnn.enabled = False (PyTorch's CPU LSTM uses oneDNN otherwise)",
    )
    a = ap.parse_args()
    if a.layers < 1:
        ap.error("--layers must be at least 1")
    if not 0.0 <= a.dropout < 1.0:
        ap.error("--dropout must be in [0, 1)")
    if not 0.0 <= a.beta1 < 1.0:
        ap.error("--beta1 must be in [0, 1)")
    if not 0.0 <= a.ema < 1.0:
        ap.error("--ema must be in [0, 1)")
    if not a.embed_std > 0:
        ap.error("--embed-std must be > 0")
    if not 0 < a.head_scale < math.inf:
        ap.error("--head-scale must be a finite number > 0")
    if a.bench_steps < 0:
        ap.error("--bench-steps must be >= 0")
    if a.eval_every < 0:
        ap.error("--eval-every must be >= 0")
    if a.target_loss is not None and not (a.target_loss > 0 and a.val_frac > 0):
        ap.error("--target-loss needs a loss > 0 and a validation part (--val-frac > 0)")
    if a.val_screen and a.target_loss is None:
        ap.error("--val-screen needs --target-loss")
    if a.val_screen < 0 or not a.screen_margin >= 0:
        ap.error("--val-screen must be >= 0 and --screen-margin >= 0")

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    if a.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    text = open(a.corpus, "rb").read().decode("utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_val = int(len(ids) * a.val_frac + 0.5)  # charrnn rounds (half away from zero)
    train, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    screen = screen_of(val_ids, a.seq_len, a.val_screen) if a.val_screen else None
    if a.val_screen and screen is None:
        ap.error(f"--val-screen {a.val_screen}: the validation part has fewer streams")

    model = CharRnn(
        len(chars),
        len(chars) if a.one_hot else a.embed or a.hidden,
        a.hidden,
        a.cell,
        a.layers,
        a.dropout,
    )
    if a.init == "xavier":
        xavier(model, a.hidden)
    if a.head_scale != 1.0:
        with torch.no_grad():
            model.out.weight.mul_(a.head_scale)
    if a.one_hot:
        model.embed.weight.data = torch.eye(len(chars))
        model.embed.weight.requires_grad_(False)
    elif a.embed_std != 1.0:
        with torch.no_grad():
            model.embed.weight.mul_(a.embed_std)
    if not a.embed_lr_mult > 0:
        ap.error(f"--embed-lr-mult {a.embed_lr_mult}: use a multiple of --lr > 0")
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trained if n.startswith("embed.")], "mult": a.embed_lr_mult},
        {"params": [p for n, p in trained if not n.startswith("embed.")], "mult": 1.0},
    ]
    for g in groups:
        g["lr"] = a.lr * g["mult"]
    opt = torch.optim.Adam([g for g in groups if g["params"]], lr=a.lr, betas=(a.beta1, 0.999))
    data = streams(train, a.batch)
    steps_per_epoch = (data.shape[0] - 1) // a.seq_len
    if steps_per_epoch < 1:
        ap.error(
            f"{len(train)} training characters make streams of {data.shape[0]} for "
            f"--batch {a.batch}; --seq-len {a.seq_len} needs at least {a.seq_len + 1}"
        )
    if a.bench_steps:
        print(json.dumps(bench(model, opt, data, a)), flush=True)
        return
    # The cosine schedule spans the run: --steps when given, else every epoch.
    total_steps = a.steps or steps_per_epoch * a.epochs
    step, start, train_secs = 0, time.time(), 0.0
    # The averaged model (as torch.optim.swa_utils.AveragedModel with an EMA), started from
    # the weights of the first step: what is evaluated when --ema is set.
    averaged = copy.deepcopy(model) if a.ema else model
    live = [p for p in model.parameters() if p.requires_grad]
    mean = [p for p in averaged.parameters() if p.requires_grad]

    gap = None  # the whole part's loss less the screen's, at the last evaluation of both

    def report(epoch, loss, last):
        """Evaluates (off the training clock), prints the line; True when the target is met."""
        nonlocal gap
        screened = None
        if screen is not None and not last:
            screened = evaluate(averaged, screen, a.seq_len, a.val_screen)
            if gap is not None and screened + gap > a.target_loss + a.screen_margin:
                row = {"epoch": epoch, "step": step, "train_loss": loss.item(),
                       "val_loss": None, "screen_loss": screened,
                       "secs": round(time.time() - start, 3),
                       "train_secs": round(train_secs, 3)}
                print(json.dumps(row), flush=True)
                return False
        val = evaluate(averaged, val_ids, a.seq_len) if len(val_ids) >= 2 else None
        if screened is not None and val is not None:
            gap = val - screened
        row = {
            "epoch": epoch,
            "step": step,
            "train_loss": loss.item(),
            "val_loss": val,
            "secs": round(time.time() - start, 3),
            "train_secs": round(train_secs, 3),
        }
        if screened is not None:
            row["screen_loss"] = screened
        print(json.dumps(row), flush=True)
        return a.target_loss is not None and val is not None and val <= a.target_loss

    # A sequence-length warm-up (as charrnn's --seq-len-warmup T0:N): the first N steps read
    # chunks of T0, then each stream goes on at the next whole chunk of --seq-len.
    warm_t, warm_steps = (int(v) for v in a.seq_len_warmup.split(":"))

    def seq_len_at(step):
        return warm_t if step < warm_steps else a.seq_len

    def chunk_start(p, t):
        """The first whole chunk of t at or after position p (where a stream goes on)."""
        return -(-p // t) * t

    for epoch in range(a.epochs):
        state = model.zero_state(a.batch)
        leg = time.perf_counter()
        p, t = 0, seq_len_at(step)
        while True:
            if seq_len_at(step) != t:
                t = seq_len_at(step)
                p = chunk_start(p, t)
            if p + t + 1 > data.shape[0]:
                break
            if a.cosine:
                for g in opt.param_groups:
                    g["lr"] = g["mult"] * a.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            x, y = data[p : p + t], data[p + 1 : p + 1 + t]
            p += t
            loss, state = train_step(model, opt, x, y, state, a.clip, a.bf16)
            if a.ema:
                with torch.no_grad():
                    if step == 0:
                        torch._foreach_copy_(mean, live)
                    else:
                        torch._foreach_lerp_(mean, live, 1.0 - a.ema)
            step += 1
            tn = seq_len_at(step)
            epoch_end = chunk_start(p, tn) + tn + 1 > data.shape[0]
            last = step == a.steps or (epoch_end and not a.eval_every)
            if last or (a.eval_every and step % a.eval_every == 0):
                train_secs += time.perf_counter() - leg
                if report(epoch + 1, loss, last):
                    return
                leg = time.perf_counter()
            if step == a.steps:
                return
        train_secs += time.perf_counter() - leg


if __name__ == "__main__":
    main()
