#!/usr/bin/env python3
"""Hugging Face transformers on the grid of bench/model-decode.ts, same weights, same card, same job.

    python3 tools/hf_decode_bench.py MODEL_DIR --out hf.json [--batches 1,8,32] [--contexts 4096,16384]
        [--steps 20] [--warmup 3]

The model is loaded in bf16 with attn_implementation="sdpa". For each context a random prompt is
prefilled at batch 1 (median of 3, logits of the last position only): prefill tok/s. Its K/V is
then copied to every row of a batch-B cache — decode cost does not depend on the values, and
prefilling 32 long prompts in transformers would take most of the job — and decode steps are
timed with both caches transformers offers: DynamicCache (grows by torch.cat; with no mask, sdpa
runs GQA natively) and StaticCache (preallocated; its mask makes sdpa repeat K/V per query head).
A step is one forward of B tokens plus the greedy argmax, ended by a device sync; the median of
`steps` after `warmup` is reported. Points that run out of memory are recorded as such.
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache, StaticCache


def sync_time(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000, result


def layer_kv(cache):
    """(keys, values) per layer, each [batch, kv heads, length, head dim], for 4.x and 5.x caches."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def forward(model, ids, cache, start):
    """One forward of ids [B, T] at positions start.. start+T-1; returns the last logits."""
    positions = torch.arange(start, start + ids.shape[1], device="cuda")
    kwargs = dict(input_ids=ids, past_key_values=cache, cache_position=positions, use_cache=True)
    try:
        return model(**kwargs, logits_to_keep=1).logits[:, -1]
    except TypeError:  # transformers without logits_to_keep
        return model(**kwargs).logits[:, -1]


def batch_cache(model, kv, batch, variant, max_len):
    """A cache of `batch` rows, each holding the prefilled K/V `kv` (one row)."""
    if variant == "dynamic":
        # Layer by layer: the cache's torch.cat makes each layer's copy, so only one layer is ever held twice.
        cache = DynamicCache()
        for i, (k, v) in enumerate(kv):
            cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
        return cache
    try:
        cache = StaticCache(config=model.config, max_cache_len=max_len)
    except TypeError:  # transformers 4.x
        cache = StaticCache(config=model.config, max_batch_size=batch, max_cache_len=max_len, device="cuda", dtype=torch.bfloat16)
    positions = torch.arange(kv[0][0].shape[2], device="cuda")
    for i, (k, v) in enumerate(kv):
        cache.update(k.expand(batch, -1, -1, -1).contiguous(), v.expand(batch, -1, -1, -1).contiguous(), i,
                     {"cache_position": positions})
    return cache


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--contexts", default="4096,16384")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    contexts = [int(c) for c in args.contexts.split(",")]
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16, attn_implementation="sdpa", device_map="cuda").eval()
    vocab = model.config.vocab_size
    result = {"card": torch.cuda.get_device_name(), "transformers": transformers.__version__, "torch": torch.__version__,
              "attention": model.config._attn_implementation, "loadSeconds": time.time() - t0, "prefill": [], "decode": []}
    print(f"transformers {transformers.__version__}, loaded in {result['loadSeconds']:.1f} s", flush=True)
    gen = torch.Generator().manual_seed(7)
    with torch.inference_mode():
        forward(model, torch.randint(0, vocab, (1, 128), generator=gen).cuda(), DynamicCache(), 0)  # cuBLAS and kernel warm-up
        for ctx in contexts:
            times, kv = [], None
            for _ in range(3):
                ids = torch.randint(0, vocab, (1, ctx), generator=gen).cuda()
                cache = DynamicCache()
                ms, _ = sync_time(lambda: forward(model, ids, cache, 0))
                times.append(ms)
                kv = layer_kv(cache)
            result["prefill"].append({"context": ctx, "ms": statistics.median(times), "tokPerS": ctx / statistics.median(times) * 1000})
            print(f"prefill {ctx}: {statistics.median(times):.0f} ms", flush=True)
            for batch in batches:
                for variant in ("dynamic", "static"):
                    point = {"batch": batch, "context": ctx, "variant": variant}
                    cache = None
                    try:
                        cache = batch_cache(model, kv, batch, variant, ctx + args.warmup + args.steps + 1)
                        nxt = torch.randint(0, vocab, (batch, 1), generator=gen).cuda()
                        pos, times = ctx, []
                        for i in range(args.warmup + args.steps):
                            ms, logits = sync_time(lambda: forward(model, nxt, cache, pos).argmax(-1, keepdim=True))
                            nxt, pos = logits, pos + 1
                            if i >= args.warmup:
                                times.append(ms)
                        point["stepMs"] = statistics.median(times)
                        point["tokPerS"] = batch / point["stepMs"] * 1000
                    except torch.cuda.OutOfMemoryError as err:
                        point["error"] = f"out of memory: {str(err).splitlines()[0]}"
                    del cache
                    torch.cuda.empty_cache()
                    result["decode"].append(point)
                    print(json.dumps(point), flush=True)
            del kv
            torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
