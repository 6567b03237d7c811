"""2-D convolution as im2col + one BLAS matmul, NHWC layout.

x (B, H, W, C) -> col (B*OH*OW, KH*KW*C) -> col @ w (KH*KW*C, OC) -> out (B*OH*OW, OC) = (B, OH, OW, OC).
The patch order (kh, kw, c) matches the weight rows, and the output is already NHWC, so no transposes.
"""
from __future__ import annotations

from numba import njit


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
                    for t in range(L):
                        col[r, di * L + t] = xr[s + t]


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
                    for t in range(L):
                        xr[s + t] += dcol[r, di * L + t]


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
