"""Losses: log-softmax + NLL (fused) and mean squared error."""
from __future__ import annotations

import math

from numba import njit

from nets.kernels.simd import LANES, vadd, vexp, vhmax, vload, vmax, vmul, vsplat, vstore, vsub, vsum


@njit(cache=True)
def logsoftmax_nll_forward(logp, logits, labels):
    # logp: (B, K) log-probabilities  logits: (B, K)  labels: (B,) int -> mean NLL (float64)
    B, K = logits.shape
    total = 0.0
    for b in range(B):
        m = logits[b, 0]
        for k in range(1, K):
            if logits[b, k] > m:
                m = logits[b, k]
        s = 0.0
        for k in range(K):
            s += math.exp(logits[b, k] - m)
        lse = m + math.log(s)
        for k in range(K):
            logp[b, k] = logits[b, k] - lse
        total -= logp[b, labels[b]]
    return total / B


@njit(cache=True)
def logsoftmax_nll_backward(dlogits, logp, labels):
    # dlogits: (B, K) = (softmax - onehot) / B
    B, K = logp.shape
    inv = dlogits.dtype.type(1.0 / B)
    for b in range(B):
        for k in range(K):
            dlogits[b, k] = math.exp(logp[b, k]) * inv
        dlogits[b, labels[b]] -= inv


@njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def mse_forward_grad(dpred, pred, target):
    # one pass: dpred = 2 (pred - target) / (B*D), returns the mean squared error (float64 sum)
    B, D = pred.shape
    scale = dpred.dtype.type(2.0 / (B * D))
    total = 0.0
    for b in range(B):
        s = pred.dtype.type(0.0)
        for d in range(D):
            e = pred[b, d] - target[b, d]
            s += e * e
            dpred[b, d] = scale * e
        total += s
    return total / (B * D)


@njit(cache=True)
def softmax_nll_rows(d, z, tgt, inv_n):
    # d: (N, V) overwritten with (softmax(z) - onehot(tgt)) * inv_n, the gradient of the mean
    # cross-entropy; returns the summed cross-entropy (float64). One row at a time (it stays in L1):
    # max, exp + sum, scale; lanes over the vocabulary (vexp: no math library call per value)
    N, V = z.shape
    nv = V // LANES * LANES
    zero = d.dtype.type(0.0)
    total = 0.0
    for r in range(N):
        zr = z[r]
        dr = d[r]
        m = zr[0]
        if nv:
            mv = vload(zr, 0)
            for i in range(LANES, nv, LANES):
                mv = vmax(mv, vload(zr, i))
            m = vhmax(mv)
        for i in range(nv, V):
            if zr[i] > m:
                m = zr[i]
        mb = vsplat(m)
        acc = vsplat(zero)
        for i in range(0, nv, LANES):
            e = vexp(vsub(vload(zr, i), mb))
            vstore(dr, i, e)
            acc = vadd(acc, e)
        s = vsum(acc)
        for i in range(nv, V):
            e = math.exp(zr[i] - m)
            dr[i] = e
            s += e
        total += float(m) + math.log(float(s)) - float(zr[tgt[r]])
        scale = d.dtype.type(inv_n / s)
        sb = vsplat(scale)
        for i in range(0, nv, LANES):
            vstore(dr, i, vmul(vload(dr, i), sb))
        for i in range(nv, V):
            dr[i] *= scale
        dr[tgt[r]] -= d.dtype.type(inv_n)
    return total
