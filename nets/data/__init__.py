"""Datasets for nets: the MNIST IDX reader and the shipped MNIST sample."""
from nets.data.mnist import SAMPLE_DIR, MnistData, load_idx, load_mnist

__all__ = ["load_idx", "load_mnist", "MnistData", "SAMPLE_DIR"]
