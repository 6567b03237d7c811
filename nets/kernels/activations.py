"""Elementwise activations on flat (contiguous, raveled) arrays; backward uses the forward output."""
from __future__ import annotations

import math

import numpy as np

from numba import njit

from nets.kernels.simd import LANES, vadd, vdiv, vexp, vload, vsplat, vstore, vsub

ACT_NONE, ACT_TANH, ACT_RELU, ACT_SIGMOID = 0, 1, 2, 3


@njit(cache=True)
def act_backward(dx, dy, y, act):
    # dx, dy, y: (N,); dx may alias dy
    zero = y.dtype.type(0.0)
    one = y.dtype.type(1.0)
    n = y.shape[0]
    if act == ACT_TANH:
        for i in range(n):
            dx[i] = dy[i] * (one - y[i] * y[i])
    elif act == ACT_RELU:
        for i in range(n):
            dx[i] = dy[i] if y[i] > zero else zero
    elif act == ACT_SIGMOID:
        for i in range(n):
            dx[i] = dy[i] * y[i] * (one - y[i])
    else:
        for i in range(n):
            dx[i] = dy[i]


@njit(cache=True)
def bias_pre_act(y, b, act):
    # y: (N, K) in place: y = y + b, then relu applied, or halved for sigmoid = (1 + tanh(z/2)) / 2;
    # tanh itself is left to numpy's vectorised np.tanh (20x faster than a scalar libm call here)
    N, K = y.shape
    zero = y.dtype.type(0.0)
    half = y.dtype.type(0.5)
    for n in range(N):
        for k in range(K):
            v = y[n, k] + b[k]
            if act == ACT_RELU:
                v = v if v > zero else zero
            elif act == ACT_SIGMOID:
                v = v * half
            y[n, k] = v


@njit(cache=True)
def half_plus_half(y):
    # y: (N,) in place: y = (y + 1) / 2, the last step of sigmoid via tanh
    half = y.dtype.type(0.5)
    for i in range(y.shape[0]):
        y[i] = y[i] * half + half


@njit(cache=True)
def act_backward_bias(dz, db, dy, y, act):
    # dz: (N, K) = dy * act'(y); db: (K,) = sum_n dz. dz may alias dy.
    db[:] = 0
    act_backward_bias_acc(dz, db, dy, y, act)


@njit(cache=True)
def act_backward_bias_acc(dz, db, dy, y, act):
    # dz: (N, K) = dy * act'(y); db: (K,) += sum_n dz (row blocks add into one bias gradient)
    N, K = y.shape
    zero = y.dtype.type(0.0)
    one = y.dtype.type(1.0)
    for n in range(N):
        for k in range(K):
            g = dy[n, k]
            v = y[n, k]
            if act == ACT_TANH:
                g = g * (one - v * v)
            elif act == ACT_RELU:
                g = g if v > zero else zero
            elif act == ACT_SIGMOID:
                g = g * v * (one - v)
            dz[n, k] = g
            db[k] += g


@njit(cache=True)
def bias_sigmoid(y, b, has_bias):
    # y: (N, K) in place: y = 1 / (1 + exp(-(y + b))), lanes over k with simd.vexp (one pass, no
    # math library call per value); b ignored unless has_bias
    N, K = y.shape
    kv = K // LANES * LANES
    one = y.dtype.type(1.0)
    onev = vsplat(one)
    zero = vsplat(y.dtype.type(0.0))
    for n in range(N):
        yr = y[n]
        for k in range(0, kv, LANES):
            v = vload(yr, k)
            if has_bias:
                v = vadd(v, vload(b, k))
            vstore(yr, k, vdiv(onev, vadd(onev, vexp(vsub(zero, v)))))
        for k in range(kv, K):
            v = yr[k] + b[k] if has_bias else yr[k]
            yr[k] = one / (one + math.exp(-v))


def apply_act(y, b, act):
    """y (N, K) in place: y = act(y + b) (b may be None), with tanh by numpy's SIMD np.tanh."""
    if act == ACT_SIGMOID and y.flags.c_contiguous:
        bias_sigmoid(y, y[0] if b is None else b, b is not None)
        return
    if b is not None:
        bias_pre_act(y, b, act)
    elif act == ACT_RELU:
        np.maximum(y, 0, out=y)
    elif act == ACT_SIGMOID:
        np.multiply(y, 0.5, out=y)
    if act == ACT_TANH or act == ACT_SIGMOID:
        np.tanh(y, out=y)
    if act == ACT_SIGMOID:
        half_plus_half(y.reshape(-1))
