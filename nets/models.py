"""The model builders, as in the seed's BigDL examples; sizes are hyperparameters."""
from __future__ import annotations

import numpy as np

from nets.layers import Activation, Conv2d, Flatten, Linear, MaxPool2d
from nets.model import Model

MNIST_MEAN = 0.13066047740239506
MNIST_STD = 0.3081078


def lenet5(hidden: int = 100, conv1: int = 6, conv2: int = 12, classes: int = 10, *,
           seed: int = 0, dtype=np.float32, arch: dict | None = None) -> Model:
    """1x28x28 -> conv 6@5x5 -> tanh -> maxpool 2 -> tanh -> conv 12@5x5 -> maxpool 2 -> 192
    -> linear hidden -> tanh -> linear classes -> log-softmax (the loss fuses the log-softmax)."""
    # tanh is monotonic, so maxpool(tanh(z)) == tanh(maxpool(z)): the first tanh runs after the
    # pool, on a quarter of the values, with identical outputs and gradients.
    layers = [
        Conv2d(conv1, 5),                  # (B, 24, 24, 6)
        MaxPool2d(2),                      # (B, 12, 12, 6)
        Activation("tanh"),                # the conv's tanh, moved past the pool
        Activation("tanh"),
        Conv2d(conv2, 5),                  # (B, 8, 8, 12)
        MaxPool2d(2),                      # (B, 4, 4, 12)
        Flatten(),                         # (B, 192)
        Linear(hidden, act="tanh"),        # (B, hidden)
        Linear(classes),                   # (B, classes) logits
    ]
    return Model(layers, (28, 28, 1), seed=seed, dtype=dtype, head="logsoftmax", arch=arch)


def autoencoder(hidden: int = 32, n_in: int = 784, *, seed: int = 0, dtype=np.float32,
                arch: dict | None = None) -> Model:
    """784 -> linear hidden -> ReLU -> linear 784 -> sigmoid."""
    layers = [Linear(hidden, act="relu"), Linear(n_in, act="sigmoid")]
    return Model(layers, (n_in,), seed=seed, dtype=dtype, arch=arch)
