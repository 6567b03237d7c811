"""Max pooling over NHWC maps; the forward pass records the flat input index of each maximum."""
from __future__ import annotations

from numba import njit


@njit(cache=True)
def maxpool_forward(out, arg, x, k, stride):
    # out, arg: (B, OH, OW, C)  x: (B, H, W, C); arg holds the flat index into x of each max
    if k == 2 and stride == 2:
        _maxpool2_forward(out, arg, x)
        return
    B, H, W, C = x.shape
    _, OH, OW, _ = out.shape
    for b in range(B):
        for i in range(OH):
            for j in range(OW):
                h0 = i * stride
                w0 = j * stride
                for c in range(C):
                    best = x[b, h0, w0, c]
                    bi = ((b * H + h0) * W + w0) * C + c
                    for di in range(k):
                        for dj in range(k):
                            v = x[b, h0 + di, w0 + dj, c]
                            if v > best:
                                best = v
                                bi = ((b * H + h0 + di) * W + w0 + dj) * C + c
                    out[b, i, j, c] = best
                    arg[b, i, j, c] = bi


@njit(cache=True)
def _maxpool2_forward(out, arg, x):
    # the common 2x2 / stride 2 case, unrolled
    B, H, W, C = x.shape
    _, OH, OW, _ = out.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    af = arg.reshape(-1)
    row = W * C
    for b in range(B):
        for i in range(OH):
            for j in range(OW):
                dst = ((b * OH + i) * OW + j) * C
                s0 = ((b * H + 2 * i) * W + 2 * j) * C
                for c in range(C):
                    p0 = s0 + c
                    p1 = p0 + C
                    p2 = p0 + row
                    p3 = p2 + C
                    v = xf[p0]
                    a = p0
                    if xf[p1] > v:
                        v = xf[p1]
                        a = p1
                    if xf[p2] > v:
                        v = xf[p2]
                        a = p2
                    if xf[p3] > v:
                        v = xf[p3]
                        a = p3
                    of[dst + c] = v
                    af[dst + c] = a


@njit(cache=True)
def maxpool_backward(dx, dout, arg):
    # dx: (B, H, W, C) overwritten  dout, arg: (B, OH, OW, C)
    dxf = dx.reshape(-1)
    df = dout.reshape(-1)
    af = arg.reshape(-1)
    dxf[:] = 0
    for n in range(df.shape[0]):
        dxf[af[n]] += df[n]
