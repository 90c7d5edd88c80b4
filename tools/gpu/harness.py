"""Pieces shared by the GPU check scripts (decode_check.py, model_ops_check.py,
prefill_check.py): the options they all take and the CUDA timing helpers.

The scripts run as `python3 tools/gpu/<name>_check.py`, so Python puts this folder first on
sys.path and `import harness` finds this file.
"""
import argparse
import os
import statistics

import torch


def arg_parser(lib, out):
    """A parser with the options of every check script: --lib (the shim library; required
    when lib is None), --out (the results folder; $OUT, else out), --skip-check, --skip-bench."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=lib, required=lib is None)
    ap.add_argument("--out", default=os.environ.get("OUT", out))
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    return ap


def event_times(fn, reps):
    """ms of each of `reps` calls of fn, from CUDA events around each, waiting for each."""
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return times


def graph_time(calls, reps, warm=2):
    """Median ms per call of `calls` captured in one CUDA graph, replayed `reps` times, and the
    (min, max) of the replays."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on the capture stream: handles, plans and workspace exist
        for _ in range(warm):
            for c in calls:
                c()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        for c in calls:
            c()
    g.replay()
    torch.cuda.synchronize()
    times = [t / len(calls) for t in event_times(g.replay, reps)]
    del g
    return statistics.median(times), (min(times), max(times))


def copy_bandwidth(device="cuda"):
    """Device-to-device copy bandwidth of a 2 GiB bf16 tensor in GB/s (bytes read + written),
    and the median ms of one copy."""
    n = 1 << 30
    x = torch.randn(n, device=device, dtype=torch.bfloat16)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    t = statistics.median(event_times(lambda: y.copy_(x), 20))
    del x, y
    torch.cuda.empty_cache()
    return 2 * (n * 2) / (t * 1e-3) / 1e9, t
