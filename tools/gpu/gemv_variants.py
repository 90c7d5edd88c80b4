#!/usr/bin/env python3
"""Times builds of the small-batch GEMV (native/cuda/gemv.cu of other commits, or with its shape
constants edited) on the Llama-3-8B projections of a decode step,
beside cuBLASLt, taking turns over rounds; each build's products are first checked against
float64 (the GEMV forced with LIGHTTRANSFER_GEMM=gemv-only, so none runs on the library).

  python3 tools/gpu/gemv_variants.py --lib NAME=PATH[,VAR=VALUE...] [--lib ...] [--rows 1,2] [--rounds 3]

Each PATH is the C shim of the model operations (tools/gpu/model_ops_capi.cu with gemm.cu,
gemv.cu, layer_ops.cu, rope_append.cu, sampling.cu and runtime.cu), built as tools/gpu/run_model_ops.sh builds
it. GB/s counts the weights read; every call reads a different copy of the weights (more bytes
than 3x L2), calls captured in one CUDA graph, median over replays, then over rounds. The
VAR=VALUE pairs after a PATH are set in the environment while that build's calls are checked and
captured: the same PATH may appear under several names with different settings (a switch the
build under test reads), and LT_LINEAR_CONSTANT_WEIGHT=1 lets the GEMV read its weights before it
waits, as a model's projections do.
"""
import argparse
import contextlib
import math
import os
import statistics
import sys
import time

import torch
from harness import copy_bandwidth, graph_time
from model_ops_check import DEV, Lib, rel_err, set_gemm

SHAPES = [("q|k|v", 6144, 4096), ("o", 4096, 4096), ("gate|up", 28672, 4096), ("down", 4096, 14336),
          ("lm head", 128256, 4096)]
# Odd shapes for the check only: a last block with fewer rows, k with most threads idle.
CHECK_ONLY = [("odd", 301, 1000), ("k=8", 7, 8), ("k=2056", 1029, 2056)]


@contextlib.contextmanager
def environment(settings):
    """Sets VAR=VALUE pairs for the duration of the block, then restores what was there."""
    before = {var: os.environ.get(var) for var in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for var, value in before.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def parse_lib(spec, ap):
    """NAME=PATH[,VAR=VALUE...] as (name, the loaded shim, {VAR: VALUE})."""
    name, _, rest = spec.partition("=")
    path, *pairs = rest.split(",")
    if not name or not path or any("=" not in pair or pair.startswith("=") for pair in pairs):
        ap.error(f"--lib {spec}: give NAME=PATH[,VAR=VALUE...]")
    return name, Lib(path), dict(pair.split("=", 1) for pair in pairs)


def check(libs, rows):
    failed = 0
    for name, lib, settings in libs:
        set_gemm("gemv-only")
        worst = 0.0
        for label, n, k in SHAPES + CHECK_ONLY:
            for m in rows:
                x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
                w = torch.randn(n, k, device=DEV, dtype=torch.bfloat16) / math.sqrt(k)
                y = torch.full((m, n), float("nan"), device=DEV, dtype=torch.bfloat16)
                with environment(settings):
                    lib.linear(x, w, y)
                ref = x.double() @ w.double().T
                rel = rel_err(y, ref)
                worst = max(worst, rel) if rel == rel else float("inf")
                if not rel < 1e-2:
                    failed += 1
                    print(f"FAIL {name} {label} m={m} n={n} k={k}: relative error {rel:.2e}", flush=True)
        print(f"check {name}: worst relative error {worst:.2e}", flush=True)
    set_gemm("auto")
    return failed


def bench(libs, rows, rounds, reps, l2):
    table = []
    for label, n, k in SHAPES:
        wbytes = n * k * 2
        copies = max(2, math.ceil(3 * l2 / wbytes))
        ws = [torch.randn(n, k, device=DEV, dtype=torch.bfloat16) / math.sqrt(k) for _ in range(copies)]
        for m in rows:
            x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
            y = torch.empty(m, n, device=DEV, dtype=torch.bfloat16)
            variants = [(name, lib, "gemv-only", settings) for name, lib, settings in libs]
            variants.append(("cublasLt", libs[0][1], "cublasLt", {}))
            ncalls = max(copies, 24)
            samples = {v[0]: [] for v in variants}
            for _ in range(rounds):
                for vname, lib, mode, settings in variants:
                    set_gemm(mode)
                    calls = [lambda w=ws[i % copies], lib=lib: lib.linear(x, w, y) for i in range(ncalls)]
                    with environment(settings):
                        samples[vname].append(graph_time(calls, reps=reps)[0])
            set_gemm("auto")
            gbps = {v: wbytes / (statistics.median(t) * 1e-3) / 1e9 for v, t in samples.items()}
            table.append((label, m, gbps))
            print(f"{label:<8} m={m} " + "  ".join(f"{v} {g:5.0f}" for v, g in gbps.items()) + " GB/s", flush=True)
            del x, y
        del ws
        torch.cuda.empty_cache()
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", action="append", required=True, help="NAME=PATH of a shim build (repeatable)")
    ap.add_argument("--rows", default="1", help="row counts, e.g. 1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    rows = [int(v) for v in args.rows.split(",")]
    libs = [parse_lib(spec, ap) for spec in args.lib]
    torch.manual_seed(int(time.time()))
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    copy, _ = copy_bandwidth()
    print(f"{props.name}, {props.multi_processor_count} SMs; device-to-device copy {copy:.0f} GB/s", flush=True)
    failed = check(libs, rows)
    table = bench(libs, rows, args.rounds, args.reps, l2)
    names = [name for name, _, _ in libs] + ["cublasLt"]
    print("\n| projection | rows | " + " | ".join(names) + " |")
    print("| --- | --: | " + " | ".join("--:" for _ in names) + " |")
    for label, m, gbps in table:
        print(f"| {label} | {m} | " + " | ".join(f"{gbps[v]:.0f}" for v in names) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
