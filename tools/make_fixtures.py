#!/usr/bin/env python3
"""Reference fixtures for the model tests, made with Hugging Face transformers.

Writes tiny random-weight checkpoints (save_pretrained) of the three supported architectures, a
tiny byte-level BPE tokenizer trained with the `tokenizers` library, and for fixed prompts the
reference token ids, full-prompt logits and 32 greedy tokens (with each step's top-1/top-2 margin,
so a test knows how robust the argmax is). Run on a machine with torch + transformers:

    python3 tools/make_fixtures.py test/fixtures/models

What each checkpoint covers:
  llama-tiny    LlamaForCausalLM, rope_scaling llama3, GQA 2:1, bf16 weights, sharded (index.json)
  mistral-tiny  MistralForCausalLM, sliding_window 16, GQA 4:1, f16 weights
  qwen2-tiny    Qwen2ForCausalLM, QKV bias, tied embeddings, GQA 2:2 (none), f32 weights
Head dim is 64 everywhere so the same fixtures run on the CUDA kernels.
"""
import json
import os
import sys

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, LlamaConfig, MistralConfig, PreTrainedTokenizerFast,
                          Qwen2Config)

VOCAB = 384
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Long context inference keeps a key value cache for every layer.",
    "Lazy layers attend to the first tokens and to a recent window.",
    "Streaming attention keeps sinks and a sliding window of recent tokens.",
    "A hybrid model mixes full attention layers with streaming layers.",
    "Node.js developers want fast local inference on their GPUs.",
    "Once upon a time there was a tiny language model that loved to count: one two three four five.",
    "User: what is the capital of France? Assistant: Paris is the capital of France.",
] * 20
PROMPTS = [
    "The quick brown fox",
    "Lazy layers attend to the first tokens and to a recent window, while the other layers keep full attention over the whole prompt.",
    "Once upon a time",
]
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there!"}]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ message['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer(out_dir):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<s>", "</s>", "<|user|>", "<|assistant|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)])
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
              "model_max_length": 4096, "chat_template": CHAT_TEMPLATE, "add_bos_token": True}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return tok


def configs():
    common = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=192, num_hidden_layers=3, head_dim=64,
                  max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=1,
                  initializer_range=0.2)
    llama = LlamaConfig(**common, num_attention_heads=2, num_key_value_heads=1, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                        tie_word_embeddings=False)
    mistral = MistralConfig(**common, num_attention_heads=4, num_key_value_heads=1, rope_theta=10000.0,
                            sliding_window=16, tie_word_embeddings=False)
    qwen2 = Qwen2Config(**{**common, "num_hidden_layers": 2, "intermediate_size": 128}, num_attention_heads=2,
                        num_key_value_heads=2, rope_theta=1000000.0, tie_word_embeddings=True,
                        use_sliding_window=False)
    return [("llama-tiny", llama, torch.bfloat16, "300KB"), ("mistral-tiny", mistral, torch.float16, None),
            ("qwen2-tiny", qwen2, torch.float32, None)]


def greedy(model, ids, steps):
    tokens, margins = [], []
    ids = ids.clone()
    for _ in range(steps):
        logits = model(ids).logits[0, -1].double()
        top = torch.topk(logits, 2)
        tokens.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        ids = torch.cat([ids, top.indices[:1].view(1, 1)], dim=1)
    return tokens, margins


def main(root):
    os.makedirs(root, exist_ok=True)
    torch.manual_seed(1234)
    tok_dir = os.path.join(root, "_tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    tok = make_tokenizer(tok_dir)
    try:
        hf_tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"), bos_token="<s>",
                                         eos_token="</s>")
        hf_tok.chat_template = CHAT_TEMPLATE
        chat_text = hf_tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # render as transformers does: jinja2 with trim_blocks and lstrip_blocks
        print(f"apply_chat_template failed ({err}); rendering with jinja2 directly")
        import jinja2
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        chat_text = env.from_string(CHAT_TEMPLATE).render(messages=CHAT, bos_token="<s>", eos_token="</s>",
                                                          add_generation_prompt=True)
    for name, config, dtype, shard in configs():
        out = os.path.join(root, name)
        os.makedirs(out, exist_ok=True)
        model = AutoModelForCausalLM.from_config(config).to(dtype)
        kwargs = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(out, safe_serialization=True, **kwargs)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            with open(os.path.join(tok_dir, f)) as src, open(os.path.join(out, f), "w") as dst:
                dst.write(src.read())
        # The reference reads the checkpoint back from disk, in float32, with eager attention.
        ref_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
        cases = []
        with torch.no_grad():
            for i, prompt in enumerate(PROMPTS + [chat_text]):
                ids = tok.encode(prompt).ids if i < len(PROMPTS) else tok.encode(chat_text, add_special_tokens=False).ids
                t = torch.tensor([ids])
                logits = ref_model(t).logits[0].float().numpy()
                logits_file = f"logits-{i}.bin"
                logits.astype("<f4").tofile(os.path.join(out, logits_file))
                tokens, margins = greedy(ref_model, t, 32)
                cases.append({"prompt": prompt, "ids": ids, "logitsFile": logits_file, "logitsShape": list(logits.shape),
                              "greedy": tokens, "greedyMargins": margins,
                              "greedyText": tok.decode(tokens, skip_special_tokens=False)})
        files = sorted(os.listdir(out))
        ref = {"model": name, "architecture": config.architectures[0] if config.architectures else type(ref_model).__name__,
               "dtype": str(dtype).replace("torch.", ""), "transformers": __import__("transformers").__version__,
               "torch": torch.__version__, "chatTemplateInput": CHAT, "chatTemplateOutput": chat_text,
               "cases": cases, "files": files}
        with open(os.path.join(out, "reference.json"), "w") as f:
            json.dump(ref, f, indent=1)
        print(f"{name}: {type(ref_model).__name__} {dtype} files={files} "
              f"min greedy margin={min(m for c in cases for m in c['greedyMargins']):.4f}")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    print(f"fixtures: {size / 2**20:.2f} MiB in {root}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/models")
