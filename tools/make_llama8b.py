#!/usr/bin/env python3
"""A Llama-3-8B-shaped checkpoint with random bf16 weights, and transformers' reference logits,
for the model-decode benchmark (bench/model-decode.ts, tools/hf_decode_bench.py).

Run on the GPU machine; the checkpoint (16 GB) goes to a local directory and is never committed:

    python3 tools/make_llama8b.py /tmp/llama8b

Writes, with save_pretrained: config.json (hidden 4096, intermediate 14336, 32 layers, 32 heads,
8 kv heads, vocab 128256, rope_theta 500000 with llama3 scaling factor 8 / low 1 / high 4 /
original 8192, max_position_embeddings 131072, rms_norm_eps 1e-5, untied lm_head) and the
weights, drawn on the GPU as N(0, 0.02) in bf16 (norm weights 1). Also copies the llama-tiny
fixture's tokenizer (loadModel needs one; the benchmark feeds token ids), and writes
reference.json with reference-*.bin (f32 little-endian):
  - a fixed random prompt of 97 token ids and the greedy next token,
  - the logits after the prompt ("prefill") and after one decode step of that token ("step"),
    from transformers in bf16 with sdpa, and from the same weights upcast to float32 — the
    reference both bf16 implementations are measured against.
"""
import inspect
import json
import os
import shutil
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

PROMPT_TOKENS = 97
ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}


def make_config():
    kwargs = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=131072,
                  rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.02, bos_token_id=128000,
                  eos_token_id=128001, attention_bias=False, mlp_bias=False)
    # transformers 5 takes rope_theta inside rope_parameters; 4.x takes rope_theta + rope_scaling.
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        config = LlamaConfig(**kwargs, rope_parameters={**ROPE, "rope_theta": 500000.0})
    else:
        config = LlamaConfig(**kwargs, rope_theta=500000.0, rope_scaling=ROPE)
    config._attn_implementation = "sdpa"
    return config


def logits_pair(model, ids, nxt=None):
    """Logits after the prompt, and after one decode step of token `nxt` (default: the greedy one),
    as f32 on the CPU."""
    with torch.inference_mode():
        out = model(ids[None].cuda(), use_cache=True)
        prefill = out.logits[0, -1].float()
        nxt = int(prefill.argmax()) if nxt is None else nxt
        step = model(torch.tensor([[nxt]], device="cuda"), past_key_values=out.past_key_values, use_cache=True)
        return prefill.cpu(), step.logits[0, -1].float().cpu(), nxt


def rel_error(a, b):
    return float((a - b).norm() / b.norm())


def main(out_dir):
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    config = make_config()
    # Parameters are made, and initialised by transformers (normal, std initializer_range), on the GPU in bf16.
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.eval()
    print(f"model made in {time.time() - t0:.1f} s: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, "
          f"attention {model.config._attn_implementation}", flush=True)
    model.save_pretrained(out_dir, max_shard_size="5GB")
    print(f"saved to {out_dir} at {time.time() - t0:.1f} s", flush=True)
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "models", "llama-tiny")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(fixture, name), os.path.join(out_dir, name))

    ids = torch.randint(0, config.vocab_size, (PROMPT_TOKENS,), generator=torch.Generator().manual_seed(1234))
    bf16 = logits_pair(model, ids)
    model.float()
    f32 = logits_pair(model, ids, bf16[2])  # the same step token, so the step logits compare
    files = {}
    for which, index in (("prefill", 0), ("step", 1)):
        files[which] = {}
        for dtype, result in (("bf16", bf16), ("f32", f32)):
            name = f"reference-{which}-{dtype}.bin"
            result[index].numpy().astype("<f4").tofile(os.path.join(out_dir, name))
            files[which][dtype] = name
    reference = {
        "transformers": transformers.__version__, "torch": torch.__version__, "attention": "sdpa",
        "ids": ids.tolist(), "next": bf16[2], "logits": files,
        "transformersBf16VsF32": {"prefill": rel_error(bf16[0], f32[0]), "step": rel_error(bf16[1], f32[1])},
    }
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(reference, f)
    print(f"reference written at {time.time() - t0:.1f} s: transformers bf16 vs f32 relative error "
          f"{reference['transformersBf16VsF32']}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tools/make_llama8b.py OUT_DIR")
    main(sys.argv[1])
