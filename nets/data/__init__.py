"""Datasets for nets: the MNIST IDX reader and the shipped MNIST sample; the 20 Newsgroups, GloVe and
plain-text corpus readers of the text nets."""
from nets.data.mnist import SAMPLE_DIR, MnistData, load_idx, load_mnist
from nets.data.text import TokenSplit, encode_texts, load_corpus, load_newsgroups, read_glove

__all__ = ["load_idx", "load_mnist", "MnistData", "SAMPLE_DIR",
           "load_newsgroups", "load_corpus", "read_glove", "encode_texts", "TokenSplit"]
