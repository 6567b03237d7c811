"""Max pooling over NHWC maps; the forward pass records the flat input index of each maximum."""
from __future__ import annotations

from numba import njit


@njit(cache=True)
def maxpool_forward(out, arg, x, k, stride):
    # out, arg: (B, OH, OW, C)  x: (B, H, W, C); arg holds h*W + w of the max
    B, H, W, C = x.shape
    _, OH, OW, _ = out.shape
    for b in range(B):
        for i in range(OH):
            for j in range(OW):
                h0 = i * stride
                w0 = j * stride
                for c in range(C):
                    best = x[b, h0, w0, c]
                    bi = h0 * W + w0
                    for di in range(k):
                        for dj in range(k):
                            v = x[b, h0 + di, w0 + dj, c]
                            if v > best:
                                best = v
                                bi = (h0 + di) * W + (w0 + dj)
                    out[b, i, j, c] = best
                    arg[b, i, j, c] = bi


@njit(cache=True)
def maxpool_backward(dx, dout, arg):
    # dx: (B, H, W, C) overwritten  dout, arg: (B, OH, OW, C)
    B, H, W, C = dx.shape
    _, OH, OW, _ = dout.shape
    dx[:] = 0
    for b in range(B):
        for i in range(OH):
            for j in range(OW):
                for c in range(C):
                    a = arg[b, i, j, c]
                    dx[b, a // W, a % W, c] += dout[b, i, j, c]
