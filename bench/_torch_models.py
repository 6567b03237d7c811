"""PyTorch models with the same architectures as nets' recipes, for bench/nets_vs_torch.py.

Only the architectures match; weights are not shared (torch's default init is the same uniform
(+-1/sqrt(fan_in)) law that nets uses). Layout is torch's own NCHW / (B, C, L); the flatten order
therefore differs from nets' NHWC, which only permutes the rows of the first linear layer.

`count_macs(model, example)` counts forward multiply-adds per sample with forward hooks on the
Conv/Linear layers, so the FLOP figures of the bench come from the architecture, not a constant.
"""
from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Sequential):
    """1x28x28 -> conv c1@5x5 -> tanh -> maxpool 2 -> tanh -> conv c2@5x5 -> maxpool 2 -> flatten
    -> linear hidden -> tanh -> linear classes (logits; the loss applies log-softmax + NLL)."""

    def __init__(self, hidden: int = 100, conv1: int = 6, conv2: int = 12, classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(1, conv1, 5), nn.Tanh(), nn.MaxPool2d(2), nn.Tanh(),
            nn.Conv2d(conv1, conv2, 5), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(conv2 * 4 * 4, hidden), nn.Tanh(), nn.Linear(hidden, classes),
        )


def _widths(hidden) -> list[int]:
    return [hidden] if isinstance(hidden, int) else list(hidden)


def _relu_stack(n_in: int, widths: list[int]) -> list[nn.Module]:
    layers = []
    for w in widths:
        layers += [nn.Linear(n_in, w), nn.ReLU()]
        n_in = w
    return layers


class Autoencoder(nn.Sequential):
    """784 -> linear hidden -> ReLU -> linear 784 -> sigmoid; a list of widths stacks the encoder and
    mirrors it as decoder ([256, 64, 32]: 784 -> 256 -> 64 -> 32 -> 64 -> 256 -> 784), like nets'."""

    def __init__(self, hidden=32, n_in: int = 784) -> None:
        widths = _widths(hidden)
        widths = widths + widths[-2::-1]
        super().__init__(*_relu_stack(n_in, widths), nn.Linear(widths[-1], n_in), nn.Sigmoid())


class MLP(nn.Sequential):
    """784 -> (linear h -> ReLU) per width -> linear classes (logits), like nets' mlp."""

    def __init__(self, hidden=128, classes: int = 10, n_in: int = 784) -> None:
        widths = _widths(hidden)
        super().__init__(*_relu_stack(n_in, widths), nn.Linear(widths[-1], classes))


class TextCNN(nn.Module):
    """Issue 5's text CNN (not wired into the bench yet; check it against nets' recipe when that lands):
    ids (B, L) -> embedding 100 -> 3 x (conv1d 128@5 -> ReLU -> max-pool) -> linear 100 -> linear classes.
    Pools 5, 5, 35 for L = 1000 (the last pool covers what is left)."""

    def __init__(self, vocab: int, classes: int, seq_len: int = 1000, emb: int = 100,
                 filters: int = 128, hidden: int = 100, pools=(5, 5, 35)) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        layers, ch, L = [], emb, seq_len
        for p in pools:
            layers += [nn.Conv1d(ch, filters, 5), nn.ReLU(), nn.MaxPool1d(p)]
            ch, L = filters, (L - 4) // p
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(filters * L, hidden), nn.Linear(hidden, classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(self.emb(ids).transpose(1, 2)))


class RNNLM(nn.Module):
    """Issue 5's Elman language model (not wired into the bench yet): ids (B, T) -> embedding hidden
    (= one-hot @ W_ih) -> tanh RNN hidden -> linear vocab per step (logits).
    Uses torch's fused nn.RNN, which adds its own hidden x hidden input matrix after the embedding; drop
    or account for it when nets' recipe defines the exact parameterisation."""

    def __init__(self, vocab: int, hidden: int = 40) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.rnn = nn.RNN(hidden, hidden, nonlinearity="tanh", batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.emb(ids))[0])


def count_macs(model: nn.Module, example: torch.Tensor) -> float:
    """Forward multiply-adds per sample of `model` on `example` (a batch), from Conv/Linear/RNN shapes."""
    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            k = 1
            for s in mod.kernel_size:
                k *= s
            total[0] += out.numel() * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.Linear):
            total[0] += out.numel() * mod.in_features
        elif isinstance(mod, nn.RNN):
            seq = out[0]
            total[0] += seq.numel() * (mod.input_size + mod.hidden_size)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.RNN))]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return total[0] / example.shape[0]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
