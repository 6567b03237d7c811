"""Layers over one flat parameter buffer.

Lifecycle of a layer inside a `Model`:
1. `build(in_shape)` is called once with the per-sample input shape and returns the output shape;
   it declares parameters with `self.param(name, shape, fan_in)`.
2. The model allocates one flat parameter buffer and one flat gradient buffer and hands each layer
   views into them (`layer.p[name]`, `layer.g[name]`).
3. `forward(x)` keeps what `backward` needs; `backward(dy)` writes (overwrites) the gradients of
   its parameters and returns dx (or None when `need_dx` is False: the first layer).
Buffers are allocated once per batch shape and reused, so a training step allocates nothing; a layer
keeps at most MAX_BUFFERS of them (the oldest goes first), so ever-new batch shapes do not grow it.
"""
from __future__ import annotations

import math

import numpy as np

from nets.kernels import activations as ka
from nets.kernels import conv as kc
from nets.kernels import conv_direct as kd
from nets.kernels import pool as kp

ACTS = {None: ka.ACT_NONE, "tanh": ka.ACT_TANH, "relu": ka.ACT_RELU, "sigmoid": ka.ACT_SIGMOID}
MAX_BUFFERS = 64     # per layer (or loss): training and evaluation, full and last batches, use < 30


def make_room(cache: dict) -> None:
    """Drop the oldest entries of a buffer cache until one more fits under MAX_BUFFERS."""
    while len(cache) >= MAX_BUFFERS:
        del cache[next(iter(cache))]


class Layer:
    """Base class: no parameters, identity shape."""

    def __init__(self) -> None:
        self.specs: list[tuple[str, tuple[int, ...], int]] = []  # (name, shape, fan_in)
        self.p: dict[str, np.ndarray] = {}
        self.g: dict[str, np.ndarray] = {}
        self.need_dx = True
        self.dtype = np.float32
        self._bufs: dict[tuple, np.ndarray] = {}

    def param(self, name: str, shape: tuple[int, ...], fan_in: int) -> None:
        self.specs.append((name, tuple(shape), fan_in))

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def init(self, rng: np.random.Generator) -> None:
        """Torch/BigDL default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases."""
        for name, shape, fan_in in self.specs:
            bound = 1.0 / math.sqrt(fan_in)
            self.p[name][...] = rng.uniform(-bound, bound, size=shape)

    def buf(self, key: str, shape: tuple[int, ...], dtype=None) -> np.ndarray:
        k = (key, shape)
        b = self._bufs.get(k)
        if b is None:
            make_room(self._bufs)
            b = self._bufs[k] = np.empty(shape, dtype or self.dtype)
        return b

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def config(self) -> dict:
        return {}


class Linear(Layer):
    """y = act(x @ W + b); x: (B, in), W: (in, out)."""

    SMALL_BATCH = 48          # batches up to this size take dx as (W @ dz^T)^T

    def __init__(self, n_out: int, act: str | None = None) -> None:
        super().__init__()
        self.n_out, self.act = int(n_out), act
        self._act = ACTS[act]

    def build(self, in_shape):
        (n_in,) = in_shape
        self.param("w", (n_in, self.n_out), n_in)
        self.param("b", (self.n_out,), n_in)
        return (self.n_out,)

    def forward(self, x):
        self.x = x
        y = self.buf("y", (x.shape[0], self.n_out))
        np.matmul(x, self.p["w"], out=y)
        ka.apply_act(y, self.p["b"], self._act)
        self.y = y
        return y

    def backward(self, dy):
        dz = self.buf("dz", dy.shape)
        ka.act_backward_bias(dz, self.g["b"], dy, self.y, self._act)
        np.matmul(self.x.T, dz, out=self.g["w"])
        if not self.need_dx:
            return None
        dx = self.buf("dx", self.x.shape)
        B = dz.shape[0]
        if B <= self.SMALL_BATCH:
            # OpenBLAS is slow on dz @ W^T for a few rows (12 x 100 @ 100 x 192: 15 us); W @ dz^T
            # with the small transposes copied is 9 us (from 64 rows on the plain product wins)
            dzt = self.buf("dzt", (dz.shape[1], B))
            np.copyto(dzt, dz.T)
            dxt = self.buf("dxt", (dx.shape[1], B))
            np.matmul(self.p["w"], dzt, out=dxt)
            np.copyto(dx, dxt.T)
        else:
            np.matmul(dz, self.p["w"].T, out=dx)
        return dx


class Conv2d(Layer):
    """NHWC convolution: x (B, H, W, C) -> act(conv(x) + b) (B, OH, OW, OC); W: (KH*KW*C, OC).

    `pool=p` fuses a p x p max-pool of stride p (floor mode) after the bias: the output is then
    act(maxpool(conv(x) + b)), which equals maxpool(act(conv(x) + b)) for the monotonic activations
    here, (B, OH//p, OW//p, OC), and the act runs on the pooled values only.
    `build` chooses the algorithm once (the first of ALGOS that fits the input; `algo` names one):
    "flat" (one input channel, stride 1, no padding: LeNet's first layer), "direct" (no padding and a
    kernel row of at least 16 values, KW * C >= 16: LeNet's second layer), "im2col_t" (one input
    channel, no padding) and "im2col" (everything). The layer's forward and backward are then the
    algorithm's own, so a step pays no dispatch.
    """

    FWD_CHUNK_ROWS = 512      # patch rows per im2col + matmul chunk (forward)
    BWD_CHUNK_ROWS = 2048     # rows per dcol matmul + col2im chunk (backward)

    def __init__(self, n_out: int, kernel: int, stride: int = 1, pad: int = 0,
                 act: str | None = None, pool: int = 0, algo: str | None = None) -> None:
        super().__init__()
        self.n_out, self.k, self.stride, self.pad, self.act = int(n_out), int(kernel), int(stride), int(pad), act
        self.pool = int(pool or 0)
        self._act = ACTS[act]
        if algo is not None and algo not in ALGOS:
            raise ValueError(f"Conv2d algo must be one of {sorted(ALGOS)}; got {algo!r}")
        self.algo = algo

    def build(self, in_shape):
        H, W, C = in_shape
        self.oh = (H + 2 * self.pad - self.k) // self.stride + 1
        self.ow = (W + 2 * self.pad - self.k) // self.stride + 1
        if self.oh < 1 or self.ow < 1:
            raise ValueError(f"Conv2d kernel {self.k} does not fit input {in_shape}")
        fan_in = self.k * self.k * C
        self.param("w", (fan_in, self.n_out), fan_in)
        self.param("b", (self.n_out,), fan_in)
        out = (self.oh, self.ow, self.n_out)
        if self.pool:
            out = (self.oh // self.pool, self.ow // self.pool, self.n_out)
            if out[0] < 1 or out[1] < 1:
                raise ValueError(f"Conv2d pool {self.pool} does not fit its output {(self.oh, self.ow)}")
        fits = [name for name, algo in ALGOS.items() if algo.fits(self, C)]
        if self.algo is not None and self.algo not in fits:
            raise ValueError(f"Conv2d algo {self.algo!r} does not fit input {in_shape}; these do: {fits}")
        self.algo = self.algo or fits[0]
        impl = ALGOS[self.algo](self, in_shape)
        self.forward, self.backward = impl.forward, impl.backward
        return out


class _ConvAlgo:
    """One way to compute a Conv2d, its forward and backward side by side. It reads its layer's
    settings and shares its parameters, gradients and buffers; forward keeps what backward needs."""

    def __init__(self, layer: Conv2d, in_shape: tuple[int, int, int]) -> None:
        self.layer = layer
        self.H, self.W, self.C = in_shape
        self.k, self.stride, self.pad, self.pool = layer.k, layer.stride, layer.pad, layer.pool
        self.oh, self.ow, self.oc = layer.oh, layer.ow, layer.n_out
        self.K = self.k * self.k * self.C
        self.act = layer._act
        self.p, self.g, self.buf = layer.p, layer.g, layer.buf

    @staticmethod
    def fits(layer: Conv2d, C: int) -> bool:
        return True

    def _pool_bias_act(self, y4):
        """out = act(maxpool(y4 + b)); y4: (B, OH, OW, >= OC); keeps the argmax for backward."""
        p = self.pool
        out = self.buf("out", (y4.shape[0], self.oh // p, self.ow // p, self.oc))
        self.arg = self.buf("arg", out.shape, np.int32)
        kc.pool_bias_forward(out, self.arg, y4, self.p["b"], p)
        ka.apply_act(out.reshape(-1, self.oc), None, self.act)
        self.y = out
        return out

    def _bias_act(self, y):
        """y = act(y + b) in place; y: (rows, OC); returns it as (B, OH, OW, OC)."""
        ka.apply_act(y, self.p["b"], self.act)
        self.y = y
        return y.reshape(-1, self.oh, self.ow, self.oc)

    def _grad_z(self, dz, dy):
        """dz: the gradient at conv(x) + b (back through the act and the pool), and the bias gradient."""
        if self.pool:
            kc.pool_bias_backward(dz, self.g["b"], dy, self.y, self.arg, self.act)
        else:
            ka.act_backward_bias(dz, self.g["b"], dy.reshape(dz.shape), self.y, self.act)


class _FlatConv(_ConvAlgo):
    """One input channel, stride 1, no padding: direct "flat row" kernels (nets.kernels.conv.conv1ch_*)
    over padded copies of the samples (the vector blocks may read past a sample) and weights, with
    the outputs planar (B, OC, rows) inside."""

    @staticmethod
    def fits(layer, C):
        return C == 1 and layer.pad == 0 and layer.stride == 1

    def forward(self, x):
        B, OC, W, k, p = x.shape[0], self.oc, self.W, self.k, self.pool
        self.x = x
        LP = kd.flat_pitch((self.oh - 1) * W + self.ow)
        self.xpad = self.buf("xpad", (B, self.H * W + kd.FLAT_BLOCK))
        kd.pad_samples(self.xpad, x)
        w6 = self.buf("w6", (k * k * (-(-OC // 6) * 6),))
        kd.pad_rows(w6, self.p["w"])
        if p:
            out = self.buf("out", (B, self.oh // p, self.ow // p, OC))
            self.arg = self.buf("arg", (B, OC, self.oh // p, self.ow // p), np.int32)
            kc.conv1ch_pool_forward(out, self.arg, self.buf("ys", (OC, LP)), self.xpad, w6, self.p["b"],
                                    k, k, p, W)
        else:
            yp = self.buf("yp", (B, OC, LP))
            kc.conv1ch_forward(yp, self.xpad, w6, self.p["b"], k, k, W)
            out = self.buf("y", (B, self.oh, self.ow, OC))
            kc.planar_to_nhwc(out, yp, W)
        ka.apply_act(out.reshape(-1, OC), None, self.act)
        self.y = out
        return out

    def backward(self, dy):
        B, OC = dy.shape[0], self.oc
        L = (self.oh - 1) * self.W + self.ow
        dzp = self.buf("dzp", (B, OC, kd.flat_pitch(L)))
        if self.pool:
            kc.pool_planar_backward(dzp, self.g["b"], dy, self.y, self.arg, self.act)
        else:
            dz = self.buf("dz", (B * self.oh * self.ow, OC))
            ka.act_backward_bias(dz, self.g["b"], dy.reshape(dz.shape), self.y.reshape(dz.shape), self.act)
            kc.nhwc_to_planar(dzp, dz.reshape(B, self.oh, self.ow, OC), self.W)
        gacc = self.buf("gacc", (self.k * self.k * OC * kd.LANES,))
        kd.conv1ch_weight_grad(self.g["w"], gacc, self.xpad, dzp, self.k, self.k, self.W)
        if not self.layer.need_dx:
            return None
        dx = self.buf("dx", self.x.shape)
        kc.conv1ch_input_grad(dx, dzp, self.p["w"], self.k, self.k, L)
        return dx


class _DirectConv(_ConvAlgo):
    """No padding, kernel rows of at least 16 values: register-blocked kernels (nets.kernels.conv_direct)
    into a buffer with the channels padded to whole vectors (OCP), then pool + bias + act."""

    @staticmethod
    def fits(layer, C):
        return layer.pad == 0 and layer.k * C >= kd.LANES

    def forward(self, x):
        B, OC, OCP = x.shape[0], self.oc, kd.padded(self.oc)
        self.x = x
        rows = B * self.oh * self.ow
        wp = self.buf("wp", (self.K * OCP,))
        kd.pad_rows(wp, self.p["w"])
        yp = self.buf("yp", (rows * OCP,))
        kd.conv_forward(yp, x, wp, self.k, self.k, self.stride, self.oh, self.ow)
        if self.pool:
            return self._pool_bias_act(yp.reshape(B, self.oh, self.ow, OCP))
        y = self.buf("y", (rows, OC))
        kd.unpad_rows(y, yp)
        return self._bias_act(y)

    def backward(self, dy):
        B, OC, C, k = dy.shape[0], self.oc, self.C, self.k
        rows = B * self.oh * self.ow
        dzp = self.buf("dzp", (rows * kd.padded(OC),))
        if self.pool:
            self._grad_z(dzp, dy)
        else:
            dz = self.buf("dz", (rows, OC))
            self._grad_z(dz, dy)
            kd.pad_rows(dzp, dz)
        Q = k * C
        QP = kd.padded(Q)
        gacc = self.buf("gacc", (OC * k * QP,))
        kd.conv_weight_grad(self.g["w"], gacc, self.x, dzp, k, k, self.stride, self.oh, self.ow)
        if not self.layer.need_dx:
            return None
        wt = self.buf("wt", (k * OC * QP,))
        kd.pad_weights_t(wt, self.p["w"], k, QP)
        n = B * self.H * self.W * C
        dxf = self.buf("dxf", (n + QP - Q,))
        kd.conv_input_grad(dxf, dzp, wt, B, self.H, self.W, C, k, k, self.stride, self.oh, self.ow)
        return dxf[:n].reshape(self.x.shape)


class _Im2colTConv(_ConvAlgo):
    """One input channel, no padding (strided): the patch matrix built transposed, (K, rows), so every
    copy is a run of OW values; BLAS matmuls."""

    @staticmethod
    def fits(layer, C):
        return C == 1 and layer.pad == 0

    def forward(self, x):
        B = x.shape[0]
        self.x = x
        rows = B * self.oh * self.ow
        y = self.buf("y", (rows, self.oc))
        col = self.col = self.buf("colt", (self.K, rows))
        kc.im2col_t(col, x, self.k, self.k, self.stride, self.oh, self.ow)
        np.matmul(col.T, self.p["w"], out=y)
        if self.pool:
            return self._pool_bias_act(y.reshape(B, self.oh, self.ow, self.oc))
        return self._bias_act(y)

    def backward(self, dy):
        dz = self.buf("dz", (dy.shape[0] * self.oh * self.ow, self.oc))
        self._grad_z(dz, dy)
        np.matmul(self.col, dz, out=self.g["w"])
        if not self.layer.need_dx:
            return None
        dx = self.buf("dx", self.x.shape)
        dcolt = self.buf("dcolt", self.col.shape)
        np.matmul(self.p["w"], dz.T, out=dcolt)
        kc.col2im_t(dx, dcolt, self.k, self.k, self.stride, self.oh, self.ow)
        return dx


class _Im2colConv(_ConvAlgo):
    """Any shape: im2col + BLAS matmuls, in chunks of patch rows that stay in L2 (Conv2d.FWD_CHUNK_ROWS,
    BWD_CHUNK_ROWS)."""

    def forward(self, x):
        B, k, per = x.shape[0], self.k, self.oh * self.ow
        self.x = x
        y = self.buf("y", (B * per, self.oc))
        col = self.col = self.buf("col", (B * per, self.K))
        # in chunks of about FWD_CHUNK_ROWS patch rows: each chunk's matmul reads the patches
        # while they are still in L2 (1.5x faster at batch 1000); col is kept whole for dW
        step = max(1, self.layer.FWD_CHUNK_ROWS // per)
        for s0 in range(0, B, step):
            r0, r1 = s0 * per, min(B, s0 + step) * per
            kc.im2col(col[r0:r1], x[s0:s0 + step], k, k, self.stride, self.pad, self.oh, self.ow)
            np.matmul(col[r0:r1], self.p["w"], out=y[r0:r1])
        if self.pool:
            return self._pool_bias_act(y.reshape(B, self.oh, self.ow, self.oc))
        return self._bias_act(y)

    def backward(self, dy):
        B, k, per = dy.shape[0], self.k, self.oh * self.ow
        dz = self.buf("dz", (B * per, self.oc))
        self._grad_z(dz, dy)
        # dW^T = dz^T @ col into a contiguous (OC, K) buffer is 1.4x faster in OpenBLAS than
        # dW = col^T @ dz for these thin shapes; the small transpose copy is free
        gwt = self.buf("gwt", (self.oc, self.K))
        np.matmul(dz.T, self.col, out=gwt)
        self.g["w"][...] = gwt.T
        if not self.layer.need_dx:
            return None
        dx = self.buf("dx", self.x.shape)
        # dcol in chunks that stay in L2 (col2im reads each one right after its matmul)
        step = max(1, self.layer.BWD_CHUNK_ROWS // per)
        dcol = self.buf("dcol", (min(B, step) * per, self.K))
        for s0 in range(0, B, step):
            r0, r1 = s0 * per, min(B, s0 + step) * per
            d = dcol[:r1 - r0]
            np.matmul(dz[r0:r1], self.p["w"].T, out=d)
            kc.col2im(dx[s0:s0 + step], d, k, k, self.stride, self.pad, self.oh, self.ow)
        return dx


ALGOS: dict[str, type[_ConvAlgo]] = {     # in order of preference: build takes the first that fits
    "flat": _FlatConv, "direct": _DirectConv, "im2col_t": _Im2colTConv, "im2col": _Im2colConv}


class MaxPool2d(Layer):
    """NHWC max pooling, kernel k, stride s (default k); floor mode like Torch/BigDL."""

    def __init__(self, kernel: int, stride: int | None = None) -> None:
        super().__init__()
        self.k = int(kernel)
        self.stride = int(stride or kernel)

    def build(self, in_shape):
        H, W, C = in_shape
        self.out_shape = ((H - self.k) // self.stride + 1, (W - self.k) // self.stride + 1, C)
        return self.out_shape

    def forward(self, x):
        shape = (x.shape[0],) + self.out_shape
        y = self.buf("y", shape)
        self.arg = self.buf("arg", shape, np.int32)
        kp.maxpool_forward(y, self.arg, x, self.k, self.stride)
        self.x_shape = x.shape
        return y

    def backward(self, dy):
        dx = self.buf("dx", self.x_shape)
        kp.maxpool_backward(dx, dy, self.arg)
        return dx


class Activation(Layer):
    """Elementwise tanh / relu / sigmoid."""

    def __init__(self, act: str) -> None:
        super().__init__()
        self.act = act
        self._act = ACTS[act]

    def forward(self, x):
        y = self.buf("y", x.shape)
        if self._act == ka.ACT_TANH:
            np.tanh(x, out=y)               # one pass, no copy first
        else:
            np.copyto(y, x)
            ka.apply_act(y.reshape(-1, 1), None, self._act)
        self.y = y
        return y

    def backward(self, dy):
        dx = self.buf("dx", dy.shape)
        ka.act_backward(dx.reshape(-1), dy.reshape(-1), self.y.reshape(-1), self._act)
        return dx


class Flatten(Layer):
    def build(self, in_shape):
        self.in_shape = in_shape
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape((dy.shape[0],) + self.in_shape)

