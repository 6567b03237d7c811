"""2-D convolution as im2col + one BLAS matmul, NHWC layout.

x (B, H, W, C) -> col (B*OH*OW, KH*KW*C) -> col @ w (KH*KW*C, OC) -> out (B*OH*OW, OC) = (B, OH, OW, OC).
The patch order (kh, kw, c) matches the weight rows, and the output is already NHWC, so no transposes.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from nets.kernels.conv_direct import conv1ch_sample
from nets.kernels.simd import LANES, vadd, vevens, vload, vmax, vodds, vselect_gt, vsplat, vstore


@njit(cache=True)
def im2col(col, x, kh, kw, stride, pad, oh, ow):
    # col: (B*OH*OW, KH*KW*C)  x: (B, H, W, C)
    if pad == 0:
        _im2col_nopad(col, x, kh, kw, stride, oh, ow)
        return
    B, H, W, C = x.shape
    zero = col.dtype.type(0.0)
    for b in range(B):
        for i in range(oh):
            for j in range(ow):
                r = (b * oh + i) * ow + j
                k = 0
                for di in range(kh):
                    hi = i * stride + di - pad
                    for dj in range(kw):
                        wj = j * stride + dj - pad
                        if hi < 0 or hi >= H or wj < 0 or wj >= W:
                            for c in range(C):
                                col[r, k + c] = zero
                        else:
                            for c in range(C):
                                col[r, k + c] = x[b, hi, wj, c]
                        k += C


@njit(cache=True)
def _im2col_nopad(col, x, kh, kw, stride, oh, ow):
    # a patch row di is kw*C contiguous values of x[b, i*stride+di] (NHWC), copied as one run
    B, H, W, C = x.shape
    L = kw * C
    for b in range(B):
        for i in range(oh):
            for di in range(kh):
                xr = x[b, i * stride + di].reshape(-1)   # (W*C,)
                for j in range(ow):
                    r = (b * oh + i) * ow + j
                    s = j * stride * C
                    # slices keep the indices non-negative, so the copy vectorises (2.5x faster)
                    src = xr[s:s + L]
                    dst = col[r, di * L:di * L + L]
                    for t in range(L):
                        dst[t] = src[t]


@njit(cache=True)
def _col2im_nopad(dx, dcol, kh, kw, stride, oh, ow):
    B, H, W, C = dx.shape
    L = kw * C
    dx[:] = 0
    for b in range(B):
        for i in range(oh):
            for di in range(kh):
                xr = dx[b, i * stride + di].reshape(-1)   # (W*C,)
                for j in range(ow):
                    r = (b * oh + i) * ow + j
                    s = j * stride * C
                    dst = xr[s:s + L]
                    src = dcol[r, di * L:di * L + L]
                    for t in range(L):
                        dst[t] += src[t]


@njit(cache=True)
def im2col_t(colt, x, kh, kw, stride, oh, ow):
    # single-channel, no padding, transposed: colt (KH*KW, B*OH*OW), row k = (di, dj) holds
    # x[b, i*stride+di, j*stride+dj] for all outputs, so each copy is a run of OW values
    B, H, W, _ = x.shape
    for di in range(kh):
        for dj in range(kw):
            k = di * kw + dj
            for b in range(B):
                for i in range(oh):
                    base = (b * oh + i) * ow
                    for j in range(ow):
                        colt[k, base + j] = x[b, i * stride + di, j * stride + dj, 0]


@njit(cache=True)
def col2im_t(dx, dcolt, kh, kw, stride, oh, ow):
    # dx: (B, H, W, 1) overwritten, from dcolt: (KH*KW, B*OH*OW)
    B, H, W, _ = dx.shape
    dx[:] = 0
    for di in range(kh):
        for dj in range(kw):
            k = di * kw + dj
            for b in range(B):
                for i in range(oh):
                    base = (b * oh + i) * ow
                    for j in range(ow):
                        dx[b, i * stride + di, j * stride + dj, 0] += dcolt[k, base + j]


@njit(cache=True)
def col2im(dx, dcol, kh, kw, stride, pad, oh, ow):
    # dx: (B, H, W, C) accumulated from dcol: (B*OH*OW, KH*KW*C); dx is overwritten
    if pad == 0:
        _col2im_nopad(dx, dcol, kh, kw, stride, oh, ow)
        return
    B, H, W, C = dx.shape
    dx[:] = 0
    for b in range(B):
        for i in range(oh):
            for j in range(ow):
                r = (b * oh + i) * ow + j
                k = 0
                for di in range(kh):
                    hi = i * stride + di - pad
                    for dj in range(kw):
                        wj = j * stride + dj - pad
                        if hi >= 0 and hi < H and wj >= 0 and wj < W:
                            for c in range(C):
                                dx[b, hi, wj, c] += dcol[r, k + c]
                        k += C


# ------------------------------------------------------------------------------------------------
# One input channel, stride 1, no padding: "flat rows". Per sample, x is a flat vector of H*W values
# and the output of channel oc is kept planar in the same row pitch W: position (i, j) at t = i*W + j,
# t < L = (OH-1)*W + OW (the columns j >= OW of that layout are junk in the forward pass and must be
# zero in gradients). Tap (di, dj) is then one long axpy  y[oc, t] += w[k, oc] * x[di*W + dj + t],
# which vectorises over t, and its weight gradient one long dot product.

FM = {"reassoc", "contract", "nsz"}


@njit(cache=True)
def conv1ch_forward(yp, xpad, w6, bias, kh, kw, W):
    # yp: (B, OC, LP) planar, overwritten with conv(x) + bias  xpad, w6: see conv_direct
    for b in range(yp.shape[0]):
        conv1ch_sample(yp[b], xpad[b], w6, bias, kh, kw, W)


@njit(cache=True, fastmath=FM)
def conv1ch_pool_forward(out, arg, ys, xpad, w6, bias, kh, kw, p, W):
    # conv + bias + p x p max-pool (stride p) per sample, the conv rows staying in L1:
    # out: (B, PH, PW, OC) NHWC  arg: (B, OC, PH, PW) int32, offset t of each maximum in the planar
    # (OC, LP) conv output of its sample  ys: (OC, LP) scratch  xpad, w6: see conv_direct
    B, PH, PW, OC = out.shape
    LP = ys.shape[1]
    po = np.empty((OC, PH, max(PW, LANES)), out.dtype)   # one sample's pooled maps, planar
    fi = np.empty(LANES, out.dtype)               # offsets of one row's maxima, as floats
    # 2 x 2 pools of rows up to 32 wide: two vectors per conv row, even / odd columns split by
    # shuffles, the max and its offset by selects
    vec = p == 2 and 2 * PW <= 2 * LANES and (2 * PH - 1) * W + 2 * LANES <= LP
    lane2 = np.empty(LANES, out.dtype)
    for c in range(LANES):
        lane2[c] = 2 * c
    off1 = vsplat(out.dtype.type(1))
    offw = vsplat(out.dtype.type(W))
    offw1 = vsplat(out.dtype.type(W + 1))
    for b in range(B):
        conv1ch_sample(ys, xpad[b], w6, bias, kh, kw, W)
        for oc in range(OC):
            yr = ys[oc]
            for r in range(PH):
                pr = po[oc, r]
                ar = arg[b, oc, r]
                if vec:
                    t0 = 2 * r * W
                    a0 = vload(yr, t0)
                    a1 = vload(yr, t0 + LANES)
                    b0 = vload(yr, t0 + W)
                    b1 = vload(yr, t0 + W + LANES)
                    v = vevens(a0, a1)
                    idx = vadd(vload(lane2, 0), vsplat(out.dtype.type(t0)))
                    i = idx
                    u = vodds(a0, a1)
                    i = vselect_gt(u, v, vadd(idx, off1), i)
                    v = vmax(v, u)
                    u = vevens(b0, b1)
                    i = vselect_gt(u, v, vadd(idx, offw), i)
                    v = vmax(v, u)
                    u = vodds(b0, b1)
                    i = vselect_gt(u, v, vadd(idx, offw1), i)
                    v = vmax(v, u)
                    vstore(pr, 0, v)
                    vstore(fi, 0, i)
                    for c in range(PW):
                        ar[c] = np.int32(fi[c])
                elif p == 2:
                    # branchless selects over c, so the loop vectorises
                    t0 = 2 * r * W
                    t1 = t0 + W
                    r0 = yr[t0:t0 + 2 * PW]
                    r1 = yr[t1:t1 + 2 * PW]
                    for c in range(PW):
                        v = r0[2 * c]
                        i = t0 + 2 * c
                        u = r0[2 * c + 1]
                        i = t0 + 2 * c + 1 if u > v else i
                        v = u if u > v else v
                        u = r1[2 * c]
                        i = t1 + 2 * c if u > v else i
                        v = u if u > v else v
                        u = r1[2 * c + 1]
                        i = t1 + 2 * c + 1 if u > v else i
                        v = u if u > v else v
                        pr[c] = v
                        ar[c] = i
                else:
                    for c in range(PW):
                        t0 = r * p * W + c * p
                        v = yr[t0]
                        i = t0
                        for di in range(p):
                            for dj in range(p):
                                t = t0 + di * W + dj
                                if yr[t] > v:
                                    v = yr[t]
                                    i = t
                        pr[c] = v
                        ar[c] = i
        for r in range(PH):
            for c in range(PW):
                for oc in range(OC):
                    out[b, r, c, oc] = po[oc, r, c]


@njit(cache=True, fastmath=FM)
def conv1ch_input_grad(dx, dzp, w, kh, kw, L):
    # dx: (B, H, W, 1) overwritten from dzp: (B, OC, LP) planar (zero in the junk columns), taps
    # as transposed axpys over the L real positions
    B, H, W, _ = dx.shape
    OC = dzp.shape[1]
    K = kh * kw
    dxf = dx.reshape(B, H * W)
    dxf[:] = 0
    for b in range(B):
        xb = dxf[b]
        for oc in range(OC):
            dr = dzp[b, oc, :L]
            for k in range(K):
                s0 = (k // kw) * W + k % kw
                w0 = w[k, oc]
                x0 = xb[s0:s0 + L]
                for t in range(L):
                    x0[t] += w0 * dr[t]


@njit(cache=True)
def planar_to_nhwc(y, yp, W):
    # y: (B, OH, OW, OC) from yp: (B, OC, L) with row pitch W
    B, OH, OW, OC = y.shape
    for b in range(B):
        for i in range(OH):
            for j in range(OW):
                t = i * W + j
                for oc in range(OC):
                    y[b, i, j, oc] = yp[b, oc, t]


@njit(cache=True)
def nhwc_to_planar(dzp, dz, W):
    # dzp: (B, OC, L) overwritten (junk columns zeroed) from dz: (B, OH, OW, OC)
    B, OH, OW, OC = dz.shape
    dzp[:] = 0
    for b in range(B):
        for i in range(OH):
            for j in range(OW):
                t = i * W + j
                for oc in range(OC):
                    dzp[b, oc, t] = dz[b, i, j, oc]


@njit(cache=True)
def pool_planar_backward(dzp, db, dy, y, arg, act):
    # dzp: (B, OC, L) overwritten: act'(y) * dy scattered to the maxima, zero elsewhere; db: (OC,)
    # dy, y: (B, PH, PW, OC)  arg: (B, OC, PH, PW) from conv1ch_pool_forward
    B, PH, PW, OC = dy.shape
    zero = dzp.dtype.type(0.0)
    one = dzp.dtype.type(1.0)
    dzp[:] = zero
    db[:] = zero
    for b in range(B):
        for r in range(PH):
            for c in range(PW):
                for oc in range(OC):
                    g = _act_grad(dy[b, r, c, oc], y[b, r, c, oc], act, zero, one)
                    dzp[b, oc, arg[b, oc, r, c]] += g
                    db[oc] += g


@njit(cache=True)
def pool_bias_forward(out, arg, y, bias, p):
    # p x p max-pool, stride p, of NHWC y (B, OH, OW, OC) plus bias into out (B, PH, PW, OC);
    # arg: flat index of the maximum into y. y may carry padding channels (OCP >= OC = out's)
    B, OH, OW, OCP = y.shape
    _, PH, PW, OC = out.shape
    yf = y.reshape(-1)
    if p == 2:
        _pool2_bias_forward(out, arg, yf, bias, OH, OW, OCP)
        return
    for b in range(B):
        for r in range(PH):
            for c in range(PW):
                base = ((b * OH + r * p) * OW + c * p) * OCP
                for oc in range(OC):
                    best = yf[base + oc]
                    bi = base + oc
                    for di in range(p):
                        for dj in range(p):
                            q = base + (di * OW + dj) * OCP + oc
                            if yf[q] > best:
                                best = yf[q]
                                bi = q
                    out[b, r, c, oc] = best + bias[oc]
                    arg[b, r, c, oc] = bi


@njit(cache=True)
def _pool2_bias_forward(out, arg, yf, bias, OH, OW, OCP):
    # 2 x 2 / stride 2: the four candidates of (r, c) are four runs of OC values; the max and its
    # index are selects over oc (no branches), so the loops over oc vectorise (10x faster)
    B, PH, PW, OC = out.shape
    of = out.reshape(B * PH * PW, OC)
    af = arg.reshape(B * PH * PW, OC)
    for b in range(B):
        for r in range(PH):
            for c in range(PW):
                q0 = ((b * OH + 2 * r) * OW + 2 * c) * OCP
                q1 = q0 + OCP
                q2 = q0 + OW * OCP
                q3 = q2 + OCP
                y0 = yf[q0:q0 + OC]
                y1 = yf[q1:q1 + OC]
                y2 = yf[q2:q2 + OC]
                y3 = yf[q3:q3 + OC]
                o = of[(b * PH + r) * PW + c]
                a = af[(b * PH + r) * PW + c]
                for oc in range(OC):
                    v = y0[oc]
                    i = q0 + oc
                    u = y1[oc]
                    i = q1 + oc if u > v else i
                    v = u if u > v else v
                    u = y2[oc]
                    i = q2 + oc if u > v else i
                    v = u if u > v else v
                    u = y3[oc]
                    i = q3 + oc if u > v else i
                    v = u if u > v else v
                    o[oc] = v + bias[oc]
                    a[oc] = i


@njit(cache=True)
def pool_bias_backward(dz, db, dy, y, arg, act):
    # dz: (B*OH*OW, OC) overwritten: act'(y) * dy scattered to the maxima; db: (OC,)
    B, PH, PW, OC = dy.shape
    zero = dz.dtype.type(0.0)
    one = dz.dtype.type(1.0)
    dzf = dz.reshape(-1)
    dzf[:] = zero
    db[:] = zero
    for b in range(B):
        for r in range(PH):
            for c in range(PW):
                for oc in range(OC):
                    g = _act_grad(dy[b, r, c, oc], y[b, r, c, oc], act, zero, one)
                    dzf[arg[b, r, c, oc]] += g
                    db[oc] += g


@njit(cache=True, inline="always")
def _act_grad(g, v, act, zero, one):
    # act codes as nets.kernels.activations: 0 none, 1 tanh, 2 relu, 3 sigmoid
    if act == 1:
        return g * (one - v * v)
    if act == 2:
        return g if v > zero else zero
    if act == 3:
        return g * v * (one - v)
    return g

