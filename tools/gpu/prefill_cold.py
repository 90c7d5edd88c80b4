#!/usr/bin/env python3
"""Prefill attention with a warm and a cold L2: where the batch-4 gap to SDPA comes from.

The benchmark of tools/gpu/prefill_check.py times batch 1 on the same tensors rep after rep, so
much of K/V (and some of Q) is still in L2 when a rep starts, and batch 4 as four calls on four
sequences, which start cold. This times, for our kernel (each --lib: a libltprefill build as
tools/gpu/run_prefill.sh makes it, e.g. with and without a patch) and for SDPA's default backend:
  - B=1 warm: the same tensors as the previous rep, nothing in between;
  - B=1 cold: a 512 MiB buffer written before each rep, which evicts L2;
  - B=4: four sequences one after another (ours: four calls; SDPA: one batched call), cold.
Causal, bf16, d 128; CUDA-event medians; fresh random inputs each run.

  python3 tools/gpu/prefill_cold.py --lib base=PATH [--lib NAME=PATH ...] [--out DIR]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from prefill_check import Lib, causal_flops, timed  # noqa: E402

DEV = "cuda"
D = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", action="append", required=True, help="NAME=PATH of a libltprefill build; repeatable")
    ap.add_argument("--out", default=None, help="folder for prefill-cold.json")
    ap.add_argument("--lengths", default="8192,16384,32768")
    ap.add_argument("--configs", default="32:8,16:16,32:32", help="hq:hkv pairs")
    args = ap.parse_args()
    libs = [(x.split("=", 1)[0], Lib(x.split("=", 1)[1])) for x in args.lib]
    if any(name == "sdpa" for name, _ in libs) or len({name for name, _ in libs}) != len(libs):
        ap.error("--lib names must differ from each other and from 'sdpa' (the baseline's columns)")
    torch.manual_seed(int(time.time()))
    flush = torch.empty(512 << 20, dtype=torch.uint8, device=DEV)

    def evict():
        flush.random_(0, 255)

    rows = []
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for cfg in args.configs.split(","):
        hq, hkv = map(int, cfg.split(":"))
        for n in map(int, args.lengths.split(",")):
            reps = 10 if n <= 16384 else 5
            qs = [torch.randn(n, hq, D, device=DEV, dtype=torch.bfloat16) for _ in range(4)]
            ks = [torch.randn(n, hkv, D, device=DEV, dtype=torch.bfloat16) for _ in range(4)]
            vs = [torch.randn(n, hkv, D, device=DEV, dtype=torch.bfloat16) for _ in range(4)]
            outs = [torch.empty_like(x) for x in qs]
            lses = [torch.empty(n, hq, device=DEV) for _ in range(4)]
            row = dict(hq=hq, hkv=hkv, N=n)
            for name, lib in libs:
                one = lambda lib=lib: lib.prefill(qs[0], ks[0], vs[0], outs[0], lses[0])  # noqa: E731

                def four(lib=lib):
                    for i in range(4):
                        lib.prefill(qs[i], ks[i], vs[i], outs[i], lses[i])

                row[f"{name}_b1_warm"] = timed(one, reps)
                row[f"{name}_b1_cold"] = timed(one, reps, before=evict)
                row[f"{name}_b4"] = timed(four, reps, before=evict)
            q4 = torch.stack(qs).transpose(1, 2).contiguous()
            k4 = torch.stack(ks).transpose(1, 2).contiguous()
            v4 = torch.stack(vs).transpose(1, 2).contiguous()
            if hkv != hq:  # K/V expanded to every query head, one of the two forms prefill_check.py times
                k4 = k4.repeat_interleave(hq // hkv, dim=1)
                v4 = v4.repeat_interleave(hq // hkv, dim=1)
            q1, k1, v1 = q4[:1].contiguous(), k4[:1].contiguous(), v4[:1].contiguous()
            sdpa1 = lambda: F.scaled_dot_product_attention(q1, k1, v1, is_causal=True)  # noqa: E731
            sdpa4 = lambda: F.scaled_dot_product_attention(q4, k4, v4, is_causal=True)  # noqa: E731
            row["sdpa_b1_warm"] = timed(sdpa1, reps)
            row["sdpa_b1_cold"] = timed(sdpa1, reps, before=evict)
            row["sdpa_b4"] = timed(sdpa4, reps, before=evict)
            rows.append(row)
            fl1 = causal_flops(1, hq, n, D) / 1e9
            cells = " ".join(f"{k}={fl1 * (4 if k.endswith('b4') else 1) / v:.0f}"
                             for k, v in row.items() if k not in ("hq", "hkv", "N"))
            print(f"hq={hq} hkv={hkv} N={n} TFLOP/s: {cells}", flush=True)
            del qs, ks, vs, outs, lses, q4, k4, v4, q1, k1, v1
            torch.cuda.empty_cache()
    names = [n for n, _ in libs] + ["sdpa"]
    print("\n| hq | hkv | N | " + " | ".join(f"{n} B1 warm | {n} B1 cold | {n} B4" for n in names) + " |")
    print("|---|---|---|" + "---|" * (3 * len(names)))
    for r in rows:
        fl1 = causal_flops(1, r["hq"], r["N"], D) / 1e9
        cells = []
        for n in names:
            cells += [f"{fl1 / r[f'{n}_b1_warm']:.0f}", f"{fl1 / r[f'{n}_b1_cold']:.0f}", f"{4 * fl1 / r[f'{n}_b4']:.0f}"]
        print(f"| {r['hq']} | {r['hkv']} | {r['N']} | " + " | ".join(cells) + " |")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "prefill-cold.json"), "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, date=time.strftime("%Y-%m-%d"),
                           unit="ms per call (b4: the four sequences)", rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
