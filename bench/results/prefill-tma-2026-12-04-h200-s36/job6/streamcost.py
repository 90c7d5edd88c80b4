# Timing only: what a streaming block's pieces cost (the sink tile, the per-block fixed cost), TMA build.
import sys, torch
sys.path.insert(0, "tools/gpu")
from prefill_check import Lib, timed
lib = Lib(sys.argv[1])
N, hq, hkv, d = 32768, 32, 8, 128
q = torch.randn(N, hq, d, device="cuda", dtype=torch.bfloat16)
k = torch.randn(N, hkv, d, device="cuda", dtype=torch.bfloat16)
v = torch.randn(N, hkv, d, device="cuda", dtype=torch.bfloat16)
out = torch.empty_like(q); lse = torch.empty(N, hq, device="cuda")
cases = [("causal", None), ("s4 w1020", (4, 1020)), ("s0 w1020", (0, 1020)), ("s0 w1024", (0, 1024)),
         ("s0 w129", (0, 129)), ("s0 w1", (0, 1)), ("s4 w1", (4, 1)), ("s0 w2048", (0, 2048))]
res = {n: [] for n, _ in cases}
for _ in range(5):
    for n, m in cases:
        res[n].append(timed(lambda m=m: lib.prefill(q, k, v, out, lse, mask=m), 10 if m is None else 20))
import statistics
blocks = hq * N // 128
for n, _ in cases:
    t = statistics.median(res[n])
    print(f"{n:10s} {t:8.3f} ms  {t * 1e3 * 132 / blocks:6.2f} us per block-slot")
