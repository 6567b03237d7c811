"""Direct 2-D convolution (NHWC, no padding, any stride) with register-blocked micro-kernels.

No patch matrix: each kernel reads x (B, H, W, C) where it lies. Kernel row di of the patch of output
(i, j) is the Q = KW*C contiguous values x[b, i*s + di, j*s : j*s + KW] (NHWC), and the weights are
ordered (di, dj, c) to match, so all three products are short loops over contiguous runs:

* forward: lanes over output channels (padded to OCP, a multiple of 16), 8 output positions of a row
  in 8 accumulators; per patch entry one weight vector and 8 broadcasts of x.
* weight gradient: lanes over 16 patch entries of a kernel row, 2 vectors x 4 output channels in 8
  accumulators, summed over every position; the last block of a row starts at Q-16 (it overlaps the
  one before, so Q >= 16 is required; both hold the same sums there).
* input gradient: lanes over the QP-long (Q rounded up to 16) run dcol = w_di^T dz[p] that position p
  adds to kernel row di of its patch (lanes >= Q add zeros), 4 output rows sharing each weight load.

`dz` and the forward output are flat NHWC buffers with the output channels padded to OCP; their
padding lanes are written as zeros (forward) or must be zero (dz). Float32 or float64 (the gradient
checks): 16 lanes either way. LeNet's conv2 (12 channels of 8x8 from 6 of 12x12, 5x5) at batch 128:
forward 0.34 ms, weight gradient 0.30, input gradient 0.36, against 0.88 / 0.45 / 0.79 ms for im2col
+ OpenBLAS + col2im (bench/profile.md).
"""
from __future__ import annotations

from numba import njit

from nets.kernels.simd import LANES, vadd, vbroadcast, vfma, vload, vsplat, vstore


def padded(n: int) -> int:
    """n rounded up to a whole number of vectors."""
    return -(-n // LANES) * LANES


@njit(cache=True)
def pad_weights(wp, w):
    # wp: (K * OCP,) flat, row k = w[k] then zeros
    K, OC = w.shape
    OCP = wp.shape[0] // K
    zero = wp.dtype.type(0.0)
    for k in range(K):
        for oc in range(OCP):
            wp[k * OCP + oc] = w[k, oc] if oc < OC else zero


@njit(cache=True)
def pad_weights_t(wt, w, kh, QP):
    # wt: (kh * OC * QP,) flat: wt[(di*OC + oc)*QP + q] = w[di*Q + q, oc], zero for Q <= q < QP
    K, OC = w.shape
    Q = K // kh
    zero = wt.dtype.type(0.0)
    for di in range(kh):
        for oc in range(OC):
            for q in range(QP):
                wt[(di * OC + oc) * QP + q] = w[di * Q + q, oc] if q < Q else zero


@njit(cache=True)
def conv_forward(y, x, wp, kh, kw, stride, oh, ow):
    # y: (B*OH*OW*OCP,) flat, overwritten with conv(x) (no bias)  x: (B, H, W, C)  wp: pad_weights
    B, H, W, C = x.shape
    Q = kw * C
    OCP = wp.shape[0] // (kh * Q)
    s = stride * C
    zero = vsplat(x.dtype.type(0.0))
    xf = x.reshape(-1)
    for b in range(B):
        for i in range(oh):
            rbase = (b * oh + i) * ow
            for ob in range(0, OCP, LANES):
                j0 = 0
                while j0 + 8 <= ow:
                    a0 = zero
                    a1 = zero
                    a2 = zero
                    a3 = zero
                    a4 = zero
                    a5 = zero
                    a6 = zero
                    a7 = zero
                    for di in range(kh):
                        xo = ((b * H + i * stride + di) * W + j0 * stride) * C
                        wo = di * Q * OCP + ob
                        for q in range(Q):
                            wv = vload(wp, wo + q * OCP)
                            xq = xo + q
                            a0 = vfma(vbroadcast(xf, xq), wv, a0)
                            a1 = vfma(vbroadcast(xf, xq + s), wv, a1)
                            a2 = vfma(vbroadcast(xf, xq + 2 * s), wv, a2)
                            a3 = vfma(vbroadcast(xf, xq + 3 * s), wv, a3)
                            a4 = vfma(vbroadcast(xf, xq + 4 * s), wv, a4)
                            a5 = vfma(vbroadcast(xf, xq + 5 * s), wv, a5)
                            a6 = vfma(vbroadcast(xf, xq + 6 * s), wv, a6)
                            a7 = vfma(vbroadcast(xf, xq + 7 * s), wv, a7)
                    yo = (rbase + j0) * OCP + ob
                    vstore(y, yo, a0)
                    vstore(y, yo + OCP, a1)
                    vstore(y, yo + 2 * OCP, a2)
                    vstore(y, yo + 3 * OCP, a3)
                    vstore(y, yo + 4 * OCP, a4)
                    vstore(y, yo + 5 * OCP, a5)
                    vstore(y, yo + 6 * OCP, a6)
                    vstore(y, yo + 7 * OCP, a7)
                    j0 += 8
                while j0 < ow:
                    a0 = zero
                    for di in range(kh):
                        xo = ((b * H + i * stride + di) * W + j0 * stride) * C
                        wo = di * Q * OCP + ob
                        for q in range(Q):
                            a0 = vfma(vbroadcast(xf, xo + q), vload(wp, wo + q * OCP), a0)
                    vstore(y, (rbase + j0) * OCP + ob, a0)
                    j0 += 1


@njit(cache=True)
def conv_weight_grad(gw, gacc, x, dz, kh, kw, stride, oh, ow):
    # gw: (K, OC) overwritten with col^T @ dz; gacc: (OC * kh * NQB * 16,) scratch, NQB = ceil(Q/16)
    # dz: (B*OH*OW*OCP,) flat, padding lanes finite (they only reach accumulators never stored)
    B, H, W, C = x.shape
    K, OC = gw.shape
    OCP = dz.shape[0] // (B * oh * ow)
    Q = kw * C
    NQB = (Q + LANES - 1) // LANES
    R = kh * NQB * LANES
    s = stride * C
    xf = x.reshape(-1)
    gacc[:] = 0
    zero = vsplat(x.dtype.type(0.0))
    for b in range(B):
        for di in range(kh):
            qb = 0
            while qb < NQB:
                two = qb + 1 < NQB
                if two:
                    qa = qb * LANES
                    qc = (qb + 1) * LANES if (qb + 2) * LANES <= Q else Q - LANES
                else:
                    qa = qb * LANES if (qb + 1) * LANES <= Q else Q - LANES
                    qc = qa
                oc = 0
                while oc < OC:
                    # four output channels at a time; channels past OC read dz's padding
                    n = min(4, OC - oc)
                    a0 = zero
                    a1 = zero
                    a2 = zero
                    a3 = zero
                    c0 = zero
                    c1 = zero
                    c2 = zero
                    c3 = zero
                    for i in range(oh):
                        xo = ((b * H + i * stride + di) * W) * C
                        po = ((b * oh + i) * ow) * OCP + oc
                        for j in range(ow):
                            xv = vload(xf, xo + j * s + qa)
                            xw = vload(xf, xo + j * s + qc)
                            p = po + j * OCP
                            d0 = vbroadcast(dz, p)
                            d1 = vbroadcast(dz, p + 1)
                            d2 = vbroadcast(dz, p + 2)
                            d3 = vbroadcast(dz, p + 3)
                            a0 = vfma(d0, xv, a0)
                            a1 = vfma(d1, xv, a1)
                            a2 = vfma(d2, xv, a2)
                            a3 = vfma(d3, xv, a3)
                            c0 = vfma(d0, xw, c0)
                            c1 = vfma(d1, xw, c1)
                            c2 = vfma(d2, xw, c2)
                            c3 = vfma(d3, xw, c3)
                    go = ((oc * kh + di) * NQB + qb) * LANES
                    _acc(gacc, go, a0)
                    if two:
                        _acc(gacc, go + LANES, c0)
                    if n > 1:
                        _acc(gacc, go + R, a1)
                        if two:
                            _acc(gacc, go + R + LANES, c1)
                    if n > 2:
                        _acc(gacc, go + 2 * R, a2)
                        if two:
                            _acc(gacc, go + 2 * R + LANES, c2)
                    if n > 3:
                        _acc(gacc, go + 3 * R, a3)
                        if two:
                            _acc(gacc, go + 3 * R + LANES, c3)
                    oc += 4
                qb += 2
    for oc in range(OC):
        for di in range(kh):
            for qb in range(NQB):
                qa = qb * LANES if (qb + 1) * LANES <= Q else Q - LANES
                go = ((oc * kh + di) * NQB + qb) * LANES
                for lane in range(LANES):
                    gw[di * Q + qa + lane, oc] = gacc[go + lane]


@njit(cache=True)
def conv_input_grad(dxf, dz, wt, B, H, W, C, kh, kw, stride, oh, ow):
    # dxf: flat NHWC dx (B*H*W*C values, then at least QP - Q spare ones), overwritten
    # dz: (B*OH*OW*OCP,) flat  wt: pad_weights_t (kh, OC, QP)
    Q = kw * C
    QP = (Q + LANES - 1) // LANES * LANES
    OC = wt.shape[0] // (kh * QP)
    OCP = dz.shape[0] // (B * oh * ow)
    R = stride * W * C          # x offset of the next output row
    zero = vsplat(dxf.dtype.type(0.0))
    dxf[:] = 0
    for b in range(B):
        i = 0
        while i < oh:
            n = min(4, oh - i)       # output rows in this block; rows past n repeat the last one
            for j in range(ow):
                p0 = ((b * oh + i) * ow + j) * OCP
                p1 = p0 + min(1, n - 1) * ow * OCP
                p2 = p0 + min(2, n - 1) * ow * OCP
                p3 = p0 + min(3, n - 1) * ow * OCP
                for di in range(kh):
                    xo = ((b * H + i * stride + di) * W + j * stride) * C
                    wo = di * OC * QP
                    for vb in range(0, QP, 2 * LANES):
                        pair = vb + LANES < QP
                        vc = vb + LANES if pair else vb
                        a0 = zero
                        a1 = zero
                        a2 = zero
                        a3 = zero
                        c0 = zero
                        c1 = zero
                        c2 = zero
                        c3 = zero
                        for oc in range(OC):
                            w0 = vload(wt, wo + oc * QP + vb)
                            w1 = vload(wt, wo + oc * QP + vc)
                            d = vbroadcast(dz, p0 + oc)
                            a0 = vfma(d, w0, a0)
                            c0 = vfma(d, w1, c0)
                            d = vbroadcast(dz, p1 + oc)
                            a1 = vfma(d, w0, a1)
                            c1 = vfma(d, w1, c1)
                            d = vbroadcast(dz, p2 + oc)
                            a2 = vfma(d, w0, a2)
                            c2 = vfma(d, w1, c2)
                            d = vbroadcast(dz, p3 + oc)
                            a3 = vfma(d, w0, a3)
                            c3 = vfma(d, w1, c3)
                        # rows i..i+3 of one kernel row di are different x rows: no store of this
                        # block overlaps another; the next di's first row is this one's second
                        _acc(dxf, xo + vb, a0)
                        if pair:
                            _acc(dxf, xo + vc, c0)
                        if n > 1:
                            _acc(dxf, xo + R + vb, a1)
                            if pair:
                                _acc(dxf, xo + R + vc, c1)
                        if n > 2:
                            _acc(dxf, xo + 2 * R + vb, a2)
                            if pair:
                                _acc(dxf, xo + 2 * R + vc, c2)
                        if n > 3:
                            _acc(dxf, xo + 3 * R + vb, a3)
                            if pair:
                                _acc(dxf, xo + 3 * R + vc, c3)
            i += 4


@njit(cache=True, inline="always")
def _acc(a, i, v):
    vstore(a, i, vadd(vload(a, i), v))


@njit(cache=True)
def unpad_rows(y, yp):
    # y: (N, OC) = the first OC lanes of each row of yp: (N * OCP,) flat
    N, OC = y.shape
    OCP = yp.shape[0] // N
    for n in range(N):
        for oc in range(OC):
            y[n, oc] = yp[n * OCP + oc]


@njit(cache=True)
def pad_rows(dzp, dz):
    # dzp: (N * OCP,) flat = dz (N, OC) with zero padding lanes
    N, OC = dz.shape
    OCP = dzp.shape[0] // N
    zero = dzp.dtype.type(0.0)
    for n in range(N):
        for oc in range(OCP):
            dzp[n * OCP + oc] = dz[n, oc] if oc < OC else zero
