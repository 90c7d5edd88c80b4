#!/usr/bin/env python3
"""A toy of the multi-key needle task, small enough to train on a CPU: does a small Llama-like
model learn to tell needles apart by their keys' tokens, and what in the data makes that easier?

The demo model never learnt it in 8 GPU minutes once the keys' token count stopped telling the
needles apart (bench/README.md, "Keys of one length"). The toy keeps the task's shape and nothing
else: random filler tokens, four needles `for K1..Kn is : D1..Dm .` whose keys all have n tokens
(drawn from the filler's own vocabulary, as the real keys' pieces occur in the text), and at the
end `for K1..Kn <gap words> is`, the asked key and the evaluation's gap of five words ("mentioned
in the provided text") before the answer. The loss is on the answer's digits, the first weighted
4x, as in tools/train_demo_model.py. Every --eval-every steps it reports the first digit's greedy
accuracy on fresh one-question examples with the whole five-word gap and with none (a pick among
the needles scores 1/4 + 3/4 * 1/10 = 0.325, as two needles' numbers may start alike).

    python3 tools/toy_key_match.py --key-tokens 3 --length 96 --batch 16 --steps 8000
    python3 tools/toy_key_match.py --key-tokens 1 --short-gaps 1 ...        # 0-4 gap words in training
    python3 tools/toy_key_match.py --key-tokens 1 --value-digits 3 --queries 3 ...  # two drills first
    python3 tools/toy_key_match.py --key-tokens 1 --repeats --curriculum 3000 ...   # the key next to its number first

It needs torch (any version from 1.13, CPU is enough: a 3-layer, 64-wide model takes about 0.09 s a
step on one core at 96 tokens and 16 examples). At that size it learns slowly: with --adjacent
(plain induction) it was still below a pick among the needles after 6000 steps, so a run that
stays there says little about the task (bench/README.md).
"""
import argparse
import math
import random
import time

import torch
import torch.nn.functional as F

FILLER = 400
DIGITS = list(range(FILLER, FILLER + 10))
BOS, FOR, IS, COLON, DOT = range(FILLER + 10, FILLER + 15)
GAP_WORDS = list(range(FILLER + 15, FILLER + 20))  # mentioned in the provided text
VOCAB = FILLER + 20
NEEDLES = 4


def filler_tokens(rng, count, repeats):
    """Random filler; with repeats, in chunks of 3-6 tokens of which half repeat an earlier chunk,
    so that a loss on the filler teaches copying what came before (induction), as text does."""
    if not repeats:
        return [rng.randrange(FILLER) for _ in range(count)]
    tokens, chunks = [], []
    while len(tokens) < count:
        if chunks and rng.random() < 0.5:
            chunk = rng.choice(chunks)
        else:
            chunk = [rng.randrange(FILLER) for _ in range(rng.randint(3, 6))]
            chunks.append(chunk)
        tokens += chunk
    return tokens[:count]


FULL_LEVEL = 6  # the evaluation's form: two tokens (is :) in the needle, six (5 gap words, is) in the question


def example(rng, length, key_tokens, gap, value_digits=7, queries=1, adjacent=False, repeats=False, level=None):
    """Token ids (BOS .. the last answer's digits, length + 1 of them) and the loss weight of each
    next-token prediction (length of them). With more than one query, the keys asked before the
    last are other keys than the last one's and each other, each followed by its number (with a loss
    on it). Adjacent: needles `K1..Kn D1..Dm .` and the question `K1..Kn`, the gap ignored. Level
    (0 to FULL_LEVEL, the gap ignored): the needles keep the first min(level, 2) of `is :` between
    key and number, and the question the last `level` of `<gap words> is` after the key, so that
    level 0 puts the number right after the key in both and FULL_LEVEL is the evaluation's form."""
    keys = []
    while len(keys) < NEEDLES:
        key = [rng.randrange(FILLER) for _ in range(key_tokens)]
        if key not in keys:
            keys.append(key)
    values = [[rng.choice(DIGITS) for _ in range(value_digits)] for _ in range(NEEDLES)]
    if adjacent:
        needles = [k + v + [DOT] for k, v in zip(keys, values)]
        question = lambda i: keys[i]
    else:
        between = [IS, COLON] if level is None else [IS, COLON][:min(level, 2)]
        tail = GAP_WORDS[len(GAP_WORDS) - gap:] + [IS] if level is None else (GAP_WORDS + [IS])[len(GAP_WORDS) + 1 - level:]
        needles = [[FOR] + k + between + v + [DOT] for k, v in zip(keys, values)]
        question = lambda i: [FOR] + keys[i] + tail
    asked = rng.sample(range(1, NEEDLES), queries - 1) + [0]
    drills = [question(i) + values[i] + [DOT] for i in asked[:-1]]
    filler = length - sum(map(len, needles)) - sum(map(len, drills)) - len(question(0)) - value_digits
    if filler < 0:
        raise ValueError(f"{length} tokens hold no filler with {queries} queries of {value_digits} digits")
    cuts = sorted(rng.randrange(filler + 1) for _ in range(NEEDLES))
    order = list(range(NEEDLES))
    rng.shuffle(order)
    text = filler_tokens(rng, filler, repeats)
    ids, at = [BOS], 0
    for cut, i in zip(cuts, order):
        ids += text[at:cut] + needles[i]
        at = cut
    ids += text[at:]
    weights = [0.0] * len(ids)
    for i, drill in zip(asked, drills + [question(0) + values[0]]):
        ids += drill
        weights += [0.0] * len(question(i)) + [4.0] + [1.0] * (value_digits - 1) + [0.0] * (len(drill) - len(question(i)) - value_digits)
    return ids, weights[1:]


def stack(rows):
    """Examples as an ids tensor and a weights tensor."""
    return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def batch(rng, size, length, key_tokens, short_gaps, value_digits, queries, adjacent, repeats, max_level=None):
    """A training batch; with max_level, each example's level drawn from 0 to it."""
    return stack([example(rng, length, key_tokens, rng.randrange(len(GAP_WORDS)) if rng.random() < short_gaps else len(GAP_WORDS),
                          value_digits, queries, adjacent, repeats,
                          None if max_level is None else rng.randint(0, max_level)) for _ in range(size)])


class Block(torch.nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim, bias=False)
        self.o = torch.nn.Linear(dim, dim, bias=False)
        self.up = torch.nn.Linear(dim, 6 * dim, bias=False)
        self.down = torch.nn.Linear(3 * dim, dim, bias=False)

    def forward(self, x, cos, sin, mask):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads) + mask
        x = x + self.o((att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d))
        gate, up = self.up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Model(torch.nn.Module):
    def __init__(self, dim, layers, heads, length, theta=10000.0):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, dim)
        torch.nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = torch.nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(dim)
        half = dim // heads // 2
        angles = torch.arange(length)[:, None] * theta ** (-torch.arange(half) / half)[None, :]
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())
        self.register_buffer("mask", torch.full((length, length), float("-inf")).triu(1))

    def forward(self, ids):
        n = ids.shape[1]
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, self.cos[:n], self.sin[:n], self.mask[:n, :n])
        return self.norm(x) @ self.embed.weight.T


@torch.no_grad()
def first_digit_accuracy(model, rng, samples, length, key_tokens, gap, value_digits, adjacent, repeats, level=None):
    ids, weights = stack([example(rng, length, key_tokens, gap, value_digits, adjacent=adjacent, repeats=repeats, level=level)
                          for _ in range(samples)])
    first = weights.argmax(dim=1)  # the position that predicts the (one) answer's first digit
    logits = model(ids[:, :-1])
    rows = torch.arange(samples)
    return float((logits[rows, first].argmax(-1) == ids[rows, first + 1]).float().mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--key-tokens", type=int, default=3, help="tokens per key (all four keys alike)")
    ap.add_argument("--short-gaps", type=float, default=0.0,
                    help="share of training examples with 0-4 gap words instead of the evaluation's 5")
    ap.add_argument("--value-digits", type=int, default=7)
    ap.add_argument("--queries", type=int, default=1, choices=range(1, NEEDLES),
                    help="keys asked and answered per training example, each another (the evaluation asks one); "
                         "the earlier answers rule their needles out for the last")
    ap.add_argument("--adjacent", action="store_true",
                    help="needles `KEY DIGITS .` and the question `KEY`: plain induction, to see how fast the toy "
                         "learns a recall with nothing between key and number")
    ap.add_argument("--repeats", action="store_true",
                    help="filler in chunks of which half repeat earlier ones, with a loss on every filler token: "
                         "induction to learn from, as the demo model has from its text")
    ap.add_argument("--curriculum", type=int, default=0,
                    help="over this many steps, grow the distance between key and number from none (the number "
                         "right after the key, in needle and question) to the evaluation's, one token at a time, "
                         "each example's drawn up to the current one; after them, the evaluation's form only")
    ap.add_argument("--length", type=int, default=160)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.curriculum < 0:
        ap.error("--curriculum is a step count (0: off)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng, eval_rng = random.Random(args.seed), random.Random(args.seed + 1)
    model = Model(args.dim, args.layers, args.heads, args.length + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))
    start = time.time()
    for step in range(1, args.steps + 1):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, step / 100)
        max_level = None
        if step < args.curriculum:  # after it, the evaluation's form only
            max_level = min(FULL_LEVEL - 1, FULL_LEVEL * step // args.curriculum)
        ids, weights = batch(rng, args.batch, args.length, args.key_tokens, args.short_gaps, args.value_digits, args.queries,
                             args.adjacent, args.repeats, max_level)
        logits = model(ids[:, :-1])
        token_loss = F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1), reduction="none")
        loss = (token_loss * weights.reshape(-1)).sum() / weights.sum()
        total = loss
        if args.repeats:  # and the language-modelling loss on the filler, counted apart as in train_demo_model.py
            total = loss + token_loss[ids[:, 1:].reshape(-1) < FILLER].mean()
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0:
            accuracy = lambda gap: first_digit_accuracy(model, eval_rng, 256, args.length, args.key_tokens, gap,
                                                        args.value_digits, args.adjacent, args.repeats)
            report = f"adjacent {accuracy(0):.3f}" if args.adjacent else f"gap 5 {accuracy(5):.3f}, gap 0 {accuracy(0):.3f}"
            if args.curriculum:
                level0 = first_digit_accuracy(model, eval_rng, 256, args.length, args.key_tokens, 0, args.value_digits,
                                              False, args.repeats, level=0)
                report += f", level 0 {level0:.3f} (training up to level {FULL_LEVEL if max_level is None else max_level} of {FULL_LEVEL})"
            print(f"step {step} loss {loss.item():.3f} first digit: {report} [{time.time() - start:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
