"""The model builders, as in the seed's BigDL examples; sizes are hyperparameters."""
from __future__ import annotations

import numpy as np

from nets.layers import Activation, Conv2d, Flatten, Linear
from nets.model import Model

MNIST_MEAN = 0.13066047740239506
MNIST_STD = 0.3081078


MAX_LAYERS = 8
"""The most hidden layers a size list may give (``hidden: [256, 64, 32]``)."""


def layer_sizes(hidden: int | list[int] | tuple[int, ...], name: str = "hidden") -> list[int]:
    """``hidden`` as a list of layer widths: an int is one layer; a list has 1..MAX_LAYERS ints >= 1."""
    from nets.errors import ConfigError

    sizes = [hidden] if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool) else hidden
    if not isinstance(sizes, (list, tuple)) or not 1 <= len(sizes) <= MAX_LAYERS or not all(
            isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in sizes):
        raise ConfigError(f"{name} must be a width >= 1 or a list of 1 to {MAX_LAYERS} of them; got {hidden!r}")
    return [int(h) for h in sizes]


def lenet5(hidden: int | list[int] = 100, conv1: int = 6, conv2: int = 12, classes: int = 10, *,
           seed: int = 0, dtype=np.float32, arch: dict | None = None) -> Model:
    """1x28x28 -> conv 6@5x5 -> tanh -> maxpool 2 -> tanh -> conv 12@5x5 -> maxpool 2 -> 192
    -> linear hidden -> tanh (once per width when hidden is a list) -> linear classes -> log-softmax
    (the loss fuses the log-softmax)."""
    # tanh is monotonic, so maxpool(tanh(z)) == tanh(maxpool(z)): the first tanh runs after the
    # pool, on a quarter of the values, with identical outputs and gradients; both pools are fused
    # into their convolutions (Conv2d(pool=2): conv + bias + max-pool + act in one layer).
    layers = [
        Conv2d(conv1, 5, act="tanh", pool=2),      # (B, 12, 12, 6) = tanh(maxpool(conv))
        Activation("tanh"),
        Conv2d(conv2, 5, pool=2),                  # (B, 4, 4, 12) = maxpool(conv)
        Flatten(),                                 # (B, 192)
        *[Linear(h, act="tanh") for h in layer_sizes(hidden)],   # (B, h) per hidden layer
        Linear(classes),                           # (B, classes) logits
    ]
    return Model(layers, (28, 28, 1), seed=seed, dtype=dtype, head="logsoftmax", arch=arch)


def mlp(hidden: int | list[int] = 128, classes: int = 10, n_in: int = 784, *, seed: int = 0,
        dtype=np.float32, arch: dict | None = None) -> Model:
    """784 -> (linear h -> ReLU) for each width h of hidden -> linear classes -> log-softmax (fused in
    the loss)."""
    layers = [*[Linear(h, act="relu") for h in layer_sizes(hidden)], Linear(classes)]
    return Model(layers, (n_in,), seed=seed, dtype=dtype, head="logsoftmax", arch=arch)


def autoencoder(hidden: int | list[int] = 32, n_in: int = 784, *, seed: int = 0, dtype=np.float32,
                arch: dict | None = None) -> Model:
    """784 -> linear hidden -> ReLU -> linear 784 -> sigmoid; with a list, a stacked encoder and its
    mirror image as decoder: [256, 64, 32] is 784 -> 256 -> 64 -> 32 -> 64 -> 256 -> 784 (ReLU inside,
    sigmoid out)."""
    sizes = layer_sizes(hidden)
    widths = sizes + sizes[-2::-1]                 # encoder, then the decoder without the code layer
    layers = [*[Linear(h, act="relu") for h in widths], Linear(n_in, act="sigmoid")]
    return Model(layers, (n_in,), seed=seed, dtype=dtype, arch=arch)


def text_cnn_pools(length: int, kernel: int = 5) -> tuple[int, int, int]:
    """Pool sizes of the text CNN: 5, 5 and whatever remains (35 at length 1000); smaller first pools
    for short sequences, so the last pool always covers what is left (its output has length 1)."""
    from nets.errors import ConfigError

    for p in (5, 4, 3, 2, 1):
        l3 = ((length - kernel + 1) // p - kernel + 1) // p - kernel + 1
        if l3 >= 1:
            return p, p, l3
    raise ConfigError(f"seq_len must be >= {3 * (kernel - 1) + 1} for the text CNN; got {length}")


def text_cnn(vocab_size: int, n_classes: int, length: int = 1000, embed: int = 100, filters: int = 128,
             hidden: int = 100, pretrained: bool = False, fine_tune: bool = False, embed_init: str = "normal",
             *, seed: int = 0, dtype=np.float32, arch: dict | None = None) -> Model:
    """ids (length,) -> embedding `embed` -> 3 x (conv1d filters@5 -> ReLU -> max-pool) -> linear hidden
    -> linear classes -> log-softmax (fused in the loss). With pretrained vectors (GloVe) the table is a
    frozen constant unless fine_tune; without them it is learned, from `embed_init`: "normal" (N(0, 1),
    torch's and BigDL's; the default) or "small" (uniform +-0.05, Keras'; at Adagrad's rate of 0.01 the
    words then move at the scale of their vectors, which pays on short documents: bench/text_vs_torch.py)."""
    from nets.text_layers import Conv1d, Embedding, MaxPool1d

    p1, p2, p3 = text_cnn_pools(length)
    frozen = bool(pretrained) and not fine_tune
    layers = [
        Embedding(vocab_size, embed, frozen=frozen, init=embed_init),   # (B, L, E)
        Conv1d(filters, 5, act="relu"),                # (B, L-4, F)
        MaxPool1d(p1),                                 # (B, (L-4)//5, F)
        Conv1d(filters, 5, act="relu"),
        MaxPool1d(p2),
        Conv1d(filters, 5, act="relu"),
        MaxPool1d(p3),                                 # (B, 1, F)
        Flatten(),                                     # (B, F)
        Linear(hidden),                                # (B, hidden), no activation (as in the seed)
        Linear(n_classes),                             # (B, classes) logits
    ]
    model = Model(layers, (length,), seed=seed, dtype=dtype, head="logsoftmax", arch=arch)
    layers[1].read_words(layers[0])                    # the first conv works once per distinct word
    if frozen:
        layers[1].need_dx = False                      # nothing upstream of the first conv learns
    return model


def rnn_lm(vocab_size: int, hidden: int = 40, length: int = 50, *, seed: int = 0, dtype=np.float32,
           arch: dict | None = None) -> Model:
    """Word-level Elman language model as in the seed: ids (length,) -> one-hot @ W_x (an Embedding of
    width hidden, uniform +-1/sqrt(V) like BigDL's input Linear) -> tanh RNN hidden -> time-distributed
    linear vocab -> softmax cross-entropy. The output layer runs on the real positions only (SeqMask), so
    the model returns packed logits (N, vocab) in row-major order of the non-padding input ids."""
    from nets.text_layers import Elman, Embedding, SeqMask, TimeLinear

    mask = SeqMask()
    layers = [
        Embedding(vocab_size, hidden, init="uniform", mask=mask),  # (B, T, H) = one-hot @ W_x
        Elman(hidden, in_proj=False),                              # (B, T, H)
        TimeLinear(vocab_size, mask=mask),                         # (N, V) packed logits
    ]
    return Model(layers, (length,), seed=seed, dtype=dtype, head="logsoftmax", arch=arch)
