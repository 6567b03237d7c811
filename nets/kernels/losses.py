"""Losses: log-softmax + NLL (fused) and mean squared error."""
from __future__ import annotations

import math

from numba import njit


@njit(cache=True)
def logsoftmax_nll_forward(logp, logits, labels):
    # logp: (B, K) log-probabilities  logits: (B, K)  labels: (B,) int -> mean NLL (float64)
    B, K = logits.shape
    total = 0.0
    for b in range(B):
        m = logits[b, 0]
        for k in range(1, K):
            if logits[b, k] > m:
                m = logits[b, k]
        s = 0.0
        for k in range(K):
            s += math.exp(logits[b, k] - m)
        lse = m + math.log(s)
        for k in range(K):
            logp[b, k] = logits[b, k] - lse
        total -= logp[b, labels[b]]
    return total / B


@njit(cache=True)
def logsoftmax_nll_backward(dlogits, logp, labels):
    # dlogits: (B, K) = (softmax - onehot) / B
    B, K = logp.shape
    inv = dlogits.dtype.type(1.0 / B)
    for b in range(B):
        for k in range(K):
            dlogits[b, k] = math.exp(logp[b, k]) * inv
        dlogits[b, labels[b]] -= inv


@njit(cache=True)
def mse_forward(pred, target):
    # pred, target: (B, D) -> mean over all elements (float64)
    B, D = pred.shape
    total = 0.0
    for b in range(B):
        for d in range(D):
            e = pred[b, d] - target[b, d]
            total += e * e
    return total / (B * D)


@njit(cache=True)
def mse_backward(dpred, pred, target):
    B, D = pred.shape
    scale = dpred.dtype.type(2.0 / (B * D))
    for b in range(B):
        for d in range(D):
            dpred[b, d] = scale * (pred[b, d] - target[b, d])


@njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def mse_forward_grad(dpred, pred, target):
    # one pass: dpred = 2 (pred - target) / (B*D), returns the mean squared error (float64 sum)
    B, D = pred.shape
    scale = dpred.dtype.type(2.0 / (B * D))
    total = 0.0
    for b in range(B):
        s = pred.dtype.type(0.0)
        for d in range(D):
            e = pred[b, d] - target[b, d]
            s += e * e
            dpred[b, d] = scale * e
        total += s
    return total / (B * D)
