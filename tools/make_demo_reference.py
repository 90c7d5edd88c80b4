#!/usr/bin/env python3
"""Transformers' reference outputs for the trained demo model (models/demo), for the CPU parity test.

Run on a machine with torch + transformers + tokenizers (the CPU is enough; a minute):

    python3 tools/make_demo_reference.py models/demo test/fixtures/demo-reference

It reads `prompts.json` in the output folder (texts and continuations, written with lib/eval's
samples so the long ones are real passkey and multi-key prompts) and writes `reference.json`:
for each prompt, the token ids of transformers' tokenizer (the parity test compares ours), the
logits of the prompt's last rows (`lastLogits-N.bin`, float32, rows × vocab), 12 greedy tokens with
each step's top-1/top-2 margin, and the teacher-forced log-probability of every continuation token
(for `model.score`). The reference reads the bf16 checkpoint in float32 with eager attention.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from make_fixtures import greedy  # the same greedy decoding, with margins, as the tiny fixtures'

LAST_ROWS = 8
GREEDY_STEPS = 12


def main(model_dir, out_dir):
    with open(os.path.join(out_dir, "prompts.json")) as f:
        prompts = json.load(f)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    cases = []
    with torch.no_grad():
        for i, p in enumerate(prompts):
            ids = tok(p["text"])["input_ids"]
            whole = tok(p["text"] + p["continuation"])["input_ids"]
            if whole[:len(ids)] != ids:
                raise SystemExit(f"prompt {i}: the prompt's tokens are not a prefix of prompt + continuation")
            t = torch.tensor([ids])
            last = model(t).logits[0, -LAST_ROWS:].float().numpy()
            logits_file = f"lastLogits-{i}.bin"
            last.astype("<f4").tofile(os.path.join(out_dir, logits_file))
            tokens, margins = greedy(model, t, GREEDY_STEPS)
            logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), dim=-1)
            continuation = whole[len(ids):]
            scores = [float(logprobs[len(ids) - 1 + j, token]) for j, token in enumerate(continuation)]
            cases.append({"prompt": p["text"], "ids": ids, "lastLogitsFile": logits_file, "lastLogitsShape": list(last.shape),
                          "greedy": tokens, "greedyMargins": margins, "greedyText": tok.decode(tokens),
                          "continuation": p["continuation"], "continuationIds": continuation,
                          "continuationLogprobs": scores})
            print(f"prompt {i}: {len(ids)} tokens, greedy {tok.decode(tokens)!r}, min margin {min(margins):.4f}")
    ref = {"model": os.path.basename(os.path.normpath(model_dir)), "transformers": __import__("transformers").__version__,
           "torch": torch.__version__, "cases": cases}
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: make_demo_reference.py MODEL_DIR OUT_DIR (OUT_DIR holds prompts.json)")
    main(sys.argv[1], sys.argv[2])
