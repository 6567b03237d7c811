"""Fused optimizer updates over the flat parameter buffer (BigDL semantics)."""
from __future__ import annotations

import math

from numba import njit

from nets.kernels.simd import LANES, vadd, vdiv, vload, vmul, vsplat, vsqrt, vstore, vsub


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
    # in 16-lane vectors (sqrt and divide do not auto-vectorise here), the tail in scalars; the
    # operations are those of the scalar loop, so the result is the same bit for bit
    n = p.shape[0]
    lr = p.dtype.type(clr)
    wd = p.dtype.type(weight_decay)
    e = p.dtype.type(eps)
    lrv, wdv, ev = vsplat(lr), vsplat(wd), vsplat(e)
    nv = n // LANES * LANES
    for i in range(0, nv, LANES):
        pv = vload(p, i)
        d = vadd(vload(g, i), vmul(wdv, pv))
        a = vadd(vload(acc, i), vmul(d, d))
        vstore(acc, i, a)
        vstore(p, i, vsub(pv, vdiv(vmul(lrv, d), vadd(vsqrt(a), ev))))
    for i in range(nv, n):
        d = g[i] + wd * p[i]
        acc[i] += d * d
        p[i] -= lr * d / (math.sqrt(acc[i]) + e)


@njit(cache=True)
def adam_update(p, g, m, v, clr, beta1, beta2, eps, weight_decay, t):
    # vectors as adagrad_update
    n = p.shape[0]
    b1 = p.dtype.type(beta1)
    b2 = p.dtype.type(beta2)
    wd = p.dtype.type(weight_decay)
    step = p.dtype.type(clr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))
    e = p.dtype.type(eps)
    one = p.dtype.type(1.0)
    b1v, b2v, wdv, sv, ev = vsplat(b1), vsplat(b2), vsplat(wd), vsplat(step), vsplat(e)
    c1, c2 = vsplat(one - b1), vsplat(one - b2)
    nv = n // LANES * LANES
    for i in range(0, nv, LANES):
        pv = vload(p, i)
        d = vadd(vload(g, i), vmul(wdv, pv))
        mv = vadd(vmul(b1v, vload(m, i)), vmul(c1, d))
        vv = vadd(vmul(b2v, vload(v, i)), vmul(vmul(c2, d), d))
        vstore(m, i, mv)
        vstore(v, i, vv)
        vstore(p, i, vsub(pv, vdiv(vmul(sv, mv), vadd(vsqrt(vv), ev))))
    for i in range(nv, n):
        d = g[i] + wd * p[i]
        m[i] = b1 * m[i] + (one - b1) * d
        v[i] = b2 * v[i] + (one - b2) * d * d
        p[i] -= step * m[i] / (math.sqrt(v[i]) + e)
