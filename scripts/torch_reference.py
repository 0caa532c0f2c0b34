#!/usr/bin/env python3
"""The peer's number: the same char-level task trained with PyTorch's nn.RNN.

nn.Embedding + nn.RNN(tanh) + nn.Linear, stateful truncated BPTT over B contiguous streams (the
layout charrnn uses), mean cross-entropy, Adam, global-norm clipping, validation on the last
--val-frac of the corpus as 64 streams from a zero state (as `charrnn train` measures it).
Prints one JSON line per evaluation: {"epoch", "step", "train_loss", "val_loss", "secs"}.

Needs torch (`pip install torch`); not part of the test suite. Example:

    python3 scripts/torch_reference.py ../shared/data/tinyshakespeare.txt --hidden 512 \\
        --batch 64 --seq-len 64 --lr 2e-3 --epochs 30 --threads 1
"""

import argparse
import json
import math
import time

import torch
from torch import nn


class CharRnn(nn.Module):
    """Embedding -> tanh RNN -> linear logits."""

    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.RNN(embed, hidden, nonlinearity="tanh", batch_first=False)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, h):
        # x: (T, B) ids; h: (1, B, H).
        hs, h = self.rnn(self.embed(x), h)
        return self.out(hs), h


def streams(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """(S, B): stream b is ids[b*S : (b+1)*S]."""
    per = len(ids) // batch
    return ids[: per * batch].view(batch, per).t().contiguous()


@torch.no_grad()
def evaluate(model, ids, hidden, seq_len, batch=64):
    model.eval()
    data = streams(ids, batch)
    h = torch.zeros(1, batch, hidden)
    total, count = 0.0, 0
    for p in range(0, data.shape[0] - 1, seq_len):
        x = data[p : min(p + seq_len, data.shape[0] - 1)]
        y = data[p + 1 : p + 1 + x.shape[0]]
        logits, h = model(x, h)
        total += nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
        ).item()
        count += y.numel()
    model.train()
    return total / count


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--embed", type=int, default=0, help="embedding width (0: same as --hidden)")
    ap.add_argument(
        "--one-hot", action="store_true", help="one-hot input (a frozen identity embedding)"
    )
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0, help="global-norm clip of the mean loss")
    ap.add_argument("--cosine", action="store_true", help="cosine decay of the rate to 0")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--val-frac", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    text = open(a.corpus, "rb").read().decode("utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_val = int(len(ids) * a.val_frac)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]

    model = CharRnn(len(chars), len(chars) if a.one_hot else a.embed or a.hidden, a.hidden)
    if a.one_hot:
        model.embed.weight.data = torch.eye(len(chars))
        model.embed.weight.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    data = streams(train, a.batch)
    steps_per_epoch = (data.shape[0] - 1) // a.seq_len
    total_steps = steps_per_epoch * a.epochs
    step, start = 0, time.time()
    for epoch in range(a.epochs):
        h = torch.zeros(1, a.batch, a.hidden)
        for k in range(steps_per_epoch):
            if a.cosine:
                for g in opt.param_groups:
                    g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            p = k * a.seq_len
            x, y = data[p : p + a.seq_len], data[p + 1 : p + 1 + a.seq_len]
            logits, h = model(x, h.detach())
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            step += 1
            if step == a.steps:
                break
        row = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": loss.item(),
            "val_loss": evaluate(model, val, a.hidden, a.seq_len),
            "secs": round(time.time() - start, 1),
        }
        print(json.dumps(row), flush=True)
        if step == a.steps:
            break


if __name__ == "__main__":
    main()
