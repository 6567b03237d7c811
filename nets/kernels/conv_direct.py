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

from nets.kernels.simd import LANES, vadd, vbroadcast, vfma, vload, vsplat, vstore, vsum


def padded(n: int) -> int:
    """n rounded up to a whole number of vectors."""
    return -(-n // LANES) * LANES


@njit(cache=True)
def pad_rows(wp, w):
    # wp: (K * OCP,) flat, row k = w[k] then zeros (OCP >= OC: the length of wp decides it); pads
    # weights (K, OC) and output gradients (N, OC) alike
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
    # y: (B*OH*OW*OCP,) flat, overwritten with conv(x) (no bias)  x: (B, H, W, C)  wp: pad_rows(w)
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


# ------------------------------------------------------------------------------------------------
# One input channel, stride 1, no padding ("flat rows", see nets.kernels.conv): per sample x is a flat
# vector of H*W values and output channel oc a planar row of LP values with row pitch W (position
# (i, j) at t = i*W + j; t < L = (OH-1)*W + OW are the real ones, LP = L rounded up to 64). Lanes run
# over t: 4 vectors x 6 output channels in 24 accumulators, per tap 4 loads of x and 6 broadcast
# weights. x is read from a copy with 64 spare zeros per sample (xpad), so the last block may run
# past L.

FLAT_BLOCK = 4 * LANES


def flat_pitch(L: int) -> int:
    """Row pitch LP of the planar flat-row buffers: L rounded up to a whole block."""
    return -(-L // FLAT_BLOCK) * FLAT_BLOCK


@njit(cache=True)
def pad_samples(xpad, x):
    # xpad: (B, HWP) = x (B, H, W, 1) flattened per sample, then zeros
    B = x.shape[0]
    n = x.shape[1] * x.shape[2]
    xf = x.reshape(B, n)
    zero = xpad.dtype.type(0.0)
    for b in range(B):
        xr = xpad[b]
        src = xf[b]
        for t in range(n):
            xr[t] = src[t]
        for t in range(n, xpad.shape[1]):
            xr[t] = zero


@njit(cache=True)
def conv1ch_sample(ys, xb, w6, bias, kh, kw, W):
    # ys: (OC, LP) = conv of one padded flat sample xb (HWP,) + bias; w6: pad_rows(w) with OC
    # rounded up to a multiple of 6
    OC, LP = ys.shape
    K = kh * kw
    OC6 = w6.shape[0] // K
    yf = ys.reshape(-1)
    for g in range(0, OC6, 6):
        n = min(6, OC - g)
        b0 = vsplat(bias[g])
        b1 = vsplat(bias[g + min(1, n - 1)])
        b2 = vsplat(bias[g + min(2, n - 1)])
        b3 = vsplat(bias[g + min(3, n - 1)])
        b4 = vsplat(bias[g + min(4, n - 1)])
        b5 = vsplat(bias[g + min(5, n - 1)])
        for t0 in range(0, LP, FLAT_BLOCK):
            a00 = b0; a01 = b0; a02 = b0; a03 = b0
            a10 = b1; a11 = b1; a12 = b1; a13 = b1
            a20 = b2; a21 = b2; a22 = b2; a23 = b2
            a30 = b3; a31 = b3; a32 = b3; a33 = b3
            a40 = b4; a41 = b4; a42 = b4; a43 = b4
            a50 = b5; a51 = b5; a52 = b5; a53 = b5
            for di in range(kh):
                for dj in range(kw):
                    s = di * W + dj + t0
                    x0 = vload(xb, s)
                    x1 = vload(xb, s + LANES)
                    x2 = vload(xb, s + 2 * LANES)
                    x3 = vload(xb, s + 3 * LANES)
                    wo = (di * kw + dj) * OC6 + g
                    w = vbroadcast(w6, wo)
                    a00 = vfma(x0, w, a00); a01 = vfma(x1, w, a01); a02 = vfma(x2, w, a02); a03 = vfma(x3, w, a03)
                    w = vbroadcast(w6, wo + 1)
                    a10 = vfma(x0, w, a10); a11 = vfma(x1, w, a11); a12 = vfma(x2, w, a12); a13 = vfma(x3, w, a13)
                    w = vbroadcast(w6, wo + 2)
                    a20 = vfma(x0, w, a20); a21 = vfma(x1, w, a21); a22 = vfma(x2, w, a22); a23 = vfma(x3, w, a23)
                    w = vbroadcast(w6, wo + 3)
                    a30 = vfma(x0, w, a30); a31 = vfma(x1, w, a31); a32 = vfma(x2, w, a32); a33 = vfma(x3, w, a33)
                    w = vbroadcast(w6, wo + 4)
                    a40 = vfma(x0, w, a40); a41 = vfma(x1, w, a41); a42 = vfma(x2, w, a42); a43 = vfma(x3, w, a43)
                    w = vbroadcast(w6, wo + 5)
                    a50 = vfma(x0, w, a50); a51 = vfma(x1, w, a51); a52 = vfma(x2, w, a52); a53 = vfma(x3, w, a53)
            o = g * LP + t0
            _store4(yf, o, a00, a01, a02, a03)
            if n > 1:
                _store4(yf, o + LP, a10, a11, a12, a13)
            if n > 2:
                _store4(yf, o + 2 * LP, a20, a21, a22, a23)
            if n > 3:
                _store4(yf, o + 3 * LP, a30, a31, a32, a33)
            if n > 4:
                _store4(yf, o + 4 * LP, a40, a41, a42, a43)
            if n > 5:
                _store4(yf, o + 5 * LP, a50, a51, a52, a53)


@njit(cache=True, inline="always")
def _store4(a, i, v0, v1, v2, v3):
    vstore(a, i, v0)
    vstore(a, i + LANES, v1)
    vstore(a, i + 2 * LANES, v2)
    vstore(a, i + 3 * LANES, v3)


@njit(cache=True)
def conv1ch_weight_grad(gw, gacc, xpad, dzp, kh, kw, W):
    # gw: (K, OC) overwritten: gw[k, oc] = sum over samples and t of xpad[b, s_k + t] * dzp[b, oc, t]
    # (s_k = di*W + dj; dzp zero outside the real positions, so the whole pitch LP is summed)
    # gacc: (K * OC * 16,) lane partial sums; lanes run over t, 5 taps x 3 channels at a time
    B, OC, LP = dzp.shape
    K = kh * kw
    dzf = dzp.reshape(-1)
    gacc[:] = 0
    zero = vsplat(gw.dtype.type(0.0))
    for b in range(B):
        xb = xpad[b]
        for k0 in range(0, K, 5):
            m = min(5, K - k0)
            s0 = (k0 // kw) * W + k0 % kw
            s1 = ((k0 + min(1, m - 1)) // kw) * W + (k0 + min(1, m - 1)) % kw
            s2 = ((k0 + min(2, m - 1)) // kw) * W + (k0 + min(2, m - 1)) % kw
            s3 = ((k0 + min(3, m - 1)) // kw) * W + (k0 + min(3, m - 1)) % kw
            s4 = ((k0 + min(4, m - 1)) // kw) * W + (k0 + min(4, m - 1)) % kw
            for c in range(0, OC, 3):
                n = min(3, OC - c)
                d0o = (b * OC + c) * LP
                d1o = (b * OC + c + min(1, n - 1)) * LP
                d2o = (b * OC + c + min(2, n - 1)) * LP
                a00 = zero; a01 = zero; a02 = zero; a03 = zero; a04 = zero
                a10 = zero; a11 = zero; a12 = zero; a13 = zero; a14 = zero
                a20 = zero; a21 = zero; a22 = zero; a23 = zero; a24 = zero
                for t in range(0, LP, LANES):
                    d0 = vload(dzf, d0o + t)
                    d1 = vload(dzf, d1o + t)
                    d2 = vload(dzf, d2o + t)
                    x = vload(xb, s0 + t)
                    a00 = vfma(x, d0, a00); a10 = vfma(x, d1, a10); a20 = vfma(x, d2, a20)
                    x = vload(xb, s1 + t)
                    a01 = vfma(x, d0, a01); a11 = vfma(x, d1, a11); a21 = vfma(x, d2, a21)
                    x = vload(xb, s2 + t)
                    a02 = vfma(x, d0, a02); a12 = vfma(x, d1, a12); a22 = vfma(x, d2, a22)
                    x = vload(xb, s3 + t)
                    a03 = vfma(x, d0, a03); a13 = vfma(x, d1, a13); a23 = vfma(x, d2, a23)
                    x = vload(xb, s4 + t)
                    a04 = vfma(x, d0, a04); a14 = vfma(x, d1, a14); a24 = vfma(x, d2, a24)
                # gacc block (k, oc): ((k * OC) + oc) * 16; taps/channels past m/n are not stored
                _acc_taps(gacc, (k0 * OC + c) * LANES, OC * LANES, m, a00, a01, a02, a03, a04)
                if n > 1:
                    _acc_taps(gacc, (k0 * OC + c + 1) * LANES, OC * LANES, m, a10, a11, a12, a13, a14)
                if n > 2:
                    _acc_taps(gacc, (k0 * OC + c + 2) * LANES, OC * LANES, m, a20, a21, a22, a23, a24)
    for k in range(K):
        for oc in range(OC):
            gw[k, oc] = vsum(vload(gacc, (k * OC + oc) * LANES))


@njit(cache=True, inline="always")
def _acc_taps(a, i, step, m, v0, v1, v2, v3, v4):
    _acc(a, i, v0)
    if m > 1:
        _acc(a, i + step, v1)
    if m > 2:
        _acc(a, i + 2 * step, v2)
    if m > 3:
        _acc(a, i + 3 * step, v3)
    if m > 4:
        _acc(a, i + 4 * step, v4)
