"""Layers of the text nets: Embedding, Conv1d, MaxPool1d, Elman (tanh RNN) and TimeLinear.

Same lifecycle as nets.layers (build -> params bound into the model's flat buffers -> forward caches ->
backward overwrites the parameter gradients and returns dx). Sequences are channel-last (B, T, C); the
time length T of a batch may be shorter than the one the model was built with (the language model's
batches stop at their longest sentence), so buffers grow to the largest batch seen and are reused as views.

Embedding and the flat buffer. A trainable table (learned, or GloVe fine-tuned) lives in the flat
parameter buffer like every other weight, so checkpoints, parameter averaging and `nets.save` see it.
Its gradient is sparse: backward clears the table gradient (one memset) and scatter-adds dy into the
rows of the batch's ids only (no dense (V, D) matmul); with SGD without momentum/weight decay and with
Adagrad without weight decay, every row outside the batch then stays bit-for-bit unchanged (the update
of a zero gradient is zero), as with a sparse update. (Momentum, Adam or weight decay move all rows, as
torch's dense nn.Embedding does.) A frozen table (GloVe as fixed features) is not a parameter at all:
it is a constant (`layer.consts`, saved by `nets.save`), has no gradient, and the layer after it is
told not to compute dx, so nothing of the backward pass reaches it.

Padding. Id 0 is padding; its embedding row is zero and never receives a gradient. A `SeqMask` shared by
the Embedding and a TimeLinear lets the language model compute its output layer (the big matmul and the
softmax over the vocabulary) on the real positions only: TimeLinear then returns packed rows (N, V) in
row-major (b, t) order of the non-padding ids, which the sequence loss matches with its non-padding
targets.
"""
from __future__ import annotations

import math

import numpy as np

from nets.errors import ConfigError
from nets.kernels import activations as ka
from nets.kernels import text as kt
from nets.layers import ACTS, Layer

PAD = 0
INIT_LAWS = ("normal", "uniform", "small")     # Embedding's initial tables


class SeqMask:
    """The real (non-padding) positions of the current (B, T) id batch, as flat indices b*T + t."""

    def __init__(self) -> None:
        self.rows: np.ndarray = np.zeros(0, np.int64)
        self.shape: tuple[int, int] = (0, 0)

    def set(self, ids: np.ndarray) -> None:
        self.shape = ids.shape
        self.rows = np.flatnonzero(ids.reshape(-1) != PAD)


class SeqLayer(Layer):
    """A Layer whose buffers are views of one growing allocation per key (batch shapes vary)."""

    def __init__(self) -> None:
        super().__init__()
        self._cap: dict[str, np.ndarray] = {}
        self.consts: dict[str, np.ndarray] = {}

    def cbuf(self, key: str, shape: tuple[int, ...], dtype=None) -> np.ndarray:
        dtype = np.dtype(dtype or self.dtype)
        n = int(np.prod(shape))
        b = self._cap.get(key)
        if b is None or b.size < n or b.dtype != dtype:
            b = self._cap[key] = np.empty(max(n, 1), dtype)
        return b[:n].reshape(shape)


class Embedding(SeqLayer):
    """ids (B, T) int -> vectors (B, T, D); table (V, D), row 0 = padding = zero.

    frozen: the table is a constant (set it with `set_table`), outside the gradient path.
    init: "normal" N(0, 1) (torch/BigDL LookupTable), "uniform" +-1/sqrt(V) (BigDL's one-hot Linear) or
    "small" uniform +-0.05 (Keras' Embedding: a learned table then moves at the scale of its values).
    mask: a SeqMask to fill with the batch's real positions.
    """

    def __init__(self, n_words: int, dim: int, frozen: bool = False, init: str = "normal",
                 mask: SeqMask | None = None) -> None:
        super().__init__()
        if init not in INIT_LAWS:
            raise ConfigError(f"the embedding's init must be one of {list(INIT_LAWS)}; got {init!r}")
        self.V, self.D, self.frozen, self.init_law, self.mask = int(n_words), int(dim), bool(frozen), init, mask
        self.fused = False                            # a Conv1d.read_words(self) after it does the lookup

    def build(self, in_shape):
        (T,) = in_shape
        if self.frozen:
            self.consts["w"] = np.zeros((self.V, self.D), self.dtype)
        else:
            self.param("w", (self.V, self.D), self.V)
        return (T, self.D)

    @property
    def table(self) -> np.ndarray:
        return self.consts["w"] if self.frozen else self.p["w"]

    def init(self, rng):
        if self.frozen:
            return
        if self.init_law == "normal":
            self.p["w"][...] = rng.standard_normal((self.V, self.D))
        else:
            bound = 1.0 / math.sqrt(self.V) if self.init_law == "uniform" else 0.05
            self.p["w"][...] = rng.uniform(-bound, bound, (self.V, self.D))
        self.p["w"][PAD] = 0

    def set_table(self, table: np.ndarray) -> None:
        """Copy pre-trained vectors (e.g. GloVe) in; row 0 is forced to zero (padding)."""
        if table.shape != (self.V, self.D):
            raise ValueError(f"table shape {table.shape} != ({self.V}, {self.D})")
        self.table[...] = table
        self.table[PAD] = 0

    def forward(self, ids):
        if ids.dtype.kind != "i":                     # Model.predict hands floats; ids < 2**24 are exact
            ids = ids.astype(np.int32)
        ids = np.ascontiguousarray(ids)
        flat = ids.reshape(-1)
        if not kt.ids_in_range(flat, self.V):
            raise ValueError(f"token ids must be in [0, {self.V}); got [{flat.min()}, {flat.max()}]")
        if self.fused:
            return ids
        B, T = ids.shape
        out = self.cbuf("out", (B, T, self.D))
        kt.embedding_forward(out.reshape(B * T, self.D), flat, self.table)
        self.ids = flat
        if self.mask is not None:
            self.mask.set(ids)
        return out

    def backward(self, dy):
        if not self.frozen:
            g = self.g["w"]
            g.fill(0)
            kt.embedding_backward(g, dy.reshape(-1, self.D), self.ids)
        return None                                   # ids have no gradient

    def config(self):
        return {"n_words": self.V, "dim": self.D, "frozen": self.frozen}


class Conv1d(SeqLayer):
    """x (B, T, C) -> act(conv(x) + b) (B, T-K+1, OC), stride 1, no padding; W: (K*C, OC).

    im2col + BLAS matmul, by chunks of `chunk` output rows so the patch matrix stays in cache (the full
    one would be B*T*K*C values: 255 MB for the text CNN's first layer at batch 128, length 1000).

    After `read_words(embedding)` the layer takes the embedding's ids (B, T) instead of its vectors and
    works once per distinct word of the batch, not once per position: P = table[words] @ W_k for each
    tap k (a U x C by C x K*F matmul), then y_t = sum_k P[word at t+k, k]; backward sums dz into
    G[word, k], so dW_k = table[words]^T G_k and the table's gradient rows are G @ W^T, written into
    the embedding's gradient (its own backward is skipped). The same sums as im2col, in another order;
    U is at most the batch's positions and usually far fewer (Zipf; 128 x 1000 has ~5,000 words)."""

    def __init__(self, n_out: int, kernel: int, act: str | None = None, chunk: int = 1024) -> None:
        super().__init__()
        self.n_out, self.k, self.act, self.chunk = int(n_out), int(kernel), act, int(chunk)
        self._act = ACTS[act]

    def read_words(self, embedding: Embedding) -> None:
        """Fuse with the embedding before this layer (see the class docstring): from now on its forward
        and backward are the per-word ones."""
        self.words, embedding.fused = embedding, True
        self.slot = np.full(embedding.V, -1, np.int32)
        self.forward, self.backward = self._forward_words, self._backward_words

    def build(self, in_shape):
        T, C = in_shape
        if T < self.k:
            raise ValueError(f"Conv1d kernel {self.k} does not fit a sequence of length {T}")
        self.C = C
        fan_in = self.k * C
        self.param("w", (fan_in, self.n_out), fan_in)
        self.param("b", (self.n_out,), fan_in)
        return (T - self.k + 1, self.n_out)

    def _chunks(self, rows):
        R = max(1, min(self.chunk, rows))
        for r0 in range(0, rows, R):
            yield r0, min(R, rows - r0)

    def forward(self, x):
        B, T, C = x.shape
        OT = T - self.k + 1
        rows, KC = B * OT, self.k * C
        y = self.cbuf("y", (rows, self.n_out))
        col = self.cbuf("col", (min(self.chunk, rows), KC))
        w, b = self.p["w"], self.p["b"]
        for r0, r in self._chunks(rows):
            c, yc = col[:r], y[r0:r0 + r]
            kt.im2col_1d(c, x, self.k, r0)
            np.matmul(c, w, out=yc)
            ka.apply_act(yc, b, self._act)
        self.x, self.y = x, y
        return y.reshape(B, OT, self.n_out)

    def _forward_words(self, ids):
        (B, T), K, C, F = ids.shape, self.k, self.C, self.n_out
        inv, uniq = self.cbuf("inv", (B, T), np.int32), self.cbuf("uniq", (B * T,), np.int32)
        U = kt.distinct_ids(inv.reshape(-1), uniq, self.slot, ids.reshape(-1))
        self.uniq, self.inv = uniq[:U], inv
        rows = self.rows = self.cbuf("rows", (U, C))
        np.take(self.words.table, self.uniq, axis=0, out=rows)
        w2 = self.w2 = self.cbuf("w2", (C, K, F))                 # w2[c, k] = W[k*C + c]
        np.copyto(w2, self.p["w"].reshape(K, C, F).transpose(1, 0, 2))
        pk = np.matmul(rows, w2.reshape(C, K * F), out=self.cbuf("pk", (U, K * F)))
        y = self.y = self.cbuf("y", (B * (T - K + 1), F))
        kt.conv1d_word_sum(y.reshape(B, -1, F), pk.reshape(U, K, F), inv)
        ka.apply_act(y, self.p["b"], self._act)
        return y.reshape(B, -1, F)

    def _backward_words(self, dy):
        y, (U, C), K, F = self.y, self.rows.shape, self.k, self.n_out
        dz = self.cbuf("dz", y.shape)
        ka.act_backward_bias(dz, self.g["b"], dy.reshape(y.shape), y, self._act)
        g = self.cbuf("gk", (U, K * F))
        g.fill(0)
        kt.conv1d_word_grad(g.reshape(U, K, F), dz.reshape(dy.shape), self.inv)
        dw2 = np.matmul(self.rows.T, g, out=self.cbuf("dw2", (C, K * F)))
        np.copyto(self.g["w"].reshape(K, C, F), dw2.reshape(C, K, F).transpose(1, 0, 2))
        if self.need_dx:                                           # the table's gradient, its rows only
            self.words.g["w"].fill(0)
            self.words.g["w"][self.uniq] = np.matmul(g, self.w2.reshape(C, K * F).T, out=self.cbuf("dr", (U, C)))
        return None

    def backward(self, dy):
        x, y = self.x, self.y
        B, T, C = x.shape
        rows, KC = y.shape[0], self.k * C
        dy2 = dy.reshape(rows, self.n_out)
        gw, gb, w = self.g["w"], self.g["b"], self.p["w"]
        gw.fill(0)
        gb.fill(0)
        R = min(self.chunk, rows)
        col, dz = self.cbuf("col", (R, KC)), self.cbuf("dz", (R, self.n_out))
        tw = self.cbuf("tw", gw.shape)
        dx = None
        if self.need_dx:
            dx = self.cbuf("dx", x.shape)
            dx.fill(0)
            dcol = self.cbuf("dcol", (R, KC))
        for r0, r in self._chunks(rows):
            c, d = col[:r], dz[:r]
            ka.act_backward_bias_acc(d, gb, dy2[r0:r0 + r], y[r0:r0 + r], self._act)
            kt.im2col_1d(c, x, self.k, r0)
            np.matmul(c.T, d, out=tw)
            gw += tw
            if dx is not None:
                np.matmul(d, w.T, out=dcol[:r])
                kt.col2im_1d(dx, dcol[:r], self.k, r0)
        return dx


class MaxPool1d(SeqLayer):
    """x (B, T, C) -> (B, T // k, C): max over windows of k steps, stride k (floor, like Torch/BigDL)."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.k = int(kernel)

    def build(self, in_shape):
        T, C = in_shape
        if not 1 <= self.k <= T:
            raise ValueError(f"MaxPool1d kernel {self.k} does not fit a sequence of length {T}")
        return (T // self.k, C)

    def forward(self, x):
        B, T, C = x.shape
        shape = (B, T // self.k, C)
        y = self.cbuf("y", shape)
        self.arg = self.cbuf("arg", shape, np.int32)
        kt.maxpool1d_forward(y, self.arg, x, self.k)
        self.x_shape = x.shape
        return y

    def backward(self, dy):
        dx = self.cbuf("dx", self.x_shape)
        kt.maxpool1d_backward(dx, dy, self.arg)
        return dx


class Elman(SeqLayer):
    """Elman RNN: h_t = tanh(x_t W_x + h_{t-1} W_h + b), h_{-1} = 0; x (B, T, D) -> h (B, T, H).

    in_proj=False drops W_x (needs D == H): the input is then the term itself, as when an Embedding of
    width H stands for BigDL's one-hot input times W_x. Init as torch's nn.RNN: every weight and the bias
    uniform(+-1/sqrt(H)). Backward is backpropagation through time over the whole sequence."""

    def __init__(self, hidden: int, in_proj: bool = True) -> None:
        super().__init__()
        self.H, self.in_proj = int(hidden), bool(in_proj)

    def build(self, in_shape):
        T, D = in_shape
        if not self.in_proj and D != self.H:
            raise ValueError(f"Elman without input projection needs input width {self.H}; got {D}")
        if self.in_proj:
            self.param("wx", (D, self.H), self.H)
        self.param("wh", (self.H, self.H), self.H)
        self.param("b", (self.H,), self.H)
        return (T, self.H)

    def forward(self, x):
        B, T, D = x.shape
        if self.in_proj:
            a = self.cbuf("a", (B, T, self.H))
            np.matmul(x.reshape(B * T, D), self.p["wx"], out=a.reshape(B * T, self.H))
        else:
            a = x
        h = self.cbuf("h", (B, T, self.H))
        if self.H >= kt.LANES:
            kt.elman_forward_vec(h, np.ascontiguousarray(a), self.p["wh"], self.p["b"])
        else:
            kt.elman_forward(h, a, self.p["wh"], self.p["b"])
        self.x, self.h = x, h
        return h

    def backward(self, dh):
        x, h = self.x, self.h
        B, T, D = x.shape
        dz = self.cbuf("dz", h.shape)
        H = self.H
        if H >= kt.LANES:
            # the recurrence in vectors; then dW_h = sum_t h_{t-1}^T dz_t and db in one BLAS call each
            wht = self.cbuf("wht", (H, H))
            np.copyto(wht, self.p["wh"].T)
            kt.elman_backward_vec(dz, np.ascontiguousarray(dh), h, wht)
            np.matmul(h[:, :-1].reshape(-1, H).T, dz[:, 1:].reshape(-1, H), out=self.g["wh"])
            np.sum(dz.reshape(-1, H), axis=0, out=self.g["b"])
        else:
            kt.elman_backward(dz, self.g["wh"], self.g["b"], np.ascontiguousarray(dh), h, self.p["wh"])
        if not self.in_proj:
            return dz if self.need_dx else None
        dz2 = dz.reshape(B * T, self.H)
        np.matmul(x.reshape(B * T, D).T, dz2, out=self.g["wx"])
        if not self.need_dx:
            return None
        dx = self.cbuf("dx", x.shape)
        np.matmul(dz2, self.p["wx"].T, out=dx.reshape(B * T, D))
        return dx


class TimeLinear(SeqLayer):
    """The same linear map at every step: x (B, T, D) -> x @ W + b (B, T, OUT).

    With a SeqMask, only the real positions are computed and the output is packed: (N, OUT), rows in
    row-major (b, t) order of the non-padding ids; dx is zero at the padding positions."""

    def __init__(self, n_out: int, mask: SeqMask | None = None) -> None:
        super().__init__()
        self.n_out, self.mask = int(n_out), mask

    def build(self, in_shape):
        T, D = in_shape
        self.param("w", (D, self.n_out), D)
        self.param("b", (self.n_out,), D)
        return (T, self.n_out)

    def forward(self, x):
        B, T, D = x.shape
        x2 = x.reshape(B * T, D)
        if self.mask is not None:
            if self.mask.shape != (B, T):
                raise ValueError(f"SeqMask is for a {self.mask.shape} batch; input is {(B, T)}")
            rows = self.mask.rows
            # rows gathered next to a column of ones: [x 1] @ [W; b] (w then b in the flat buffer)
            # adds the bias inside the matmul instead of in a pass over the N x OUT output
            xa = self.xa = self.cbuf("xa", (len(rows), D + 1))
            xa[:, D] = 1
            xp = xa[:, :D]
            kt.gather_rows(xp, x2, rows)
            y = self.cbuf("y", (xp.shape[0], self.n_out))
            np.matmul(xa, self.p_all.reshape(D + 1, self.n_out), out=y)
        else:
            xp = x2
            y = self.cbuf("y", (xp.shape[0], self.n_out))
            np.matmul(xp, self.p["w"], out=y)
            np.add(y, self.p["b"], out=y)
        self.x_shape, self.xp = x.shape, xp
        return y if self.mask is not None else y.reshape(B, T, self.n_out)

    def backward(self, dy):
        B, T, D = self.x_shape
        xp = self.xp
        d2 = dy.reshape(xp.shape[0], self.n_out)
        if self.mask is not None:
            # [dW; db] = [x 1]^T @ dy in one matmul
            np.matmul(self.xa.T, d2, out=self.g_all.reshape(D + 1, self.n_out))
        else:
            np.sum(d2, axis=0, out=self.g["b"])
            np.matmul(xp.T, d2, out=self.g["w"])
        if not self.need_dx:
            return None
        if self.mask is None:
            dx = self.cbuf("dx", (B, T, D))
            np.matmul(d2, self.p["w"].T, out=dx.reshape(B * T, D))
            return dx
        dxp = self.cbuf("dxp", xp.shape)
        np.matmul(d2, self.p["w"].T, out=dxp)
        dx = self.cbuf("dx", (B, T, D))
        kt.scatter_rows(dx.reshape(B * T, D), dxp, self.mask.rows)
        return dx
