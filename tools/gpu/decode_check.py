#!/usr/bin/env python3
"""Correctness checks and benchmark of the CUDA decode attention and cache kernels.

Drives native/cuda/decode_attention.cu and kv_cache.cu through the ctypes shim
tools/gpu/decode_capi.cu (built by tools/gpu/run_decode.sh) with torch tensors.

  1. correctness: decode vs a float64 PyTorch reference (paged, shuffled page tables, mixed
     lengths incl. 0/1/pageSize±1 and split-KV lengths, GQA 1/4/8/12/20, d 64/128, f16/bf16);
     appendKv and cutToStreaming bit-exact vs torch gathers (overlapping pages, lengths
     below/at/above sink+window); ring property checks (append by the ring rule, then decode ==
     streaming-mask attention). Outputs are NaN-poisoned first. PASS/FAIL per case.
  2. benchmark: decode GB/s (K/V bytes read) over batch x context, vs the card's measured
     device-to-device copy bandwidth and vs torch SDPA on contiguous K/V; streaming ring at
     logical 128K vs full decode at 1K. CUDA graphs of rotated inputs, CUDA events, medians.

Writes decode.json and decode.md to --out; exits non-zero if any check fails.
"""
import ctypes
import json
import math
import os
import sys
import time
import traceback

import torch

from harness import arg_parser, copy_bandwidth, graph_time

DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
DTYPE_NAME = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
REL_BOUND = {torch.bfloat16: 1e-2, torch.float16: 2e-3}
LSE_BOUND = 1e-3

P = ctypes.c_void_p
I = ctypes.c_int
F = ctypes.c_float
U64 = ctypes.c_ulonglong


class Lib:
    def __init__(self, path):
        self.so = ctypes.CDLL(path)
        so = self.so
        so.lt_last_error.restype = ctypes.c_char_p
        so.lt_decode_workspace_bytes.argtypes = [I] * 9 + [ctypes.POINTER(U64)]
        so.lt_decode.argtypes = [I, P, P, P, P, P, P, P] + [I] * 7 + [F, P, U64, I, P]
        so.lt_append_kv.argtypes = [I, P, P, P, P, P] + [I] * 5 + [P]
        so.lt_cut_scratch_bytes.argtypes = [I] * 8 + [ctypes.POINTER(U64)]
        so.lt_cut_to_streaming.argtypes = [I, P, P, P, P] + [I] * 7 + [P, P]
        for f in ("lt_decode_workspace_bytes", "lt_decode", "lt_append_kv", "lt_cut_scratch_bytes",
                  "lt_cut_to_streaming"):
            getattr(so, f).restype = I

    def _check(self, rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: {self.so.lt_last_error().decode()}")

    @staticmethod
    def stream():
        return P(torch.cuda.current_stream().cuda_stream)

    def workspace_bytes(self, dtype, batch, hq, hkv, d, ps, num_pages, max_pages, sm):
        out = U64(0)
        self._check(self.so.lt_decode_workspace_bytes(dtype, batch, hq, hkv, d, ps, num_pages, max_pages, sm,
                                                      ctypes.byref(out)), "workspace_bytes")
        return out.value

    def decode(self, q, kp, vp, table, lens, out, lse, scale, ws, sm, dtype_code=None):
        batch, hq, d = q.shape
        num_pages, ps, hkv, _ = kp.shape
        code = DTYPE_CODE[q.dtype] if dtype_code is None else dtype_code
        rc = self.so.lt_decode(code, q.data_ptr(), kp.data_ptr(), vp.data_ptr(), table.data_ptr(),
                               lens.data_ptr(), out.data_ptr(), lse.data_ptr() if lse is not None else None,
                               batch, hq, hkv, d, ps, num_pages, table.shape[1], scale,
                               ws.data_ptr() if ws is not None else None,
                               ws.numel() * ws.element_size() if ws is not None else 0, sm, self.stream())
        self._check(rc, "decode")

    def append(self, k, v, kp, vp, slots):
        num_pages, ps, hkv, d = kp.shape
        rc = self.so.lt_append_kv(DTYPE_CODE[kp.dtype], k.data_ptr(), v.data_ptr(), kp.data_ptr(), vp.data_ptr(),
                                  slots.data_ptr(), k.shape[0], hkv, d, ps, num_pages, self.stream())
        self._check(rc, "appendKv")

    def cut(self, kp, vp, src, dst, length, sink, window):
        num_pages, ps, hkv, d = kp.shape
        code = DTYPE_CODE[kp.dtype]
        nbytes = U64(0)
        self._check(self.so.lt_cut_scratch_bytes(code, length, sink, window, hkv, d, ps, num_pages,
                                                 ctypes.byref(nbytes)), "cut scratch bytes")
        scratch = torch.full((max(nbytes.value, 16),), 0xA5, dtype=torch.uint8, device=kp.device)
        rc = self.so.lt_cut_to_streaming(code, kp.data_ptr(), vp.data_ptr(), src.data_ptr(), dst.data_ptr(), length,
                                         sink, window, hkv, d, ps, num_pages, scratch.data_ptr(), self.stream())
        self._check(rc, "cutToStreaming")


# ----------------------------------------------------------------------------- helpers

RESULTS = {"pass": 0, "fail": 0, "cases": [], "worst": {}}


def report(name, ok, detail=""):
    RESULTS["pass" if ok else "fail"] += 1
    RESULTS["cases"].append({"name": name, "ok": bool(ok), "detail": detail})
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def worst(key, value):
    RESULTS["worst"][key] = max(RESULTS["worst"].get(key, 0.0), float(value))


def ring_slot(p, sink, window):
    return p if p < sink else sink + (p - sink) % window


def make_workspace(lib, q, kp, table, sm):
    batch, hq, d = q.shape
    num_pages, ps, hkv, _ = kp.shape
    nbytes = lib.workspace_bytes(DTYPE_CODE[q.dtype], batch, hq, hkv, d, ps, num_pages, table.shape[1], sm)
    splits = nbytes // (4 * batch * hq * (d + 1)) if nbytes else 1
    # NaN-filled: a combine that read a partial no split wrote would show up.
    ws = torch.full((max(nbytes // 4, 4),), float("nan"), dtype=torch.float32, device=q.device) if nbytes else None
    return ws, splits


def ref_decode(q, kp, vp, table, lens, scale):
    """float64 paged decode reference: out [batch, hq, d], lse [batch, hq] (natural log)."""
    batch, hq, d = q.shape
    _, ps, hkv, _ = kp.shape
    g = hq // hkv
    out = torch.zeros(batch, hq, d, dtype=torch.float64, device=q.device)
    lse = torch.full((batch, hq), -math.inf, dtype=torch.float64, device=q.device)
    kflat, vflat = kp.reshape(-1, hkv, d), vp.reshape(-1, hkv, d)
    for b in range(batch):
        n = int(lens[b])
        if n == 0:
            continue
        s = torch.arange(n, device=q.device)
        rows = table[b, s // ps].long() * ps + s % ps
        K, V = kflat[rows].double(), vflat[rows].double()  # [n, hkv, d]
        qb = q[b].double().view(hkv, g, d)
        sc = torch.einsum("hgd,nhd->hgn", qb, K) * scale
        lse[b] = torch.logsumexp(sc, -1).reshape(hq)
        out[b] = torch.einsum("hgn,nhd->hgd", torch.softmax(sc, -1), V).reshape(hq, d)
    return out, lse


def ref_attend(q, K, V, scale):
    """q [hq, d], K/V [n, hkv, d] -> out [hq, d] f64, lse [hq] f64."""
    hq, d = q.shape
    hkv = K.shape[1]
    g = hq // hkv
    sc = torch.einsum("hgd,nhd->hgn", q.double().view(hkv, g, d), K.double()) * scale
    return (torch.einsum("hgn,nhd->hgd", torch.softmax(sc, -1), V.double()).reshape(hq, d),
            torch.logsumexp(sc, -1).reshape(hq))


def compare_decode(name, dtype, out, lse, ref_out, ref_lse, lens):
    lens_t = torch.as_tensor(lens, device=out.device)
    live = lens_t > 0
    ok = True
    msgs = []
    if not torch.isfinite(out).all():
        ok = False
        msgs.append(f"non-finite out at {torch.nonzero(~torch.isfinite(out))[:4].tolist()}")
    if lse is not None and torch.isnan(lse).any():
        ok = False
        msgs.append("NaN lse")
    if (~live).any():
        if not (out[~live] == 0).all():
            ok = False
            msgs.append("empty sequence: out != 0")
        if lse is not None and not torch.isneginf(lse[~live]).all():
            ok = False
            msgs.append(f"empty sequence: lse != -inf ({lse[~live].tolist()[:2]})")
    rel, lerr = 0.0, 0.0
    if live.any():
        o, r = out[live].double(), ref_out[live]
        rel = float((o - r).norm() / r.norm().clamp_min(1e-30))
        # per-sequence relative error too: a wrong short sequence hides in the norm of long ones
        per = ((out.double() - ref_out).flatten(1).norm(dim=1) / ref_out.flatten(1).norm(dim=1).clamp_min(1e-30))[live]
        rel = max(rel, float(per.max()))
        if rel >= REL_BOUND[dtype]:
            ok = False
        if lse is not None:
            lerr = float((lse[live].double() - ref_lse[live]).abs().max())
            if lerr >= LSE_BOUND:
                ok = False
    worst(f"decode rel {DTYPE_NAME[dtype]}", rel)
    worst("decode lse abs", lerr)
    report(name, ok, f"rel={rel:.2e} lse_abs={lerr:.2e} " + "; ".join(msgs))


# ----------------------------------------------------------------------------- decode checks

def decode_case(lib, dev, name, dtype, d, hq, hkv, lens, ps, sm, with_lse=True, q_gain=1.0, extra_pages=3):
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    batch = len(lens)
    max_pages = max(1, max((n + ps - 1) // ps for n in lens)) + extra_pages
    used = [(n + ps - 1) // ps for n in lens]
    num_live = sum(used)
    num_pages = num_live + 8  # 8 poison pages
    kp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
    vp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
    perm = torch.randperm(num_pages, device=dev).to(torch.int32)
    live_pages, poison_pages = perm[:num_live], perm[num_live:]
    # Poison pages and the unused tail of every last page hold NaN: reading past a sequence's end
    # or through an unused table entry would show.
    kp[poison_pages.long()] = float("nan")
    vp[poison_pages.long()] = float("nan")
    table = poison_pages[torch.randint(0, len(poison_pages), (batch, max_pages), device=dev)].clone()
    at = 0
    for b, n in enumerate(lens):
        table[b, :used[b]] = live_pages[at:at + used[b]]
        at += used[b]
        if n % ps:
            last = int(table[b, used[b] - 1])
            kp[last, n % ps:] = float("nan")
            vp[last, n % ps:] = float("nan")
    table = table.contiguous()
    lens_t = torch.tensor(lens, dtype=torch.int32, device=dev)
    q = (torch.randn(batch, hq, d, device=dev) * q_gain).to(dtype)
    scale = 1.0 / math.sqrt(d)
    out = torch.full((batch, hq, d), float("nan"), dtype=dtype, device=dev)
    lse = torch.full((batch, hq), float("nan"), dtype=torch.float32, device=dev) if with_lse else None
    ws, splits = make_workspace(lib, q, kp, table, sm)
    lib.decode(q, kp, vp, table, lens_t, out, lse, scale, ws, sm)
    torch.cuda.synchronize()
    ref_out, ref_lse = ref_decode(q, kp, vp, table, lens, scale)
    compare_decode(f"{name} splits={splits}", dtype, out, lse, ref_out, ref_lse, lens)


def run_decode_checks(lib, dev, sm_real):
    lens_main = [0, 1, 15, 16, 17, 63, 64, 65, 200, 1000, 4099, 17000]
    for dtype in (torch.float16, torch.bfloat16):
        for d in (64, 128):
            for hq, hkv in ((8, 8), (32, 8), (16, 2)):
                for sm in (1, sm_real, 100000):
                    decode_case(lib, dev, f"decode {DTYPE_NAME[dtype]} d{d} hq{hq}/hkv{hkv} ps16 sm{sm}",
                                dtype, d, hq, hkv, lens_main, 16, sm)
    # wider GQA groups: 12 (all 16 mma rows) and 20 (two CTAs of one kv head)
    for hq, hkv in ((24, 2), (40, 2)):
        for dtype in (torch.bfloat16, torch.float16):
            decode_case(lib, dev, f"decode {DTYPE_NAME[dtype]} d128 hq{hq}/hkv{hkv} ps16 sm{sm_real}",
                        dtype, 128, hq, hkv, lens_main, 16, sm_real)
    # page sizes: non-power-of-two and extremes
    for ps in (1, 5, 64):
        lens = [0, 1, ps - 1 if ps > 1 else 2, ps, ps + 1, 333, 5000]
        decode_case(lib, dev, f"decode bf16 d128 hq32/hkv8 ps{ps} sm{sm_real}", torch.bfloat16, 128, 32, 8,
                    lens, ps, sm_real)
    # peaky softmax (scores of std 5), no lse output, single sequences, batch of empties
    decode_case(lib, dev, "decode f16 d128 hq32/hkv8 peaky", torch.float16, 128, 32, 8, lens_main, 16, sm_real,
                q_gain=5.0)
    decode_case(lib, dev, "decode bf16 d64 hq32/hkv8 peaky", torch.bfloat16, 64, 32, 8, lens_main, 16, sm_real,
                q_gain=5.0)
    decode_case(lib, dev, "decode bf16 d128 no-lse", torch.bfloat16, 128, 32, 8, lens_main, 16, sm_real,
                with_lse=False)
    decode_case(lib, dev, "decode bf16 d128 batch1 len70000", torch.bfloat16, 128, 32, 8, [70000], 16, sm_real)
    decode_case(lib, dev, "decode f16 d64 all-empty", torch.float16, 64, 8, 2, [0, 0, 0], 16, sm_real)
    decode_case(lib, dev, "decode bf16 d128 big table, short lens", torch.bfloat16, 128, 32, 8, [1024, 3, 1024],
                16, sm_real, extra_pages=8000)

    # rejected inputs
    q = torch.randn(2, 8, 128, device=dev)
    kp = torch.randn(4, 16, 8, 128, device=dev)
    table = torch.zeros(2, 4, dtype=torch.int32, device=dev)
    lens = torch.tensor([3, 5], dtype=torch.int32, device=dev)
    out = torch.empty_like(q)
    try:
        lib.decode(q, kp, kp, table, lens, out, None, 0.1, None, sm_real)
        report("decode rejects f32", False, "no error")
    except RuntimeError as e:
        report("decode rejects f32", "CPU-only" in str(e), str(e))
    q96 = torch.randn(2, 8, 96, device=dev).half()
    kp96 = torch.randn(4, 16, 8, 96, device=dev).half()
    try:
        lib.decode(q96, kp96, kp96, table, lens, q96.clone(), None, 0.1, None, sm_real)
        report("decode rejects d=96", False, "no error")
    except RuntimeError as e:
        report("decode rejects d=96", "head dim" in str(e), str(e))


# ----------------------------------------------------------------------------- cache checks

def bits(t):
    return t.view(torch.uint8) if t.element_size() == 1 else t.view({2: torch.int16, 4: torch.int32}[t.element_size()])


def run_append_checks(lib, dev):
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for hkv, d in ((8, 128), (2, 64), (3, 5), (1, 4)):
            num_pages, ps, tokens = 64, 16, 300
            kp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
            vp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
            k = torch.randn(tokens, hkv, d, device=dev).to(dtype)
            v = torch.randn(tokens, hkv, d, device=dev).to(dtype)
            slots = torch.randperm(num_pages * ps, device=dev)[:tokens].to(torch.int32)
            rk, rv = kp.clone(), vp.clone()
            rk.view(-1, hkv, d)[slots.long()] = k
            rv.view(-1, hkv, d)[slots.long()] = v
            lib.append(k, v, kp, vp, slots)
            torch.cuda.synchronize()
            ok = torch.equal(bits(kp), bits(rk)) and torch.equal(bits(vp), bits(rv))
            report(f"appendKv {DTYPE_NAME[dtype]} hkv{hkv} d{d} tokens{tokens}", ok)
    kp = torch.randn(4, 16, 2, 64, device=dev).half()
    before = kp.clone()
    lib.append(kp[0, :0], kp[0, :0], kp, kp, torch.zeros(0, dtype=torch.int32, device=dev))
    torch.cuda.synchronize()
    report("appendKv zero tokens is a no-op", torch.equal(bits(kp), bits(before)))


def cut_reference(kp, vp, src, dst, length, sink, window):
    ps, hkv, d = kp.shape[1:]
    rk, rv = kp.clone(), vp.clone()
    kept = list(range(min(sink, length))) + list(range(max(sink, length - window), length))
    if kept:
        p = torch.tensor(kept, device=kp.device)
        slot = torch.tensor([ring_slot(x, sink, window) for x in kept], device=kp.device)
        srow = src[p // ps].long() * ps + p % ps
        drow = dst[slot // ps].long() * ps + slot % ps
        rk.view(-1, hkv, d)[drow] = kp.view(-1, hkv, d)[srow]
        rv.view(-1, hkv, d)[drow] = vp.view(-1, hkv, d)[srow]
    return rk, rv


def run_cut_checks(lib, dev):
    cases = [(10, 4, 20), (24, 4, 20), (25, 4, 20), (300, 4, 20), (3, 4, 20), (100, 0, 32), (100, 4, 1),
             (1000, 4, 1020), (1024, 4, 1020), (1025, 4, 1020), (4000, 4, 1020), (0, 4, 20)]
    for dtype, hkv, d in ((torch.bfloat16, 8, 128), (torch.float16, 2, 64), (torch.float32, 3, 5)):
        for length, sink, window in cases:
            for mode in ("prefix", "shuffled-overlap", "disjoint"):
                ps = 16
                src_n = (length + ps - 1) // ps
                ring = min(length, sink + window)
                dst_n = (ring + ps - 1) // ps
                num_pages = src_n + dst_n + 4
                kp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
                vp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
                perm = torch.randperm(num_pages, device=dev).to(torch.int32)
                src = perm[:max(src_n, 1)].clone()
                if mode == "prefix":
                    dst = src[:max(dst_n, 1)].clone()
                elif mode == "shuffled-overlap":
                    dst = src[torch.randperm(max(src_n, 1), device=dev)[:max(dst_n, 1)]].clone()
                else:
                    dst = perm[src_n:src_n + max(dst_n, 1)].clone()
                rk, rv = cut_reference(kp, vp, src, dst, length, sink, window)
                lib.cut(kp, vp, src, dst, length, sink, window)
                torch.cuda.synchronize()
                ok = torch.equal(bits(kp), bits(rk)) and torch.equal(bits(vp), bits(rv))
                report(f"cutToStreaming {DTYPE_NAME[dtype]} hkv{hkv} d{d} len{length} S{sink} W{window} {mode}", ok)


# ----------------------------------------------------------------------------- ring properties

def streaming_ref(q, ks, vs, p, sink, window, scale):
    keep = [j for j in range(p + 1) if j < sink or p - j < window]
    idx = torch.tensor(keep, device=q.device)
    return ref_attend(q, ks[idx], vs[idx], scale)


def run_ring_checks(lib, dev, sm_real):
    # (1) append token p at its ring slot, decode query p over min(p+1, S+W) slots
    for dtype, d, hq, hkv, sink, window, steps in ((torch.bfloat16, 128, 32, 8, 4, 20, 80),
                                                   (torch.float16, 64, 16, 2, 2, 37, 120)):
        ps = 16
        ring = sink + window
        pages = (ring + ps - 1) // ps
        num_pages = pages + 6
        kp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
        vp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
        table = torch.randperm(num_pages, device=dev)[:pages].to(torch.int32).view(1, pages).contiguous()
        ks = torch.randn(steps, hkv, d, device=dev).to(dtype)
        vs = torch.randn(steps, hkv, d, device=dev).to(dtype)
        qs = torch.randn(steps, hq, d, device=dev).to(dtype)
        scale = 1.0 / math.sqrt(d)
        worst_rel, worst_lse, ok = 0.0, 0.0, True
        for p in range(steps):
            s = ring_slot(p, sink, window)
            slot = torch.tensor([int(table[0, s // ps]) * ps + s % ps], dtype=torch.int32, device=dev)
            lib.append(ks[p:p + 1], vs[p:p + 1], kp, vp, slot)
            n = min(p + 1, ring)
            lens = torch.tensor([n], dtype=torch.int32, device=dev)
            out = torch.full((1, hq, d), float("nan"), dtype=dtype, device=dev)
            lse = torch.full((1, hq), float("nan"), dtype=torch.float32, device=dev)
            ws, _ = make_workspace(lib, qs[p:p + 1], kp, table, sm_real)
            lib.decode(qs[p:p + 1], kp, vp, table, lens, out, lse, scale, ws, sm_real)
            ro, rl = streaming_ref(qs[p], ks, vs, p, sink, window, scale)
            rel = float((out[0].double() - ro).norm() / ro.norm())
            le = float((lse[0].double() - rl).abs().max())
            worst_rel, worst_lse = max(worst_rel, rel), max(worst_lse, le)
            ok = ok and rel < REL_BOUND[dtype] and le < LSE_BOUND and bool(torch.isfinite(out).all())
        worst(f"decode rel {DTYPE_NAME[dtype]}", worst_rel)
        worst("decode lse abs", worst_lse)
        report(f"ring append+decode {DTYPE_NAME[dtype]} d{d} S{sink} W{window} positions 0..{steps - 1}", ok,
               f"rel={worst_rel:.2e} lse_abs={worst_lse:.2e}")

    # (2) full cache of L tokens -> cut -> append token L by the ring rule -> decode query L
    dtype, d, hq, hkv, sink, window, ps = torch.bfloat16, 128, 32, 8, 4, 64, 16
    scale = 1.0 / math.sqrt(d)
    for L in (30, 67, 68, 69, 300, 1000):
        full_pages = (L + 1 + ps - 1) // ps
        num_pages = full_pages + 4
        kp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
        vp = torch.randn(num_pages, ps, hkv, d, device=dev).to(dtype)
        src = torch.randperm(num_pages, device=dev)[:full_pages].to(torch.int32)
        ks = torch.randn(L + 1, hkv, d, device=dev).to(dtype)
        vs = torch.randn(L + 1, hkv, d, device=dev).to(dtype)
        pos = torch.arange(L, device=dev)
        lib.append(ks[:L], vs[:L], kp, vp, (src[pos // ps].long() * ps + pos % ps).to(torch.int32))
        ring = min(L, sink + window)
        dst = src[:(sink + window + ps - 1) // ps].clone()  # the runtime keeps the first pages
        lib.cut(kp, vp, src, dst, L, sink, window)
        s = ring_slot(L, sink, window)
        lib.append(ks[L:L + 1], vs[L:L + 1], kp, vp,
                   torch.tensor([int(dst[s // ps]) * ps + s % ps], dtype=torch.int32, device=dev))
        n = min(L + 1, sink + window)
        q = torch.randn(1, hq, d, device=dev).to(dtype)
        out = torch.full((1, hq, d), float("nan"), dtype=dtype, device=dev)
        lse = torch.full((1, hq), float("nan"), dtype=torch.float32, device=dev)
        table = dst.view(1, -1).contiguous()
        ws, _ = make_workspace(lib, q, kp, table, sm_real)
        lib.decode(q, kp, vp, table, torch.tensor([n], dtype=torch.int32, device=dev), out, lse, scale, ws, sm_real)
        ro, rl = streaming_ref(q[0], ks, vs, L, sink, window, scale)
        rel = float((out[0].double() - ro).norm() / ro.norm())
        le = float((lse[0].double() - rl).abs().max())
        ok = rel < REL_BOUND[dtype] and le < LSE_BOUND and bool(torch.isfinite(out).all())
        report(f"full->cut->append->decode bf16 L{L} S{sink} W{window} (ring {ring})", ok,
               f"rel={rel:.2e} lse_abs={le:.2e}")


# ----------------------------------------------------------------------------- benchmark

def run_bench(lib, dev, sm, args):
    hq, hkv, d, ps, dtype = 32, 8, 128, 16, torch.bfloat16
    g = hq // hkv
    scale = 1.0 / math.sqrt(d)
    props = torch.cuda.get_device_properties(dev)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    copy_gbps, _ = copy_bandwidth(dev)
    print(f"device-to-device copy: {copy_gbps:.0f} GB/s (read + write)", flush=True)

    batches = [int(x) for x in args.batches.split(",")]
    ctxs = [int(x) for x in args.ctxs.split(",")]
    free, total = torch.cuda.mem_get_info()
    row_bytes = hkv * d * 2  # one token of K (or V) for all kv heads
    page_bytes = ps * row_bytes
    need_tokens = max(b * c for b in batches for c in ctxs)
    budget_pages = int(min(free * 0.80, args.pool_gb * 1e9) // (2 * page_bytes))
    pool_pages = min(budget_pages, max(need_tokens // ps, 1) + 4096)
    print(f"pool: {pool_pages} pages = {2 * pool_pages * page_bytes / 1e9:.1f} GB (K+V), free {free / 1e9:.1f} GB",
          flush=True)
    kp = torch.empty(pool_pages, ps, hkv, d, device=dev, dtype=dtype)
    vp = torch.empty_like(kp)
    step = 16384
    for i in range(0, pool_pages, step):
        kp[i:i + step].normal_()
        vp[i:i + step].normal_()
    torch.cuda.synchronize()

    def bench_point(batch, ctx_tokens, max_pages, live_pages_per_seq, lens_val):
        pages_per_call = batch * live_pages_per_seq
        kv_bytes = batch * lens_val * hkv * d * 2 * 2
        if pages_per_call > pool_pages:
            return None
        rot = max(1, min(64, math.ceil(3 * l2 / max(kv_bytes, 1)), pool_pages // pages_per_call))
        perm = torch.randperm(pool_pages, device=dev).to(torch.int32)
        q = torch.randn(batch, hq, d, device=dev).to(dtype)
        out = torch.empty(batch, hq, d, device=dev, dtype=dtype)
        lse = torch.empty(batch, hq, device=dev, dtype=torch.float32)
        lens = torch.full((batch,), lens_val, dtype=torch.int32, device=dev)
        tables = []
        for r in range(rot):
            t = perm[r * pages_per_call:(r + 1) * pages_per_call].view(batch, live_pages_per_seq)
            if max_pages > live_pages_per_seq:  # capacity table: the tail is valid but unused
                t = torch.cat([t, perm[:1].expand(batch, max_pages - live_pages_per_seq)], 1)
            tables.append(t.contiguous())
        ws, splits = make_workspace(lib, q, kp, tables[0], sm)
        calls = [lambda t=t: lib.decode(q, kp, vp, t, lens, out, lse, scale, ws, sm) for t in tables]
        ms, spread = graph_time(calls, args.reps)
        return {"batch": batch, "ctx": ctx_tokens, "valid_slots": lens_val, "table_pages": max_pages,
                "splits": int(splits), "rotations": rot, "time_us": ms * 1e3,
                "time_us_min": spread[0] * 1e3, "time_us_max": spread[1] * 1e3,
                "kv_bytes": kv_bytes, "gbps": kv_bytes / (ms * 1e-3) / 1e9,
                "pct_copy": 100 * kv_bytes / (ms * 1e-3) / 1e9 / copy_gbps}

    rows = []
    for batch in batches:
        for ctx in ctxs:
            r = bench_point(batch, ctx, ctx // ps, ctx // ps, ctx)
            if r is None:
                print(f"skip batch {batch} ctx {ctx}: does not fit the pool", flush=True)
                continue
            rows.append(r)
            print(f"ours  b={batch:3d} ctx={ctx:6d} splits={r['splits']:2d} rot={r['rotations']:2d} "
                  f"{r['time_us']:9.1f} us {r['gbps']:7.0f} GB/s {r['pct_copy']:5.1f}%", flush=True)

    # streaming ring at logical length 128K (S+W = 1024 valid slots) vs full decode at 1K
    stream_rows = []
    ring_pages = 1024 // ps
    for batch in batches:
        full = bench_point(batch, 1024, ring_pages, ring_pages, 1024)
        ring = bench_point(batch, 131072, ring_pages, ring_pages, 1024)
        ring_cap = bench_point(batch, 131072, 131072 // ps, ring_pages, 1024)
        if full is None or ring is None or ring_cap is None:
            continue
        stream_rows.append({"batch": batch, "full_1k_us": full["time_us"], "ring_128k_us": ring["time_us"],
                            "ring_128k_captable_us": ring_cap["time_us"],
                            "ratio": ring["time_us"] / full["time_us"],
                            "ratio_captable": ring_cap["time_us"] / full["time_us"],
                            "splits_full": full["splits"], "splits_captable": ring_cap["splits"]})
        sr = stream_rows[-1]
        print(f"stream b={batch:3d} full1K {sr['full_1k_us']:.1f} us ring128K {sr['ring_128k_us']:.1f} us "
              f"(x{sr['ratio']:.3f}) ring128K+128K-table {sr['ring_128k_captable_us']:.1f} us "
              f"(x{sr['ratio_captable']:.3f})", flush=True)
    del kp, vp
    torch.cuda.empty_cache()

    # torch reference: SDPA on contiguous K/V, the g query heads of a kv head as g queries
    ref_rows = []
    backend = "default"
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        ctx_mgr = lambda: sdpa_kernel([SDPBackend.FLASH_ATTENTION])  # noqa: E731
        backend = "flash"
    except Exception:  # noqa: BLE001
        import contextlib
        ctx_mgr = contextlib.nullcontext
    for r in rows if not args.no_ref else []:
        batch, ctx = r["batch"], r["ctx"]
        kv_bytes = r["kv_bytes"]
        free, _ = torch.cuda.mem_get_info()
        rot = max(1, min(64, math.ceil(3 * l2 / kv_bytes)))
        while rot > 1 and rot * kv_bytes > free * 0.7:
            rot -= 1
        if kv_bytes > free * 0.7:
            ref_rows.append({"batch": batch, "ctx": ctx, "time_us": None})
            continue
        try:
            q = torch.randn(batch, hkv, g, d, device=dev).to(dtype)
            kvs = [(torch.randn(batch, hkv, ctx, d, device=dev, dtype=dtype),
                    torch.randn(batch, hkv, ctx, d, device=dev, dtype=dtype)) for _ in range(rot)]
            with ctx_mgr():
                calls = [lambda k=k, v=v: torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)
                         for k, v in kvs]
                ms, _ = graph_time(calls, args.reps)
            ref_rows.append({"batch": batch, "ctx": ctx, "time_us": ms * 1e3,
                             "gbps": kv_bytes / (ms * 1e-3) / 1e9})
            print(f"torch b={batch:3d} ctx={ctx:6d} {ms * 1e3:9.1f} us {kv_bytes / (ms * 1e-3) / 1e9:7.0f} GB/s",
                  flush=True)
        except Exception as e:  # noqa: BLE001
            ref_rows.append({"batch": batch, "ctx": ctx, "time_us": None, "error": str(e)[:200]})
            print(f"torch b={batch} ctx={ctx}: {str(e)[:200]}", flush=True)
        finally:
            kvs = None
            torch.cuda.empty_cache()
    for r in rows:
        r["torch_us"], r["speedup_vs_torch"] = None, None
    for r, t in zip(rows, ref_rows):
        r["torch_us"] = t.get("time_us")
        r["speedup_vs_torch"] = (t["time_us"] / r["time_us"]) if t.get("time_us") else None
    return {"copy_gbps": copy_gbps, "torch_backend": backend, "decode": rows, "streaming": stream_rows,
            "shape": {"hq": hq, "hkv": hkv, "d": d, "page_size": ps, "dtype": "bf16"}}


def markdown(bench, device):
    lines = [f"Decode attention on {device}: hq=32, hkv=8, d=128, bf16, pageSize 16, random page tables; "
             f"device-to-device copy {bench['copy_gbps']:.0f} GB/s (read+write). GB/s counts K/V bytes read. "
             f"torch = SDPA ({bench['torch_backend']}) on contiguous K/V, g query heads per kv head as queries.",
             "",
             "| batch | context | splits | time (µs) | GB/s | % of copy | torch SDPA (µs) | speed-up vs torch |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in bench["decode"]:
        t = f"{r['torch_us']:.1f}" if r.get("torch_us") else "—"
        s = f"{r['speedup_vs_torch']:.2f}×" if r.get("speedup_vs_torch") else "—"
        lines.append(f"| {r['batch']} | {r['ctx'] // 1024}K | {r['splits']} | {r['time_us']:.1f} | {r['gbps']:.0f} | "
                     f"{r['pct_copy']:.1f}% | {t} | {s} |")
    lines += ["", "Streaming ring (logical length 128K, S+W = 1024 valid slots) vs full decode at 1K:", "",
              "| batch | full 1K (µs) | ring, 64-page table (µs) | ratio | ring, 128K-capacity table (µs) | ratio |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in bench["streaming"]:
        lines.append(f"| {r['batch']} | {r['full_1k_us']:.1f} | {r['ring_128k_us']:.1f} | {r['ratio']:.3f} | "
                     f"{r['ring_128k_captable_us']:.1f} | {r['ratio_captable']:.3f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = arg_parser("build/libltdecode.so", "/tmp/lt-decode")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--ctxs", default="1024,4096,16384,32768,131072")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--pool-gb", type=float, default=40.0)
    ap.add_argument("--no-ref", action="store_true", help="skip the torch SDPA timings")
    ap.add_argument("--quick", action="store_true", help="a few small checks (for compute-sanitizer), no bench")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    dev = torch.device("cuda")
    lib = Lib(os.path.abspath(args.lib))
    props = torch.cuda.get_device_properties(dev)
    sm = props.multi_processor_count
    device = f"{props.name} ({sm} SMs, {props.total_memory / 2**30:.0f} GiB)"
    print(f"device: {device}; torch {torch.__version__}", flush=True)
    result = {"device": device, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}

    t0 = time.time()
    if args.quick:
        decode_case(lib, dev, "quick decode bf16 d128 hq32/hkv8", torch.bfloat16, 128, 32, 8, [0, 1, 17, 300, 5000],
                    16, sm)
        decode_case(lib, dev, "quick decode f16 d64 hq24/hkv2 sm1", torch.float16, 64, 24, 2, [0, 5, 700], 16, 1)
        decode_case(lib, dev, "quick decode f16 d128 hq40/hkv2 ps5", torch.float16, 128, 40, 2, [3, 900], 5, sm)
        run_append_checks(lib, dev)
        kp = torch.randn(40, 16, 2, 64, device=dev).half()
        src = torch.randperm(40, device=dev)[:32].to(torch.int32)
        rk, rv = cut_reference(kp, kp.clone(), src, src[:3].clone(), 500, 4, 40)
        lib.cut(kp, kp.clone(), src, src[:3].clone(), 500, 4, 40)
        torch.cuda.synchronize()
        report("quick cut", torch.equal(bits(kp), bits(rk)))
        print(f"checks: {RESULTS['pass']} pass, {RESULTS['fail']} fail")
        sys.exit(1 if RESULTS["fail"] else 0)
    if not args.skip_check:
        for fn in (lambda: run_decode_checks(lib, dev, sm), lambda: run_append_checks(lib, dev),
                   lambda: run_cut_checks(lib, dev), lambda: run_ring_checks(lib, dev, sm)):
            try:
                fn()
            except Exception:  # noqa: BLE001
                report("check section crashed", False, traceback.format_exc()[-600:])
        print(f"checks: {RESULTS['pass']} pass, {RESULTS['fail']} fail in {time.time() - t0:.0f}s; worst: "
              + ", ".join(f"{k}={v:.2e}" for k, v in RESULTS["worst"].items()), flush=True)
    result["checks"] = {"pass": RESULTS["pass"], "fail": RESULTS["fail"], "worst": RESULTS["worst"],
                        "failed": [c for c in RESULTS["cases"] if not c["ok"]]}

    md = ""
    if not args.skip_bench:
        try:
            bench = run_bench(lib, dev, sm, args)
            result["bench"] = bench
            md = markdown(bench, device)
        except Exception:  # noqa: BLE001
            report("benchmark crashed", False, traceback.format_exc()[-800:])
    with open(os.path.join(args.out, "decode.json"), "w") as f:
        json.dump(result, f, indent=1)
    if md:
        with open(os.path.join(args.out, "decode.md"), "w") as f:
            f.write(md)
        print()
        print(md)
    print(f"checks: {RESULTS['pass']} pass, {RESULTS['fail']} fail")
    sys.exit(1 if RESULTS["fail"] else 0)


if __name__ == "__main__":
    main()
