"""On a GPU machine: the bf16 linear layers of test/gpu/model.test.ts (x @ w.T + bias), run through
PyTorch, whose F.linear with a bias reaches cuBLASLt like ours does. Run under racecheck it shows
whether hazards reported inside cuBLASLt's kernels (named nvjet_*) come with cuBLASLt itself:
  compute-sanitizer --tool racecheck --kernel-name kns=nvjet python3 tools/gpu/cublas_racecheck_repro.py
"""
import torch
import torch.nn.functional as F

for m, n, k in [(1, 4096, 4096), (64, 1024, 4096)]:
    x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
    w = torch.randn(n, k, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, dtype=torch.bfloat16, device="cuda")
    y = F.linear(x, w, b)
    want = x.double() @ w.double().T + b.double()
    err = ((y.double() - want).norm() / want.norm()).item()
    print(f"linear m={m} n={n} k={k}: relative error {err:.2e}")
torch.cuda.synchronize()
