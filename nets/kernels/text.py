"""Kernels of the text nets: embedding lookup, 1-D convolution (im2col by row chunks), 1-D max-pool,
the Elman recurrence (forward and backpropagation through time) and the gathers that skip padding.

Layout is channel-last: sequences are (B, T, C). Matmuls are left to BLAS (np.matmul with out=) by the
layers; these kernels do the loops BLAS cannot. Transcendentals on big arrays are left to numpy's SIMD
ufuncs (np.exp, np.tanh); only the recurrence, which is sequential in time, calls math.tanh here.
"""
from __future__ import annotations

import math

from numba import njit

from nets.kernels.simd import LANES, vadd, vbroadcast, vfma, vload, vmul, vsplat, vstore, vsub, vtanh


# ----------------------------------------------------------------------------------- embedding

@njit(cache=True)
def embedding_forward(out, ids, table):
    # out: (N, D)  ids: (N,) int in [0, V)  table: (V, D); id 0 (padding) gives zeros, whatever row 0 holds
    N, D = out.shape
    zero = out.dtype.type(0.0)
    for n in range(N):
        r = ids[n]
        if r == 0:
            for d in range(D):
                out[n, d] = zero
        else:
            for d in range(D):
                out[n, d] = table[r, d]


@njit(cache=True)
def embedding_backward(gtable, dout, ids):
    # gtable: (V, D) += dout[n] into row ids[n] for every non-padding id (the caller cleared gtable)
    # dout: (N, D)  ids: (N,)
    N, D = dout.shape
    for n in range(N):
        r = ids[n]
        if r != 0:
            for d in range(D):
                gtable[r, d] += dout[n, d]


@njit(cache=True)
def ids_in_range(ids, V):
    # ids: (N,) -> True when every id is in [0, V)
    for n in range(ids.shape[0]):
        if ids[n] < 0 or ids[n] >= V:
            return False
    return True


# --------------------------------------------------------------------------- 1-D convolution

@njit(cache=True)
def im2col_1d(col, x, k, r0):
    # col: (R, K*C) rows r0..r0+R of the (B*OT, K*C) patch matrix  x: (B, T, C); OT = T - K + 1.
    # A patch x[b, t:t+K, :] is K*C contiguous values (channel-last), copied as one run.
    B, T, C = x.shape
    OT = T - k + 1
    R, KC = col.shape
    for i in range(R):
        r = r0 + i
        b = r // OT
        t = r - b * OT
        src = x[b].reshape(-1)          # (T*C,)
        s = t * C
        for j in range(KC):
            col[i, j] = src[s + j]


@njit(cache=True)
def col2im_1d(dx, dcol, k, r0):
    # dx: (B, T, C) += the patches of dcol: (R, K*C), rows r0..r0+R; dx is zeroed by the caller
    B, T, C = dx.shape
    OT = T - k + 1
    R, KC = dcol.shape
    for i in range(R):
        r = r0 + i
        b = r // OT
        t = r - b * OT
        dst = dx[b].reshape(-1)         # (T*C,)
        s = t * C
        for j in range(KC):
            dst[s + j] += dcol[i, j]


# ------------------------------------------- embedding + 1-D convolution, once per distinct word

@njit(cache=True)
def distinct_ids(inv, uniq, slot, ids):
    # ids: (N,) -> the number U of distinct non-padding ids, uniq[:U] those ids (first seen first),
    # inv: (N,) each position's row in uniq (-1: padding). slot: (V,) all -1, and left so.
    U = 0
    for n in range(ids.shape[0]):
        r = ids[n]
        if r != 0 and slot[r] < 0:
            slot[r], uniq[U] = U, r
            U += 1
        inv[n] = slot[r] if r != 0 else -1
    for u in range(U):
        slot[uniq[u]] = -1
    return U


@njit(cache=True)
def conv1d_word_sum(y, p, inv):
    # y: (B, OT, F) = sum over taps k of p[inv[b, t+k], k] (a padding position adds nothing)
    # p: (U, K, F) = each distinct word's row of the table times each tap's weights; inv: (B, T)
    (B, OT, F), K = y.shape, p.shape[1]
    for b in range(B):
        for t in range(OT):
            yr = y[b, t]
            yr[:] = 0
            for k in range(K):
                u = inv[b, t + k]
                if u >= 0:
                    pr = p[u, k]
                    for f in range(F):
                        yr[f] += pr[f]


@njit(cache=True)
def conv1d_word_grad(g, dz, inv):
    # g: (U, K, F) += dz[b, t] at [inv[b, t+k], k] for every tap k (the caller cleared g); dz: (B, OT, F)
    (B, OT, F), K = dz.shape, g.shape[1]
    for b in range(B):
        for t in range(OT):
            dr = dz[b, t]
            for k in range(K):
                u = inv[b, t + k]
                if u >= 0:
                    gr = g[u, k]
                    for f in range(F):
                        gr[f] += dr[f]


# ------------------------------------------------------------------------------ 1-D max-pool

@njit(cache=True)
def maxpool1d_forward(out, arg, x, k):
    # out, arg: (B, OT, C) with OT = T // k (stride k, floor)  x: (B, T, C); arg holds the time index
    B, T, C = x.shape
    OT = out.shape[1]
    for b in range(B):
        for i in range(OT):
            t0 = i * k
            for c in range(C):
                out[b, i, c] = x[b, t0, c]
                arg[b, i, c] = t0
            for t in range(t0 + 1, t0 + k):
                for c in range(C):
                    v = x[b, t, c]
                    if v > out[b, i, c]:
                        out[b, i, c] = v
                        arg[b, i, c] = t


@njit(cache=True)
def maxpool1d_backward(dx, dout, arg):
    # dx: (B, T, C) overwritten  dout, arg: (B, OT, C)
    B, T, C = dx.shape
    OT = dout.shape[1]
    zero = dx.dtype.type(0.0)
    for b in range(B):
        for t in range(T):
            for c in range(C):
                dx[b, t, c] = zero
        for i in range(OT):
            for c in range(C):
                dx[b, arg[b, i, c], c] += dout[b, i, c]


# ------------------------------------------------------------------------------- Elman RNN

@njit(cache=True)
def elman_forward(h, a, wh, bias):
    # h: (B, T, H) out: h_t = tanh(a_t + h_{t-1} @ wh + bias), h_{-1} = 0
    # a: (B, T, H) input term (x_t @ W_x, or x_t itself)  wh: (H, H)  bias: (H,)
    B, T, H = a.shape
    for b in range(B):
        for t in range(T):
            for j in range(H):
                h[b, t, j] = a[b, t, j] + bias[j]
            if t > 0:
                for i in range(H):
                    hi = h[b, t - 1, i]
                    for j in range(H):
                        h[b, t, j] += hi * wh[i, j]
            for j in range(H):
                h[b, t, j] = math.tanh(h[b, t, j])


@njit(cache=True)
def elman_backward(dz, dwh, dbias, dh, h, wh):
    # backpropagation through time. dz: (B, T, H) out = dL/d(pre-activation)  dwh: (H, H) out
    # dbias: (H,) out  dh: (B, T, H) dL/dh_t from the layer above  h: (B, T, H) forward output  wh: (H, H)
    B, T, H = h.shape
    zero = h.dtype.type(0.0)
    one = h.dtype.type(1.0)
    for i in range(H):
        dbias[i] = zero
        for j in range(H):
            dwh[i, j] = zero
    for b in range(B):
        for t in range(T - 1, -1, -1):
            for i in range(H):
                g = dh[b, t, i]
                if t < T - 1:                       # h_t feeds z_{t+1} = ... + h_t @ wh
                    for j in range(H):
                        g += wh[i, j] * dz[b, t + 1, j]
                v = h[b, t, i]
                dz[b, t, i] = g * (one - v * v)
            for j in range(H):
                dbias[j] += dz[b, t, j]
            if t > 0:
                for i in range(H):
                    hi = h[b, t - 1, i]
                    for j in range(H):
                        dwh[i, j] += hi * dz[b, t, j]


# --------------------------------------------------------------------- packing (skip padding)

@njit(cache=True)
def gather_rows(out, src, rows):
    # out: (N, D) = src[rows]  src: (M, D)  rows: (N,) int
    N, D = out.shape
    for n in range(N):
        r = rows[n]
        for d in range(D):
            out[n, d] = src[r, d]


@njit(cache=True)
def scatter_rows(out, src, rows):
    # out: (M, D) zeroed, then out[rows] = src  src: (N, D)  rows: (N,) int, distinct
    M, D = out.shape
    zero = out.dtype.type(0.0)
    for m in range(M):
        for d in range(D):
            out[m, d] = zero
    for n in range(rows.shape[0]):
        r = rows[n]
        for d in range(D):
            out[r, d] = src[n, d]


# Elman with lanes over the hidden units (H >= 16): vectors j0 = 0, 16, ... and a last one that starts
# at H - 16 (it overlaps the one before and writes the same values there); four samples at a time, so
# four independent FMA chains hide the latency of each one. h_t depends on h_{t-1} only through the
# H x H recurrence, so everything else (the input term, the weight gradients) stays in BLAS.

@njit(cache=True, inline="always")
def _four_samples(b0, B, size):
    # offsets of samples b0 .. b0+3 (samples past B repeat the last one: same values, stored again)
    n = min(4, B - b0)
    return b0 * size, (b0 + min(1, n - 1)) * size, (b0 + min(2, n - 1)) * size, (b0 + min(3, n - 1)) * size


@njit(cache=True)
def elman_forward_vec(h, a, wh, bias):
    # as elman_forward; H >= 16
    B, T, H = a.shape
    hf = h.reshape(-1)
    af = a.reshape(-1)
    whf = wh.reshape(-1)
    nb = (H + LANES - 1) // LANES
    for b0 in range(0, B, 4):
        o0, o1, o2, o3 = _four_samples(b0, B, T * H)
        for t in range(T):
            for jb in range(nb):
                j0 = min(jb * LANES, H - LANES)
                bv = vload(bias, j0)
                c0 = vadd(vload(af, o0 + t * H + j0), bv)
                c1 = vadd(vload(af, o1 + t * H + j0), bv)
                c2 = vadd(vload(af, o2 + t * H + j0), bv)
                c3 = vadd(vload(af, o3 + t * H + j0), bv)
                if t > 0:
                    p = (t - 1) * H
                    for i in range(H):
                        w = vload(whf, i * H + j0)
                        c0 = vfma(vbroadcast(hf, o0 + p + i), w, c0)
                        c1 = vfma(vbroadcast(hf, o1 + p + i), w, c1)
                        c2 = vfma(vbroadcast(hf, o2 + p + i), w, c2)
                        c3 = vfma(vbroadcast(hf, o3 + p + i), w, c3)
                # rows past n repeat the last sample: same values, stored last
                vstore(hf, o0 + t * H + j0, vtanh(c0))
                vstore(hf, o1 + t * H + j0, vtanh(c1))
                vstore(hf, o2 + t * H + j0, vtanh(c2))
                vstore(hf, o3 + t * H + j0, vtanh(c3))


@njit(cache=True)
def elman_backward_vec(dz, dh, h, wht):
    # dz: (B, T, H) out = dL/d(pre-activation), through time; wht: (H, H) = wh^T, contiguous.
    # The weight and bias gradients are left to the caller (one matmul over all steps).
    B, T, H = h.shape
    dzf = dz.reshape(-1)
    dhf = dh.reshape(-1)
    hf = h.reshape(-1)
    wf = wht.reshape(-1)
    one = vsplat(h.dtype.type(1.0))
    nb = (H + LANES - 1) // LANES
    for b0 in range(0, B, 4):
        o0, o1, o2, o3 = _four_samples(b0, B, T * H)
        for t in range(T - 1, -1, -1):
            for ib in range(nb):
                i0 = min(ib * LANES, H - LANES)
                q = t * H + i0
                g0 = vload(dhf, o0 + q)
                g1 = vload(dhf, o1 + q)
                g2 = vload(dhf, o2 + q)
                g3 = vload(dhf, o3 + q)
                if t < T - 1:
                    # h_t feeds z_{t+1} = ... + h_t @ wh: g += dz_{t+1} @ wh^T
                    p = (t + 1) * H
                    for j in range(H):
                        w = vload(wf, j * H + i0)
                        g0 = vfma(vbroadcast(dzf, o0 + p + j), w, g0)
                        g1 = vfma(vbroadcast(dzf, o1 + p + j), w, g1)
                        g2 = vfma(vbroadcast(dzf, o2 + p + j), w, g2)
                        g3 = vfma(vbroadcast(dzf, o3 + p + j), w, g3)
                v = vload(hf, o0 + q)
                d0 = vmul(g0, vsub(one, vmul(v, v)))
                v = vload(hf, o1 + q)
                d1 = vmul(g1, vsub(one, vmul(v, v)))
                v = vload(hf, o2 + q)
                d2 = vmul(g2, vsub(one, vmul(v, v)))
                v = vload(hf, o3 + q)
                d3 = vmul(g3, vsub(one, vmul(v, v)))
                # the overlapping last block is computed from dz_{t+1} only: storing dz_t now is safe
                vstore(dzf, o3 + q, d3)
                vstore(dzf, o2 + q, d2)
                vstore(dzf, o1 + q, d1)
                vstore(dzf, o0 + q, d0)
