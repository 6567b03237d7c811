"""Fused optimizer updates over the flat parameter buffer (BigDL semantics)."""
from __future__ import annotations

import math

from numba import njit


@njit(cache=True)
def sgd_update(p, g, buf, clr, momentum, dampening, weight_decay, nesterov, first):
    # p, g, buf: (P,); p -= clr * d where d = g + wd*p, then momentum as in BigDL/Torch
    n = p.shape[0]
    lr = p.dtype.type(clr)
    mom = p.dtype.type(momentum)
    damp = p.dtype.type(1.0 - dampening)
    wd = p.dtype.type(weight_decay)
    for i in range(n):
        d = g[i] + wd * p[i]
        if momentum != 0.0:
            if first:
                buf[i] = d
            else:
                buf[i] = mom * buf[i] + damp * d
            if nesterov:
                d = d + mom * buf[i]
            else:
                d = buf[i]
        p[i] -= lr * d


@njit(cache=True)
def adagrad_update(p, g, acc, clr, weight_decay, eps):
    n = p.shape[0]
    lr = p.dtype.type(clr)
    wd = p.dtype.type(weight_decay)
    e = p.dtype.type(eps)
    for i in range(n):
        d = g[i] + wd * p[i]
        acc[i] += d * d
        p[i] -= lr * d / (math.sqrt(acc[i]) + e)


@njit(cache=True)
def adam_update(p, g, m, v, clr, beta1, beta2, eps, weight_decay, t):
    n = p.shape[0]
    b1 = p.dtype.type(beta1)
    b2 = p.dtype.type(beta2)
    wd = p.dtype.type(weight_decay)
    step = p.dtype.type(clr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))
    e = p.dtype.type(eps)
    one = p.dtype.type(1.0)
    for i in range(n):
        d = g[i] + wd * p[i]
        m[i] = b1 * m[i] + (one - b1) * d
        v[i] = b2 * v[i] + (one - b2) * d * d
        p[i] -= step * m[i] / (math.sqrt(v[i]) + e)
