#!/usr/bin/env python3
"""Correctness check and benchmark of the CUDA model operations (native/cuda/gemm.cu,
native/cuda/layer_ops.cu and native/cuda/sampling.cu), driven through the C shim
tools/gpu/model_ops_capi.cu (built by tools/gpu/run_model_ops.sh) on torch tensors.

  1. correctness, fresh torch.randn inputs each case, outputs poisoned with NaN first:
     - linear vs float64 torch (x @ w.T + bias) for m in {1,3,17,64,257} × n,k in
       {64,96,200,4096,14336}², bf16 and f16, cuBLASLt (default), cuBLAS (LIGHTTRANSFER_GEMM=cublas,
       a subset) and the in-house fallback (LIGHTTRANSFER_GEMM=fallback), plus odd k and
       misaligned pointers; ‖y−ref‖/‖ref‖ < 1e-2 (bf16) / 2e-3 (f16); the error messages for
       unsupported dtypes;
     - rmsNorm (with/without fused residual; the residual must equal torch's rounded sum
       exactly), rope against transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb with
       llama3 scaling (rope_theta 500000) at positions up to 131071, swiGlu, embedding (exact),
       argmax in f32, bf16 and f16 (ties → lowest index, NaN wins as in torch.argmax);
     - topCandidates in f32, bf16 and f16 against torch.topk's k-th value: max (bit for bit, the
       first of equal values), count and the (id, score) set exact, mass within 1e-5 of a float64
       sum; rows with ties at the k-th value, NaNs, -inf, all-equal values (count > capacity),
       signed zeros and subnormals, all NaN, +inf; both load paths; the error messages;
     - repetitionPenalty in f32, bf16 and f16 against torch (gather, torch.where(x > 0, x / p,
       x * p) in f32, scatter back, cast), bit for bit (any NaN for NaN): random distinct ids per
       row in random order, an empty row, a row covering the whole vocabulary, ±0, ±inf, NaN and
       values that overflow once divided; logits kept off subnormals, which the kernel flushes
       to zero; the error messages.
  2. benchmark (bf16): every Llama-3-8B linear at m = 1, 8, 32, 4096 through our linear() and
     torch.nn.functional.linear in the same process, CUDA graphs of calls over rotated weight
     copies (more bytes than 3× L2), CUDA-event medians; GB/s of weights read for m <= 32,
     TFLOP/s for m = 4096; the fallback GEMM at m = 1 and 4096 for one shape; the row-wise ops;
     the device-to-device copy bandwidth (2 GiB torch copy, bytes read + written); topCandidates at
     1, 32 and 256 rows of 128256 bf16 and f32 logits.

Writes check.log, gemm.json and gemm.md to --out; prints PASS/FAIL per case (FAIL lines and a
summary per group in the console) and a short table last. Exit status is non-zero on any failure.
"""
import ctypes
import datetime
import json
import math
import os
import statistics
import sys

import torch
import torch.nn.functional as F

from harness import arg_parser, copy_bandwidth, event_times, graph_time

F32, F16, BF16 = 0, 1, 2
DEV = "cuda"
CODE = {torch.float32: F32, torch.float16: F16, torch.bfloat16: BF16}
NAME = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
TOL = {torch.bfloat16: 1e-2, torch.float16: 2e-3, torch.float32: 1e-5}


# ----------------------------------------------------------------------------- the library
class Lib:
    def __init__(self, path):
        L = ctypes.CDLL(path)
        vp, i, f, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_char_p
        L.lt_gemm_backend.argtypes = [cp, i, cp, i, cp, i]
        L.lt_linear.argtypes = [i, i, vp, vp, vp, vp, i, i, i, vp, cp, i]
        L.lt_rms_norm.argtypes = [i, i, vp, vp, vp, vp, i, i, f, vp, cp, i]
        L.lt_rope.argtypes = [i, vp, vp, vp, vp, i, i, i, i, vp, cp, i]
        L.lt_swiglu.argtypes = [i, vp, vp, i, i, vp, cp, i]
        L.lt_embedding.argtypes = [i, i, vp, vp, vp, i, i, i, vp, cp, i]
        L.lt_argmax.argtypes = [i, vp, vp, i, i, vp, cp, i]
        L.lt_top_candidates.argtypes = [i, vp, vp, vp, vp, vp, vp, vp, i, i, i, i, vp, cp, i]
        L.lt_repetition_penalty.argtypes = [i, vp, vp, vp, vp, i, i, vp, cp, i]
        for fn in ("lt_gemm_backend", "lt_linear", "lt_rms_norm", "lt_rope", "lt_swiglu", "lt_embedding",
                   "lt_argmax", "lt_top_candidates", "lt_repetition_penalty"):
            getattr(L, fn).restype = i
        self.L = L
        self.err = ctypes.create_string_buffer(2048)

    @staticmethod
    def _p(t):
        return None if t is None else ctypes.c_void_p(t.data_ptr())

    @staticmethod
    def _s():
        return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)

    def _ok(self, rc):
        if rc != 0:
            raise RuntimeError(self.err.value.decode())

    def backend(self):
        name, detail = ctypes.create_string_buffer(64), ctypes.create_string_buffer(1024)
        self._ok(self.L.lt_gemm_backend(name, 64, detail, 1024, self.err, len(self.err)))
        return name.value.decode(), detail.value.decode()

    def linear(self, x, w, y, bias=None, m=None, n=None, k=None, xcode=None, wcode=None):
        m = x.shape[0] if m is None else m
        n = w.shape[0] if n is None else n
        k = w.shape[1] if k is None else k
        xc = CODE[x.dtype] if xcode is None else xcode
        wc = CODE[w.dtype] if wcode is None else wcode
        self._ok(self.L.lt_linear(xc, wc, self._p(x), self._p(w), self._p(bias), self._p(y), m, n, k, self._s(),
                                  self.err, len(self.err)))

    def rms_norm(self, x, weight, y, residual=None, eps=1e-5):
        rows, dim = x.shape
        self._ok(self.L.lt_rms_norm(CODE[x.dtype], CODE[weight.dtype], self._p(x), self._p(residual),
                                    self._p(weight), self._p(y), rows, dim, eps, self._s(), self.err, len(self.err)))

    def rope(self, q, k, positions, inv_freq):
        tokens, hq, d = q.shape
        hkv = k.shape[1]
        self._ok(self.L.lt_rope(CODE[q.dtype], self._p(q), self._p(k), self._p(positions), self._p(inv_freq), tokens,
                                hq, hkv, d, self._s(), self.err, len(self.err)))

    def swiglu(self, x, y):
        rows, two_inner = x.shape
        self._ok(self.L.lt_swiglu(CODE[x.dtype], self._p(x), self._p(y), rows, two_inner // 2, self._s(), self.err,
                                  len(self.err)))

    def embedding(self, ids, table, y):
        self._ok(self.L.lt_embedding(CODE[table.dtype], CODE[y.dtype], self._p(ids), self._p(table), self._p(y),
                                     ids.numel(), table.shape[1], table.shape[0], self._s(), self.err, len(self.err)))

    def argmax(self, logits, out):
        rows, vocab = logits.shape
        self._ok(self.L.lt_argmax(CODE[logits.dtype], self._p(logits), self._p(out), rows, vocab, self._s(),
                                  self.err, len(self.err)))

    def top_candidates(self, logits, temperature, k, capacity=None, out=None, rows=None, vocab=None, code=None):
        """(ids, scores, count, max, mass), into `out` (such a tuple) or new poisoned tensors."""
        rows = logits.shape[0] if rows is None else rows
        vocab = logits.shape[1] if vocab is None else vocab
        capacity = 2 * k if capacity is None else capacity
        ids, scores, count, mx, mass = top_candidates_out(max(rows, 1), max(capacity, 1)) if out is None else out
        self._ok(self.L.lt_top_candidates(CODE[logits.dtype] if code is None else code, self._p(logits),
                                          self._p(temperature), self._p(ids), self._p(scores), self._p(count),
                                          self._p(mx), self._p(mass), rows, vocab, k, capacity, self._s(), self.err,
                                          len(self.err)))
        return ids, scores, count, mx, mass

    def repetition_penalty(self, logits, ids, offsets, penalty, rows=None, vocab=None, code=None):
        rows = logits.shape[0] if rows is None else rows
        vocab = logits.shape[1] if vocab is None else vocab
        self._ok(self.L.lt_repetition_penalty(CODE[logits.dtype] if code is None else code, self._p(logits),
                                              self._p(ids), self._p(offsets), self._p(penalty), rows, vocab,
                                              self._s(), self.err, len(self.err)))


def top_candidates_out(rows, capacity):
    """topCandidates' outputs (ids, scores, count, max, mass), poisoned."""
    return (torch.full((rows, capacity), -7, device=DEV, dtype=torch.int32),
            torch.full((rows, capacity), float("nan"), device=DEV),
            torch.full((rows,), -7, device=DEV, dtype=torch.int32),
            torch.full((rows,), float("nan"), device=DEV), torch.full((rows,), float("nan"), device=DEV))


def set_gemm(mode):
    if mode in (None, "auto"):
        os.environ.pop("LIGHTTRANSFER_GEMM", None)
    else:
        os.environ["LIGHTTRANSFER_GEMM"] = mode


def rel_err(y, ref):
    y64, r64 = y.double(), ref.double()
    return (torch.linalg.vector_norm(y64 - r64) / torch.linalg.vector_norm(r64).clamp_min(1e-300)).item()


class Log:
    def __init__(self, path):
        self.f = open(path, "w", buffering=1)
        self.groups = {}  # group -> [pass, fail, worst]
        self.failed = 0

    def case(self, group, ok, msg, err=None):
        g = self.groups.setdefault(group, [0, 0, 0.0])
        g[0 if ok else 1] += 1
        if err is not None and not math.isnan(err):
            g[2] = max(g[2], err)
        elif err is not None:
            g[2] = float("nan")
        line = f"{'PASS' if ok else 'FAIL'} [{group}] {msg}"
        self.f.write(line + "\n")
        if not ok:
            self.failed += 1
            print(line, flush=True)

    def note(self, msg):
        self.f.write(msg + "\n")
        print(msg, flush=True)

    def summary(self):
        for g, (p, fl, worst) in self.groups.items():
            self.note(f"  {g:<34} {p:4d} pass {fl:3d} fail   worst {worst:.2e}")


# ----------------------------------------------------------------------------- checks
def check_linear(lib, log):
    sizes = [64, 96, 200, 4096, 14336]
    ms = [1, 3, 17, 64, 257]
    torch.manual_seed(1234)
    for dtype in (torch.bfloat16, torch.float16):
        tol = TOL[dtype]
        for n in sizes:
            for k in sizes:
                w = torch.randn(n, k, device=DEV, dtype=dtype) / math.sqrt(k)
                bias = torch.randn(n, device=DEV, dtype=dtype)
                w64 = w.double()
                for mi, m in enumerate(ms):
                    x = torch.randn(m, k, device=DEV, dtype=dtype)
                    use_bias = (mi + n + k) % 2 == 1
                    ref = x.double() @ w64.T + (bias.double() if use_bias else 0)
                    modes = ["auto", "fallback"] + (["cublas"] if m in (3, 64) else [])
                    for mode in modes:
                        y = torch.full((m, n), float("nan"), device=DEV, dtype=dtype)
                        set_gemm(mode)
                        try:
                            lib.linear(x, w, y, bias if use_bias else None)
                            torch.cuda.synchronize()
                            e = rel_err(y, ref)
                            ok = e < tol and bool(torch.isfinite(y).all())
                            msg = f"m={m} n={n} k={k} bias={int(use_bias)} rel={e:.2e}"
                        except Exception as ex:  # noqa: BLE001
                            ok, e, msg = False, float("nan"), f"m={m} n={n} k={k}: {ex}"
                        log.case(f"linear {mode} {NAME[dtype]}", ok, msg, e)
                del w, w64, bias
        # odd k (element-wise loads in the fallback) and pointers off 16-byte alignment
        for (m, n, k, off) in [(3, 67, 201, 0), (17, 200, 4097, 0), (64, 33, 7, 0), (257, 4099, 95, 0),
                               (5, 4096, 4096, 1), (33, 96, 200, 3), (1, 14336, 4096, 1), (1, 1, 1, 0),
                               (2, 3, 0, 0)]:
            xb = torch.randn(m * k + off, device=DEV, dtype=dtype)
            wb = torch.randn(n * k + off, device=DEV, dtype=dtype) / math.sqrt(max(k, 1))
            x, w = xb[off:].view(m, k), wb[off:].view(n, k)
            bias = torch.randn(n + off, device=DEV, dtype=dtype)[off:]
            ref = x.double() @ w.double().T + bias.double()
            for mode in ("auto", "cublas", "fallback"):
                yb = torch.full((m * n + off,), float("nan"), device=DEV, dtype=dtype)
                y = yb[off:].view(m, n)
                set_gemm(mode)
                try:
                    lib.linear(x, w, y, bias)
                    torch.cuda.synchronize()
                    e = rel_err(y, ref)
                    ok = e < tol and bool(torch.isfinite(y).all())
                    msg = f"odd m={m} n={n} k={k} offset={off} rel={e:.2e}"
                except Exception as ex:  # noqa: BLE001
                    ok, e, msg = False, float("nan"), f"odd m={m} n={n} k={k} offset={off}: {ex}"
                log.case(f"linear {mode} {NAME[dtype]}", ok, msg, e)
    set_gemm("auto")

    # unsupported combinations must throw with a clear message, not run
    x = torch.randn(4, 64, device=DEV, dtype=torch.bfloat16)
    y = torch.empty(4, 32, device=DEV, dtype=torch.bfloat16)
    for desc, wt, want in [("f32 weights", torch.float32, "f32 weights on CUDA"),
                           ("f16 weights under bf16 x", torch.float16, "dtype")]:
        w = torch.randn(32, 64, device=DEV, dtype=wt)
        try:
            lib.linear(x, w, y)
            log.case("linear errors", False, f"{desc}: no error")
        except RuntimeError as ex:
            log.case("linear errors", want in str(ex), f"{desc}: '{ex}'")
    set_gemm("bogus")
    try:
        lib.linear(x, torch.randn(32, 64, device=DEV, dtype=torch.bfloat16), y)
        log.case("linear errors", False, "LIGHTTRANSFER_GEMM=bogus: no error")
    except RuntimeError as ex:
        log.case("linear errors", "LIGHTTRANSFER_GEMM" in str(ex), f"LIGHTTRANSFER_GEMM=bogus: '{ex}'")
    set_gemm("auto")


def check_rms_norm(lib, log):
    torch.manual_seed(99)
    eps = 1e-5
    combos = [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16), (torch.bfloat16, torch.float32),
              (torch.float32, torch.float32)]
    for xt, wt in combos:
        for rows in (1, 3, 17, 64, 257):
            for dim in (4096, 896, 200, 5120, 4097, 64, 16384):
                for with_res in (False, True):
                    x = torch.randn(rows, dim, device=DEV, dtype=xt)
                    wgt = (1 + 0.1 * torch.randn(dim, device=DEV)).to(wt)
                    res = torch.randn(rows, dim, device=DEV, dtype=xt) * 3 if with_res else None
                    res_in = res.clone() if with_res else None
                    y = torch.full_like(x, float("nan"))
                    lib.rms_norm(x, wgt, y, res, eps)
                    torch.cuda.synchronize()
                    if with_res:
                        want_res = (res_in.float() + x.float()).to(xt)
                        mism = int((res.view(torch.int16 if xt != torch.float32 else torch.int32)
                                    != want_res.view(torch.int16 if xt != torch.float32 else torch.int32)).sum())
                        v = want_res.double()
                    else:
                        mism = 0
                        v = x.double()
                    ref = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps) * wgt.double()
                    e = rel_err(y, ref)
                    ok = e < TOL[xt] and mism == 0 and bool(torch.isfinite(y).all())
                    log.case(f"rmsNorm x={NAME[xt]} w={NAME[wt]}", ok,
                             f"rows={rows} dim={dim} residual={int(with_res)} rel={e:.2e} residual_mismatch={mism}", e)
    # in place (y aliases x), no residual
    x = torch.randn(5, 4096, device=DEV, dtype=torch.bfloat16)
    wgt = torch.randn(4096, device=DEV, dtype=torch.bfloat16)
    v = x.double()
    ref = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps) * wgt.double()
    lib.rms_norm(x, wgt, x, None, eps)
    torch.cuda.synchronize()
    e = rel_err(x, ref)
    log.case("rmsNorm x=bf16 w=bf16", e < 1e-2, f"in place rows=5 dim=4096 rel={e:.2e}", e)


def llama3_inv_freq_by_hand(d, base=500000.0, factor=8.0, low=1.0, high=4.0, old=8192):
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).to(device=DEV, dtype=torch.float) / d))
    low_w, high_w = old / low, old / high
    wavelen = 2 * math.pi / inv
    inv_l = torch.where(wavelen > low_w, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = ~(wavelen < high_w) * ~(wavelen > low_w)
    return torch.where(medium, smoothed, inv_l)


def transformers_rope(hq, hkv, d, log):
    """(rotary module, apply_rotary_pos_emb, description) from transformers, or None."""
    try:
        import transformers
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
    except Exception as ex:  # noqa: BLE001
        log.note(f"transformers not importable ({ex}); rope checked against a by-hand reference")
        return None
    rp = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192, "rope_theta": 500000.0}
    want = llama3_inv_freq_by_hand(d)
    tries = [dict(rope_parameters=dict(rp)), dict(rope_theta=500000.0, rope_scaling=dict(rp))]
    errors = []
    for kw in tries:
        try:
            cfg = LlamaConfig(hidden_size=hq * d, num_attention_heads=hq, num_key_value_heads=hkv, head_dim=d,
                              intermediate_size=256, num_hidden_layers=1, vocab_size=128,
                              max_position_embeddings=131072, **kw)
            rot = LlamaRotaryEmbedding(config=cfg, device=DEV).to(DEV)
            inv = rot.inv_freq.float()
            diff = (inv - want).abs().max().item() / want.abs().max().item()
            if diff > 1e-6:
                errors.append(f"{list(kw)}: inv_freq differs from llama3 by {diff:.1e}")
                continue
            scaling = float(getattr(rot, "attention_scaling", 1.0))
            return rot, apply_rotary_pos_emb, (f"transformers {transformers.__version__} LlamaRotaryEmbedding "
                                               f"(config {list(kw)[0]}), attention_scaling {scaling}")
        except Exception as ex:  # noqa: BLE001
            errors.append(f"{list(kw)}: {ex}")
    log.note("transformers rotary embedding unusable: " + "; ".join(errors))
    return None


def check_rope(lib, log):
    torch.manual_seed(7)
    info = {}
    for (hq, hkv, d) in [(32, 8, 128), (14, 2, 64), (28, 4, 128), (5, 1, 36), (8, 8, 80)]:
        tr = transformers_rope(hq, hkv, d, log)
        if tr is not None:
            rot, apply, desc = tr
            inv = rot.inv_freq.float().contiguous()
        else:
            rot, apply, desc = None, None, "by-hand llama3 inv_freq, f32 angle"
            inv = llama3_inv_freq_by_hand(d).contiguous()
        info[f"{hq}/{hkv}/{d}"] = desc
        for tokens in (1, 17, 257, 2048):
            for dtype in (torch.bfloat16, torch.float16):
                pos = torch.randint(0, 131072, (tokens,), device=DEV, dtype=torch.int32)
                pos[0] = 131071
                if tokens > 1:
                    pos[1] = 0
                q = torch.randn(tokens, hq, d, device=DEV, dtype=dtype)
                k = torch.randn(tokens, hkv, d, device=DEV, dtype=dtype)
                q0, k0 = q.clone(), k.clone()
                lib.rope(q, k, pos, inv)
                torch.cuda.synchronize()
                # reference 1 (pass/fail): transformers on f32-upcast inputs, f32 cos/sin
                qf = q0.float().transpose(0, 1).unsqueeze(0)
                kf = k0.float().transpose(0, 1).unsqueeze(0)
                pid = pos.long().unsqueeze(0)
                if rot is not None:
                    cos, sin = rot(qf, pid)
                    qr, kr = apply(qf, kf, cos, sin)
                    # transformers' own half-precision path, for context
                    qh, kh = q0.transpose(0, 1).unsqueeze(0), k0.transpose(0, 1).unsqueeze(0)
                    cosh, sinh = rot(qh, pid)
                    qhr, _ = apply(qh, kh, cosh, sinh)
                    own = rel_err(qhr[0].transpose(0, 1), qr[0].transpose(0, 1))
                else:
                    ang = (pos.float()[:, None] * inv[None, :])
                    emb = torch.cat([ang, ang], -1)
                    cos, sin = emb.cos()[None, None], emb.sin()[None, None]

                    def rh(t):
                        return torch.cat([-t[..., d // 2:], t[..., :d // 2]], -1)
                    qr, kr = qf * cos + rh(qf) * sin, kf * cos + rh(kf) * sin
                    own = float("nan")
                qr, kr = qr[0].transpose(0, 1), kr[0].transpose(0, 1)
                eq, ek = rel_err(q, qr), rel_err(k, kr)
                # reference 2 (information): angle in float64, i.e. no f32 rounding of pos·inv_freq
                a64 = pos.double()[:, None] * inv.double()[None, :]
                c64 = torch.cat([a64.cos(), a64.cos()], -1)[:, None, :]
                s64 = torch.cat([a64.sin(), a64.sin()], -1)[:, None, :]
                q64 = q0.double()
                q64r = q64 * c64 + torch.cat([-q64[..., d // 2:], q64[..., :d // 2]], -1) * s64
                e64 = rel_err(q, q64r)
                e = max(eq, ek)
                ok = e < TOL[dtype] and bool(torch.isfinite(q).all() and torch.isfinite(k).all())
                log.case(f"rope {NAME[dtype]}", ok,
                         f"hq={hq} hkv={hkv} d={d} tokens={tokens} maxpos={int(pos.max())} rel_q={eq:.2e} "
                         f"rel_k={ek:.2e} | vs f64-angle {e64:.2e} | transformers' own {NAME[dtype]} path "
                         f"{own:.2e}", e)
    for key, desc in info.items():
        log.f.write(f"rope reference for {key}: {desc}\n")
    return info


def check_swiglu(lib, log):
    torch.manual_seed(5)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for rows in (1, 17, 257):
            for inner in (14336, 4864, 200, 201):
                x = torch.randn(rows, 2 * inner, device=DEV, dtype=dtype) * 3
                y = torch.full((rows, inner), float("nan"), device=DEV, dtype=dtype)
                lib.swiglu(x, y)
                torch.cuda.synchronize()
                g, u = x[:, :inner].double(), x[:, inner:].double()
                ref = g * torch.sigmoid(g) * u
                e = rel_err(y, ref)
                tol = TOL[dtype] if dtype != torch.float32 else 1e-5
                log.case(f"swiGlu {NAME[dtype]}", e < tol and bool(torch.isfinite(y).all()),
                         f"rows={rows} inner={inner} rel={e:.2e}", e)
    x = torch.tensor([[-200.0, 200.0, 0.0, -50.0, 1.0, 1.0, 1.0, 1.0]], device=DEV, dtype=torch.bfloat16)
    y = torch.full((1, 4), float("nan"), device=DEV, dtype=torch.bfloat16)
    lib.swiglu(x, y)
    torch.cuda.synchronize()
    log.case("swiGlu bf16", bool(torch.isfinite(y).all()), f"extremes -200/200/0/-50 -> {y.tolist()}")


def check_embedding(lib, log):
    torch.manual_seed(11)
    for tt, yt in [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16), (torch.bfloat16, torch.float32),
                   (torch.float32, torch.bfloat16), (torch.float32, torch.float32)]:
        for vocab, dim in [(1000, 4096), (1000, 200), (517, 4097), (128256, 4096)]:
            table = torch.randn(vocab, dim, device=DEV, dtype=tt)
            for tokens in (1, 17, 257):
                ids = torch.randint(0, vocab, (tokens,), device=DEV, dtype=torch.int32)
                ids[0] = vocab - 1
                y = torch.full((tokens, dim), float("nan"), device=DEV, dtype=yt)
                lib.embedding(ids, table, y)
                torch.cuda.synchronize()
                ref = table[ids.long()].to(yt)
                ok = bool(torch.equal(y, ref))
                log.case(f"embedding {NAME[tt]}->{NAME[yt]}", ok, f"vocab={vocab} dim={dim} tokens={tokens}",
                         0.0 if ok else 1.0)
    table = torch.randn(10, 64, device=DEV, dtype=torch.bfloat16)
    ids = torch.tensor([3, -1, 10], device=DEV, dtype=torch.int32)
    y = torch.full((3, 64), float("nan"), device=DEV, dtype=torch.bfloat16)
    lib.embedding(ids, table, y)
    torch.cuda.synchronize()
    ok = torch.equal(y[0], table[3]) and bool((y[1:] == 0).all())
    log.case("embedding bf16->bf16", ok, "out-of-range ids give zero rows")


def check_argmax(lib, log):
    torch.manual_seed(3)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rows in (1, 3, 64):
            for vocab in (128256, 151936, 32000, 1001, 7):
                logits = torch.randn(rows, vocab, device=DEV, dtype=dtype)
                # ties: the row max copied to two other places, one before and one after
                for r in range(rows):
                    if r % 2 == 0 and vocab > 4:
                        j = int(torch.randint(1, vocab - 1, (1,)))
                        logits[r, j] = 10.0
                        logits[r, j - 1] = 10.0 if r % 4 == 0 else logits[r, j - 1]
                        logits[r, vocab - 1] = 10.0
                if rows >= 3:
                    logits[1, vocab // 2] = float("nan")
                out = torch.full((rows,), -1, device=DEV, dtype=torch.int32)
                lib.argmax(logits, out)
                torch.cuda.synchronize()
                want = []
                for r in range(rows):
                    row = logits[r]
                    nan = torch.isnan(row).nonzero()
                    if nan.numel():
                        want.append(int(nan[0]))
                    else:
                        want.append(int((row == row.max()).nonzero()[0]))
                want_t = torch.tensor(want, device=DEV, dtype=torch.int32)
                ta = torch.argmax(logits, dim=1).to(torch.int32)
                ok = bool(torch.equal(out, want_t))
                log.case(f"argmax {NAME[dtype]}", ok, f"rows={rows} vocab={vocab} ours={out[:4].tolist()} "
                                                      f"want={want[:4]} torch.argmax agrees="
                                                      f"{bool(torch.equal(ta, want_t))}", 0.0 if ok else 1.0)


def top_candidate_logits(rows, vocab, dtype, k):
    """Random logits (scale 3) with the edge cases in rows 0-6 (those that exist): 0 ties at the k-th
    value, 1 NaNs, 2 -inf but for k // 2 values (count = vocab), 3 all equal, 4 all <= 0 with
    signed zeros and a positive subnormal on top (vocab >= 7), 5 all NaN, 6 one +inf (mass NaN, as the CPU's)."""
    x = (torch.randn(rows, vocab, device=DEV) * 3).to(dtype)
    g = torch.Generator(device="cpu").manual_seed(rows * 7919 + vocab + k)

    def cols(n):
        return torch.randperm(vocab, generator=g)[:n].to(DEV)
    kth = torch.topk(x[0].float(), k).values[-1]
    below = (x[0].float() < kth).nonzero().flatten()
    x[0, below[torch.randperm(below.numel(), generator=g)[:3].to(DEV)]] = kth.to(dtype)
    if rows > 1:
        x[1, cols(max(1, vocab // 10))] = float("nan")
    if rows > 2:
        keep = x[2, cols(k // 2)].clone()
        x[2] = float("-inf")
        x[2, cols(k // 2)] = keep
    if rows > 3:
        x[3] = 1.5
    if rows > 4 and vocab >= 7:
        x[4] = -x[4].abs()
        c = cols(7)
        x[4, c[:3]] = -0.0
        x[4, c[3:6]] = 0.0
        x[4, c[6]] = 2.0 ** -24 if dtype == torch.float16 else 2.0 ** -130
    if rows > 5:
        x[5] = float("nan")
    if rows > 6:
        x[6, cols(1)] = float("inf")
    return x


def top_candidates_reference(x, temperature, k):
    """Per row (max, count, k-th value, mass in float64) from the definition, on f32 values; max is
    the first of the equal largest values (the sign of a zero as the CPU keeps it)."""
    xf = x.float()
    valid = ~torch.isnan(xf)
    rows, vocab = xf.shape
    # NaN as -inf cannot change the k-th value unless it is -inf anyway; fewer than k numbers then
    # give a k-th of -inf and every number counts, as the contract says.
    kth = torch.topk(torch.where(valid, xf, float("-inf")), k, dim=1).values[:, -1]
    mx_val = torch.where(valid, xf, float("-inf")).max(dim=1).values
    first = torch.where(valid & (xf == mx_val[:, None]), torch.arange(vocab, device=DEV), vocab).min(dim=1).values
    mx = torch.where(first < vocab, xf.gather(1, first.clamp(max=vocab - 1)[:, None])[:, 0],
                     torch.full_like(mx_val, float("-inf")))
    sel = valid & (xf >= kth[:, None])
    t = ((xf - mx[:, None]).double() / temperature.double()[:, None]).exp()
    mass = torch.where(valid, t, torch.zeros_like(t)).sum(dim=1)
    mass = torch.where(mx == float("-inf"), torch.zeros_like(mass), mass)
    return mx, sel.sum(dim=1).to(torch.int32), kth, sel, mass


def compare_top_candidates(x, temperature, k, capacity, got):
    """'' when got = (ids, scores, count, max, mass) is right for x, else what is wrong; and the
    worst relative mass error."""
    ids, scores, count, mx, mass = got
    rmx, rcount, kth, sel, rmass = top_candidates_reference(x, temperature, k)
    xf = x.float()
    bits = lambda t: t.contiguous().view(torch.int32)  # noqa: E731
    bad = []
    if not torch.equal(bits(mx), bits(rmx)):
        r = int((bits(mx) != bits(rmx)).nonzero()[0])
        bad.append(f"max row {r}: {mx[r].item()!r} want {rmx[r].item()!r}")
    if not torch.equal(count, rcount):
        r = int((count != rcount).nonzero()[0])
        bad.append(f"count row {r}: {int(count[r])} want {int(rcount[r])}")
    worst = 0.0
    for r in range(x.shape[0]):
        c, want = int(count[r]), int(rcount[r])
        n = min(c, capacity)
        rid = ids[r, :n].long()
        if n and (rid.min() < 0 or rid.max() >= x.shape[1]):
            bad.append(f"row {r}: ids out of range")
            continue
        if not torch.equal(bits(scores[r, :n]), bits(xf[r, rid])):
            bad.append(f"row {r}: scores are not the logits of the ids")
        if want <= capacity:
            if not torch.equal(torch.sort(rid).values, sel[r].nonzero().flatten()):
                bad.append(f"row {r}: the ids are not the {want} logits >= the k-th")
        elif rid.unique().numel() != n or not bool(sel[r, rid].all()):
            bad.append(f"row {r}: overflowing row stored ids that are repeated or below the k-th")
        a, b = float(mass[r]), float(rmass[r])
        if math.isnan(b):
            ok = math.isnan(a)
        else:
            e = abs(a - b) / max(abs(b), 1e-300) if b else abs(a)
            worst = max(worst, e)
            ok = e < 1e-5
        if not ok:
            bad.append(f"row {r}: mass {a!r} want {b!r}")
    return "; ".join(bad[:4]), worst


def check_top_candidates(lib, log):
    torch.manual_seed(13)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rows, vocab in [(5, 1003), (4, 128256), (33, 32000), (7, 151936), (9, 7)]:
            for k in (1, 40, 256):
                if k > vocab:
                    continue
                x = top_candidate_logits(rows, vocab, dtype, k)
                temperature = torch.empty(rows, device=DEV).uniform_(0.3, 2.0)
                for off in ((0, 1) if vocab == 128256 else (0,)):
                    xs = x
                    if off:  # shifted off 16-byte alignment: the scalar loads
                        buf = torch.empty(rows * vocab + off, device=DEV, dtype=dtype)
                        xs = buf[off:].view(rows, vocab)
                        xs.copy_(x)
                    capacity = 2 * k
                    got = lib.top_candidates(xs, temperature, k, capacity)
                    torch.cuda.synchronize()
                    bad, worst = compare_top_candidates(x, temperature, k, capacity, got)
                    log.case(f"topCandidates {NAME[dtype]}", not bad,
                             f"rows={rows} vocab={vocab} k={k} offset={off} counts={got[2][:7].tolist()} "
                             f"mass_rel={worst:.1e} {bad}", worst)
    # capacity == k, and rows of one logit
    x = top_candidate_logits(6, 1, torch.float32, 1)
    t = torch.ones(6, device=DEV)
    bad, worst = compare_top_candidates(x, t, 1, 1, lib.top_candidates(x, t, 1, 1))
    log.case("topCandidates f32", not bad, f"vocab=1 {bad}", worst)
    x = torch.zeros(2, 64, device=DEV)
    for desc, kw, want in [("k > capacity", dict(k=5, capacity=4), "need 1 <= k <= capacity and k <= vocab"),
                           ("k > vocab", dict(k=65, capacity=70), "need 1 <= k <= capacity and k <= vocab"),
                           ("k = 0", dict(k=0, capacity=4), "need 1 <= k <= capacity and k <= vocab"),
                           ("vocab 0", dict(k=1, vocab=0), "vocab must be positive"),
                           ("rows -1", dict(k=1, rows=-1), "rows must be >= 0"),
                           ("i32 logits", dict(k=1, code=3), "the logits must be f32, f16 or bf16, not i32")]:
        try:
            lib.top_candidates(x, torch.ones(2, device=DEV), **kw)
            log.case("topCandidates errors", False, f"{desc}: no error")
        except RuntimeError as ex:
            log.case("topCandidates errors", want in str(ex), f"{desc}: '{ex}'")


def penalty_case(rows, vocab, dtype, specials=False):
    """(logits, ids, offsets, penalty) for repetitionPenalty: logits randn · 3 with magnitudes
    >= 1e-3 (neither they nor their penalised values are subnormal in any dtype), penalties in
    [0.5, 2]; row 0 lists no ids when rows > 1, row 1 every id when rows > 2, the others a random
    distinct set in random order. With specials, row 0 (given ids first) holds ±0, ±inf, NaN and
    ±max / 2 of the dtype at penalty 0.25, where +max / 2 overflows to inf once divided."""
    x = torch.randn(rows, vocab, device=DEV) * 3
    x = torch.where(x.abs() < 1e-3, torch.copysign(torch.full_like(x, 1e-3), x), x).to(dtype)
    penalty = torch.empty(rows, device=DEV).uniform_(0.5, 2.0)
    big = torch.finfo(dtype).max / 2
    special = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), big, -big]
    per_row = []
    for r in range(rows):
        if r == 0 and specials:
            n = int(torch.randint(len(special), max(len(special), int(0.6 * vocab)) + 1, (1,)))
        elif r == 0 and rows > 1:
            n = 0
        elif r == 1 and rows > 2:
            n = vocab
        else:
            n = int(torch.randint(1, max(2, int(0.6 * vocab)), (1,)))
        per_row.append(torch.randperm(vocab, device=DEV)[:n])
    if specials:
        x[0, per_row[0][:len(special)]] = torch.tensor(special, device=DEV, dtype=dtype)
        penalty[0] = 0.25
    counts = torch.tensor([len(c) for c in per_row], device=DEV)
    offsets = torch.cat([torch.zeros(1, device=DEV, dtype=torch.long), counts.cumsum(0)]).to(torch.int32)
    return x, torch.cat(per_row).to(torch.int32), offsets, penalty


def repetition_penalty_reference(x, ids, offsets, penalty):
    rows, vocab = x.shape
    counts = (offsets[1:] - offsets[:-1]).long()
    row_of = torch.repeat_interleave(torch.arange(rows, device=DEV), counts)
    flat = row_of * vocab + ids.long()
    v = x.float().view(-1)[flat]
    p = penalty[row_of]
    ref = x.clone()
    ref.view(-1)[flat] = torch.where(v > 0, v / p, v * p).to(x.dtype)
    return ref


def compare_penalised(got, ref):
    """'' when got equals ref bit for bit (any NaN matching any NaN), else the first difference."""
    it = torch.int32 if got.dtype == torch.float32 else torch.int16
    differ = (got.view(it) != ref.view(it)) & ~(torch.isnan(got) & torch.isnan(ref))
    if not bool(differ.any()):
        return ""
    r, c = (int(v) for v in differ.nonzero()[0])
    return f"{int(differ.sum())} differ, first [{r}, {c}]: {got[r, c].item()!r} want {ref[r, c].item()!r}"


def check_repetition_penalty(lib, log):
    torch.manual_seed(21)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rows, vocab in [(1, 1003), (3, 1003), (33, 32000), (5, 128256), (4, 7), (257, 1001)]:
            for specials in ((False, True) if vocab >= 7 and rows <= 5 else (False,)):
                x, ids, offsets, penalty = penalty_case(rows, vocab, dtype, specials)
                ref = repetition_penalty_reference(x, ids, offsets, penalty)
                lib.repetition_penalty(x, ids, offsets, penalty)
                torch.cuda.synchronize()
                bad = compare_penalised(x, ref)
                log.case(f"repetitionPenalty {NAME[dtype]}", not bad,
                         f"rows={rows} vocab={vocab} ids={ids.numel()} specials={int(specials)} {bad}",
                         0.0 if not bad else 1.0)
    x = torch.zeros(2, 64, device=DEV)
    ids, offsets, penalty = (torch.zeros(1, device=DEV, dtype=torch.int32),
                             torch.tensor([0, 1, 1], device=DEV, dtype=torch.int32), torch.ones(2, device=DEV))
    lib.repetition_penalty(x, ids, offsets, penalty, rows=0)
    torch.cuda.synchronize()
    log.case("repetitionPenalty errors", bool((x == 0).all()), "rows 0 launches nothing")
    for desc, kw, want in [("vocab 0", dict(vocab=0), "vocab must be positive"),
                           ("rows -1", dict(rows=-1), "rows must be >= 0"),
                           ("i32 logits", dict(code=3), "the logits must be f32, f16 or bf16, not i32")]:
        try:
            lib.repetition_penalty(x, ids, offsets, penalty, **kw)
            log.case("repetitionPenalty errors", False, f"{desc}: no error")
        except RuntimeError as ex:
            log.case("repetitionPenalty errors", want in str(ex), f"{desc}: '{ex}'")


def quick_checks(lib, log):
    """Small cases of every op and path, for compute-sanitizer memcheck."""
    torch.manual_seed(17)
    for dtype in (torch.bfloat16, torch.float16):
        for (m, n, k, off) in [(3, 67, 201, 0), (17, 64, 96, 1), (65, 130, 40, 0), (1, 8, 7, 0)]:
            xb = torch.randn(m * k + off, device=DEV, dtype=dtype)
            wb = torch.randn(n * k + off, device=DEV, dtype=dtype)
            x, w = xb[off:].view(m, k), wb[off:].view(n, k)
            bias = torch.randn(n, device=DEV, dtype=dtype)
            ref = x.double() @ w.double().T + bias.double()
            for mode in ("auto", "cublas", "fallback"):
                y = torch.full((m, n), float("nan"), device=DEV, dtype=dtype)
                set_gemm(mode)
                lib.linear(x, w, y, bias)
                torch.cuda.synchronize()
                e = rel_err(y, ref)
                log.case(f"quick linear {mode}", e < TOL[dtype], f"m={m} n={n} k={k} off={off} rel={e:.2e}", e)
    set_gemm("auto")
    for dim in (4096, 4097, 200):
        x = torch.randn(3, dim, device=DEV, dtype=torch.bfloat16)
        res = torch.randn(3, dim, device=DEV, dtype=torch.bfloat16)
        wgt = torch.randn(dim, device=DEV, dtype=torch.bfloat16)
        y = torch.empty_like(x)
        want = (res.float() + x.float()).to(torch.bfloat16).double()
        ref = want * torch.rsqrt(want.pow(2).mean(-1, keepdim=True) + 1e-5) * wgt.double()
        lib.rms_norm(x, wgt, y, res)
        torch.cuda.synchronize()
        e = rel_err(y, ref)
        log.case("quick rmsNorm", e < 1e-2, f"dim={dim} rel={e:.2e}", e)
    for d in (128, 36):
        q = torch.randn(5, 4, d, device=DEV, dtype=torch.bfloat16)
        k = torch.randn(5, 2, d, device=DEV, dtype=torch.bfloat16)
        pos = torch.randint(0, 131072, (5,), device=DEV, dtype=torch.int32)
        inv = llama3_inv_freq_by_hand(d).contiguous()
        q0 = q.double()
        lib.rope(q, k, pos, inv)
        torch.cuda.synchronize()
        a = (pos.float()[:, None] * inv[None, :]).double()
        c, s_ = torch.cat([a.cos(), a.cos()], -1)[:, None], torch.cat([a.sin(), a.sin()], -1)[:, None]
        ref = q0 * c + torch.cat([-q0[..., d // 2:], q0[..., :d // 2]], -1) * s_
        e = rel_err(q, ref)
        log.case("quick rope", e < 1e-2, f"d={d} rel={e:.2e}", e)
    for inner in (4864, 201):
        x = torch.randn(3, 2 * inner, device=DEV, dtype=torch.bfloat16)
        y = torch.empty(3, inner, device=DEV, dtype=torch.bfloat16)
        lib.swiglu(x, y)
        torch.cuda.synchronize()
        g, u = x[:, :inner].double(), x[:, inner:].double()
        e = rel_err(y, g * torch.sigmoid(g) * u)
        log.case("quick swiGlu", e < 1e-2, f"inner={inner} rel={e:.2e}", e)
    table = torch.randn(100, 4097, device=DEV, dtype=torch.bfloat16)
    ids = torch.tensor([0, 99, 5, -3], device=DEV, dtype=torch.int32)
    y = torch.empty(4, 4097, device=DEV, dtype=torch.float32)
    lib.embedding(ids, table, y)
    torch.cuda.synchronize()
    log.case("quick embedding", torch.equal(y[:3], table[ids[:3].long()].float()) and bool((y[3] == 0).all()), "")
    for vocab in (128256, 1001):
        logits = torch.randn(3, vocab, device=DEV)
        out = torch.empty(3, device=DEV, dtype=torch.int32)
        lib.argmax(logits, out)
        torch.cuda.synchronize()
        log.case("quick argmax", torch.equal(out, torch.argmax(logits, 1).to(torch.int32)), f"vocab={vocab}")
    for vocab in (128256, 1001):
        x = top_candidate_logits(7, vocab, torch.bfloat16, 40)
        t = torch.ones(7, device=DEV)
        got = lib.top_candidates(x, t, 40)
        torch.cuda.synchronize()
        bad, worst = compare_top_candidates(x, t, 40, 80, got)
        log.case("quick topCandidates", not bad, f"vocab={vocab} {bad}", worst)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x, ids, offsets, penalty = penalty_case(3, 1001, dtype, specials=dtype == torch.float16)
        ref = repetition_penalty_reference(x, ids, offsets, penalty)
        lib.repetition_penalty(x, ids, offsets, penalty)
        torch.cuda.synchronize()
        bad = compare_penalised(x, ref)
        log.case("quick repetitionPenalty", not bad, f"{NAME[dtype]} {bad}")


# ----------------------------------------------------------------------------- benchmark
def plain_time(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    return statistics.median(event_times(fn, reps))


LLAMA3_8B = [("q_proj", 4096, 4096), ("k_proj", 1024, 4096), ("v_proj", 1024, 4096), ("o_proj", 4096, 4096),
             ("gate_up", 2 * 14336, 4096), ("down_proj", 4096, 14336), ("lm_head", 128256, 4096)]


def bench_linear(lib, l2_bytes, ms, fallback_shape, reps):
    rows = []
    dtype = torch.bfloat16
    for name, n, k in LLAMA3_8B:
        wbytes = n * k * 2
        copies = max(2, math.ceil(3 * l2_bytes / wbytes))
        ws = [torch.randn(n, k, device=DEV, dtype=dtype) / math.sqrt(k) for _ in range(copies)]
        for m in ms:
            x = torch.randn(m, k, device=DEV, dtype=dtype)
            y = torch.empty(m, n, device=DEV, dtype=dtype)
            flops = 2.0 * m * n * k
            impls = [("ours", "auto"), ("torch", None)]
            if name == fallback_shape and m in (1, 4096):
                impls.append(("fallback", "fallback"))
            res = {"shape": name, "n": n, "k": k, "m": m, "weight_bytes": wbytes, "copies": copies}
            for label, mode in impls:
                if label == "torch":
                    def call_for(w):
                        return lambda: F.linear(x, w)
                else:
                    def call_for(w):
                        return lambda: lib.linear(x, w, y)
                set_gemm(mode if mode else "auto")
                est = plain_time(call_for(ws[0]), reps=3)
                ncalls = max(copies, min(400, math.ceil(3.0 / max(est, 1e-3))))
                calls = [call_for(ws[i % copies]) for i in range(ncalls)]
                ms_med, spread = graph_time(calls, reps=reps)
                res[label] = {"ms": ms_med, "min": spread[0], "max": spread[1], "calls_per_graph": ncalls,
                              "gbps": wbytes / (ms_med * 1e-3) / 1e9, "tflops": flops / (ms_med * 1e-3) / 1e12}
            set_gemm("auto")
            rows.append(res)
            o, t = res["ours"], res["torch"]
            extra = ""
            if "fallback" in res:
                extra = f"  fallback {res['fallback']['ms'] * 1e3:9.1f} us"
            print(f"  {name:<9} m={m:<5} ours {o['ms'] * 1e3:9.1f} us ({o['gbps']:6.0f} GB/s, {o['tflops']:6.1f} TF/s)"
                  f"  torch {t['ms'] * 1e3:9.1f} us ({t['gbps']:6.0f} GB/s, {t['tflops']:6.1f} TF/s){extra}",
                  flush=True)
            del x, y
        del ws
        torch.cuda.empty_cache()
    return rows


def bench_rowwise(lib, l2_bytes, reps):
    """Row-wise ops at decode (1 row) and prefill (4096 rows) sizes of Llama-3-8B; bytes are the
    minimum each must move (inputs read once, outputs written once)."""
    out = []
    bf = torch.bfloat16

    def run(name, rows, make, bytes_per, call):
        sets = max(1, min(16, math.ceil(3 * l2_bytes / max(bytes_per, 1))))
        data = [make() for _ in range(sets)]
        ncalls = max(sets, 20)
        calls = [(lambda dd=data[i % sets]: call(dd)) for i in range(ncalls)]
        ms_med, _ = graph_time(calls, reps=reps)
        out.append({"op": name, "rows": rows, "us": ms_med * 1e3, "bytes": bytes_per,
                    "gbps": bytes_per / (ms_med * 1e-3) / 1e9})
        print(f"  {name:<30} rows={rows:<5} {ms_med * 1e3:8.1f} us  {bytes_per / (ms_med * 1e-3) / 1e9:7.0f} GB/s",
              flush=True)

    h = 4096
    w = torch.randn(h, device=DEV, dtype=bf)
    for rows in (1, 4096):
        run("rmsNorm+residual (4096)", rows,
            lambda r=rows: (torch.randn(r, h, device=DEV, dtype=bf), torch.randn(r, h, device=DEV, dtype=bf),
                            torch.empty(r, h, device=DEV, dtype=bf)),
            rows * h * 2 * 4 + h * 2, lambda d: lib.rms_norm(d[0], w, d[2], d[1]))
        run("rope q32/k8 d128 (in place)", rows,
            lambda r=rows: (torch.randn(r, 32, 128, device=DEV, dtype=bf), torch.randn(r, 8, 128, device=DEV, dtype=bf),
                            torch.randint(0, 131072, (r,), device=DEV, dtype=torch.int32)),
            rows * 40 * 128 * 2 * 2, lambda d: lib.rope(d[0], d[1], d[2], inv_freq_bench))
        run("swiGlu (14336)", rows,
            lambda r=rows: (torch.randn(r, 2 * 14336, device=DEV, dtype=bf), torch.empty(r, 14336, device=DEV, dtype=bf)),
            rows * 14336 * 2 * 3, lambda d: lib.swiglu(d[0], d[1]))
        run("embedding (4096)", rows,
            lambda r=rows: (torch.randint(0, 128256, (r,), device=DEV, dtype=torch.int32),
                            torch.empty(r, h, device=DEV, dtype=bf)),
            rows * h * 2 * 2, lambda d: lib.embedding(d[0], emb_table, d[1]))
    for rows in (1, 64):
        run("argmax (128256, f32)", rows,
            lambda r=rows: (torch.randn(r, 128256, device=DEV), torch.empty(r, device=DEV, dtype=torch.int32)),
            rows * 128256 * 4, lambda d: lib.argmax(d[0], d[1]))
    for dtype in (bf, torch.float32):
        for rows in (1, 32, 256):
            t = torch.empty(rows, device=DEV).uniform_(0.3, 2.0)
            run(f"topCandidates k=64 ({NAME[dtype]})", rows,
                lambda r=rows, dt=dtype: (torch.randn(r, 128256, device=DEV, dtype=dt) * 3,
                                          top_candidates_out(r, 128)),
                rows * 128256 * (2 if dtype == bf else 4),
                lambda d, t=t: lib.top_candidates(d[0], t, 64, 128, out=d[1]))
    return out


inv_freq_bench = None
emb_table = None


def main():
    global inv_freq_bench, emb_table
    ap = arg_parser("build/libltmodelops.so", "/tmp/lt-model-ops")
    ap.add_argument("--ms", default="1,8,32,4096")
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--fallback-shape", default="gate_up")
    ap.add_argument("--quick", action="store_true", help="a few small checks (for compute-sanitizer), no bench")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lib = Lib(args.lib)
    log = Log(os.path.join(args.out, "check.log"))
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    log.note(f"device {props.name}, {props.multi_processor_count} SMs, L2 {l2 >> 20} MiB, torch {torch.__version__}, "
             f"cuda {torch.version.cuda}")
    for mode in ("auto", "cublas", "fallback"):
        set_gemm(mode)
        log.note(f"gemmBackend() with LIGHTTRANSFER_GEMM={mode}: {lib.backend()}")
    set_gemm("auto")
    try:
        log.note(f"torch preferred BLAS: {torch.backends.cuda.preferred_blas_library()}")
    except Exception:  # noqa: BLE001
        pass

    rope_info = {}
    if args.quick:
        quick_checks(lib, log)
        log.note("quick check summary:")
        log.summary()
        log.f.close()
        sys.exit(1 if log.failed else 0)
    if not args.skip_check:
        check_linear(lib, log)
        check_rms_norm(lib, log)
        rope_info = check_rope(lib, log)
        check_swiglu(lib, log)
        check_embedding(lib, log)
        check_argmax(lib, log)
        check_top_candidates(lib, log)
        check_repetition_penalty(lib, log)
        log.note("check summary:")
        log.summary()
        log.note(f"checks: {sum(g[0] for g in log.groups.values())} pass, {log.failed} fail")

    result = {"date": datetime.date.today().isoformat(), "device": props.name, "sms": props.multi_processor_count,
              "l2_bytes": l2, "torch": torch.__version__, "cuda": torch.version.cuda,
              "backend": lib.backend(), "checks": {g: {"pass": v[0], "fail": v[1], "worst": v[2]}
                                                   for g, v in log.groups.items()},
              "rope_reference": rope_info}
    if not args.skip_bench:
        inv_freq_bench = llama3_inv_freq_by_hand(128).contiguous()
        emb_table = torch.randn(128256, 4096, device=DEV, dtype=torch.bfloat16)
        gbps, copy_ms = copy_bandwidth()
        print(f"device-to-device copy: {gbps:.0f} GB/s (2 GiB in {copy_ms:.3f} ms)", flush=True)
        result["copy_gbps"] = gbps
        print("linear (bf16, Llama-3-8B shapes):", flush=True)
        ms = [int(v) for v in args.ms.split(",")]
        result["linear"] = bench_linear(lib, l2, ms, args.fallback_shape, args.reps)
        print("row-wise ops (bf16):", flush=True)
        result["rowwise"] = bench_rowwise(lib, l2, args.reps)
        del emb_table
        write_reports(args.out, result)
    with open(os.path.join(args.out, "gemm.json"), "w") as f:
        json.dump(result, f, indent=1)
    log.f.close()
    if not args.skip_bench:
        print_table(result)
    sys.exit(1 if log.failed else 0)


def write_reports(out, r):
    copy = r["copy_gbps"]
    lines = [f"# Linear (GEMM) benchmark: {r['device']}, {r['date']}", "",
             f"torch {r['torch']} (CUDA {r['cuda']}); our backend: {r['backend'][0]} ({r['backend'][1]}).",
             f"Device-to-device copy: **{copy:.0f} GB/s** (bytes read + written). bf16, CUDA graphs of calls over "
             "rotated weight copies (> 3× L2), median of the replays.", "",
             "| shape | n×k | m | ours (µs) | torch (µs) | ours/torch | ours GB/s | % of copy | ours TFLOP/s | "
             "torch TFLOP/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["linear"]:
        o, t = row["ours"], row["torch"]
        lines.append(f"| {row['shape']} | {row['n']}×{row['k']} | {row['m']} | {o['ms'] * 1e3:.1f} | "
                     f"{t['ms'] * 1e3:.1f} | {o['ms'] / t['ms']:.2f} | {o['gbps']:.0f} | {100 * o['gbps'] / copy:.0f}% | "
                     f"{o['tflops']:.1f} | {t['tflops']:.1f} |")
    fb = [row for row in r["linear"] if "fallback" in row]
    if fb:
        lines += ["", "In-house fallback GEMM (LIGHTTRANSFER_GEMM=fallback):", "",
                  "| shape | m | fallback (µs) | GB/s | TFLOP/s | cuBLASLt (µs) |", "|---|---:|---:|---:|---:|---:|"]
        for row in fb:
            f_ = row["fallback"]
            lines.append(f"| {row['shape']} | {row['m']} | {f_['ms'] * 1e3:.1f} | {f_['gbps']:.0f} | "
                         f"{f_['tflops']:.1f} | {row['ours']['ms'] * 1e3:.1f} |")
    lines += ["", "Row-wise ops (bf16, Llama-3-8B sizes; GB/s = minimum bytes moved / time):", "",
              "| op | rows | µs | GB/s | % of copy |", "|---|---:|---:|---:|---:|"]
    for row in r["rowwise"]:
        lines.append(f"| {row['op']} | {row['rows']} | {row['us']:.1f} | {row['gbps']:.0f} | "
                     f"{100 * row['gbps'] / copy:.0f}% |")
    with open(os.path.join(out, "gemm.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def print_table(r):
    copy = r["copy_gbps"]
    print(f"\n== {r['device']}  copy {copy:.0f} GB/s  backend {r['backend'][0]}")
    print(f"{'shape':<9} {'m':>5} {'ours us':>9} {'torch us':>9} {'o/t':>5} {'GB/s':>6} {'%copy':>6} {'TF/s':>6}")
    for row in r["linear"]:
        o, t = row["ours"], row["torch"]
        print(f"{row['shape']:<9} {row['m']:>5} {o['ms'] * 1e3:9.1f} {t['ms'] * 1e3:9.1f} {o['ms'] / t['ms']:5.2f} "
              f"{o['gbps']:6.0f} {100 * o['gbps'] / copy:5.0f}% {o['tflops']:6.1f}")
    for row in r["linear"]:
        if "fallback" in row:
            f_ = row["fallback"]
            print(f"fallback {row['shape']} m={row['m']}: {f_['ms'] * 1e3:.1f} us, {f_['gbps']:.0f} GB/s, "
                  f"{f_['tflops']:.1f} TF/s")
    for row in r["rowwise"]:
        print(f"{row['op']:<30} rows={row['rows']:<5} {row['us']:8.1f} us {row['gbps']:6.0f} GB/s")


if __name__ == "__main__":
    main()
