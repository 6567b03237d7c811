"""Text data for the text CNN and the RNN language model, read from the real formats.

* 20 Newsgroups layout (`load_newsgroups`): one folder per class, one text file per document. Files
  that are not UTF-8 are read as Latin-1 (the real set has such bytes); mail headers can be dropped.
  Text pipeline 2 (the default): lower-case words of letters (any alphabet), longer than 2 characters;
  vocabulary by training-split frequency, skipping the `skip_top` (0) most frequent words, up to `vocab`
  (20,000) words, plus <unk> for every other word; the last `seq_len` tokens kept; zero padding at the
  end. Ids: 0 <pad>, 1 <unk>, words 2... Pipeline 1 is the seed's (BigDL text classifier): letters a-z
  only, out-of-vocabulary words dropped, ids 0 <pad>, words 1..V (with `skip_top` 10, the seed's text).
  Pipeline 3 (an option) is 2 with words of any length (no, so, the t of don't).
* GloVe text vectors (`read_glove`): `word v1 ... vd` per line; the dimension is checked on every line;
  vocabulary words missing from the file get a seeded random vector; coverage is reported.
* A plain-text corpus (`load_corpus`, e.g. Tiny Shakespeare's input.txt): paragraphs split into
  sentences, tokenised (lower-case words and punctuation marks), each sentence wrapped in <s> ... </s>,
  vocabulary of the `vocab` most frequent training words plus <unk>; sequences of at most `max_len`
  steps (longer sentences continue in the next window). Ids: 0 <pad>, 1 <unk>, 2 <s>, 3 </s>, words 4...
  A sample is x = ids[:-1], y = ids[1:], padded with 0 at the end.
* The train/validation split is a seeded permutation (`val_fraction`, 0.2 as in the seed), made before
  the vocabulary is counted, so validation text never shapes the vocabulary.

Every problem with a file raises :class:`nets.errors.DataError` (one line naming the file and, where it
applies, the line number).
"""
from __future__ import annotations

import re
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nets.data.splits import Data, Split
from nets.errors import ConfigError, DataError

PAD = 0
UNK, BOS, EOS = 1, 2, 3
LM_SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")

_LETTERS = re.compile(r"[^a-z]+")
_WORDS = re.compile(r"[^\W\d_]+")                           # letters of any alphabet
TEXT_PIPELINE = 2
"""The text CNN's pipeline for new models: 1 is the BigDL seed's (letters only, words longer than 2
characters, out-of-vocabulary words dropped, the last `seq_len` tokens kept), 2 this one (the same words,
in any alphabet, out-of-vocabulary words mapped to <unk> at id 1), 3 an option (2 with words of any
length). Measured with bench/text_vs_torch.py (val top-1, December 2026): 3 against 2 gains on short
documents (Rotten Tomatoes reviews +0.65 by review, +1.26 by movie; short Shakespeare stand-in +0.05) but
loses 6.8 points on the 30-line Shakespeare stand-in (10 seeds; 4.3 without single letters), as keeping
short words, numbers and apostrophe words (hamlet's) together cost 10-14 points there before. A model
records its pipeline (`arch["text"]`); a model without one is 1."""
PIPELINES = (1, 2, 3)
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PARAGRAPH = re.compile(r"\n\s*\n")
_LM_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[^\sa-z0-9]")

MAX_LINE_CHARS = 1 << 20
"""A GloVe line longer than this (1 Mi characters; 300 dimensions take about 3,000) is refused."""
MAX_DOCUMENT_BYTES = 1 << 24
"""A newsgroups document larger than this (16 MiB; the largest 20 Newsgroups post is about 60 KB) is
refused before it is read."""
MAX_CORPUS_BYTES = 1 << 26
"""An RNN corpus larger than this (64 MiB, about 12 million words: some GB once tokenized; Tiny
Shakespeare is 1.1 MB) is refused before it is read."""


@dataclass(eq=False)
class TokenSplit(Split):
    """A split of token-id sequences: x (N, L) int32, y (N,) class labels or (N, L) next-token ids.

    `batch` returns the ids themselves (the model's Embedding layer turns them into vectors); with
    `trim`, a batch is cut after its last non-padding column (the language model's batches are as long
    as their longest sentence, as a padding collate would make them). `info` is the text metadata shared
    by both splits (vocabulary, class names, architecture sizes, a GloVe table) and survives `subset`.
    """

    info: dict | None = None
    trim: bool = False

    def batch(self, idx: np.ndarray, dtype=np.float32, out: np.ndarray | None = None):
        xb = self.x[idx]                                             # (B, L) int32
        yb = None if self.y is None else self.y[idx]
        if self.trim and xb.size:
            cols = np.flatnonzero((xb != PAD).any(axis=0))
            T = int(cols[-1]) + 1 if cols.size else 1
            xb = np.ascontiguousarray(xb[:, :T])
            if yb is not None and yb.ndim == 2:
                yb = np.ascontiguousarray(yb[:, :T])
        return xb, yb

    def subset(self, n: int) -> "TokenSplit":
        return TokenSplit(self.x[:n], None if self.y is None else self.y[:n], self.sample_shape,
                          info=self.info, trim=self.trim)


# --------------------------------------------------------------------------- shared helpers

def read_text(path: Path, limit: int = MAX_DOCUMENT_BYTES, what: str = "document") -> str:
    """A file's text: UTF-8, or Latin-1 when the bytes are not UTF-8 (every byte is Latin-1). A file
    of more than ``limit`` bytes, or one that is not a regular file (a FIFO would block, a device
    never end), is refused before it is read."""
    try:
        st = Path(path).stat()
        if not stat.S_ISREG(st.st_mode):
            raise DataError(path, f"is not a regular file; expected a text {what}")
        if st.st_size > limit:
            raise DataError(path, f"is {st.st_size:,} bytes; nets reads at most {limit:,} bytes from one "
                            f"text {what}")
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise DataError(path, f"cannot read ({e.strerror or e})") from None
    if len(raw) > limit:
        raise DataError(path, f"grew past {limit:,} bytes while it was read (a text {what} is at most that)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_indices(n: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation of range(n) cut into (train, validation); at least one training sample."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1); got {val_fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(int(round(n * val_fraction)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# --------------------------------------------------------------------------- 20 Newsgroups + GloVe

def drop_header(text: str) -> str:
    """Drop a mail/news header: the lines before the first blank line, when the first is `Key: value`."""
    if not _HEADER_LINE.match(text):
        return text
    m = re.search(r"\r?\n[ \t]*\r?\n", text)
    return text[m.end():] if m else ""


def doc_tokens(text: str, pipeline: int = 1) -> list[str]:
    """The text CNN's tokens, lower-case: pipeline 1 letters a-z only, 2 letters of any alphabet, both
    longer than 2 characters; 3 as 2, of any length. Digits and apostrophes split words (hamlet's ->
    hamlet, s in 3)."""
    words = _LETTERS.split(text.lower()) if pipeline == 1 else _WORDS.findall(text.lower())
    return [w for w in words if len(w) > (2 if pipeline < 3 else 0)]


def build_vocab(docs: list[list[str]], max_words: int = 20000, skip_top: int = 10, unk: bool = False) -> list[str]:
    """["<pad>", "<unk>" (with `unk`), words...]: by frequency (ties alphabetical), the `skip_top` most
    frequent skipped."""
    counts = Counter(w for d in docs for w in d)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ["<pad>"] + ["<unk>"] * unk + [w for w, _ in ranked[skip_top:skip_top + max_words]]


def encode_docs(docs: list[list[str]], vocab: list[str], seq_len: int) -> np.ndarray:
    """(N, seq_len) int32: the ids of each document's last seq_len kept tokens, 0-padded at the end. A
    word out of the vocabulary is <unk> when the vocabulary has it (id 1), dropped otherwise."""
    unk = UNK if len(vocab) > UNK and vocab[UNK] == "<unk>" else None
    index = {w: i for i, w in enumerate(vocab) if i != PAD and i != unk}
    out = np.zeros((len(docs), seq_len), np.int32)
    for n, d in enumerate(docs):
        ids = [i for i in (index.get(w, unk) for w in d) if i is not None][-seq_len:]
        out[n, :len(ids)] = ids
    return out


def list_classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def pick_classes(root: Path, available: list[str], classes) -> list[str]:
    """None/"" -> all; an int or "8" -> the first K (sorted); "a,b" or a list -> those, in that order."""
    if classes is None or classes == "" or classes == []:
        return available
    if isinstance(classes, (int, np.integer)) or (isinstance(classes, str) and classes.strip().isdigit()):
        k = int(classes)
        if not 1 <= k <= len(available):
            raise DataError(root, f"asked for {k} classes; the folder has {len(available)}: "
                                  + ", ".join(available))
        return available[:k]
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else list(classes)
    missing = [c for c in names if c not in available]
    if missing:
        raise DataError(root, f"no class folder named {', '.join(map(repr, missing))}; "
                              f"available: {', '.join(available)}")
    return names


def read_newsgroups(root, classes=None, drop_headers: bool = False):
    """Texts, labels (int64) and class names of a 20 Newsgroups-style directory."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "no such directory (expected one folder per class, one file per document)")
    available = list_classes(root)
    if not available:
        raise DataError(root, "no class folders (expected one folder per class, one file per document)")
    names = pick_classes(root, available, classes)
    texts, labels = [], []
    for label, name in enumerate(names):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(root / name, "class folder has no documents")
        for f in files:
            t = read_text(f)
            texts.append(drop_header(t) if drop_headers else t)
            labels.append(label)
    return texts, np.asarray(labels, np.int64), names


def read_glove(path, vocab: list[str], seed: int = 0) -> tuple[np.ndarray, int]:
    """(len(vocab), d) float32 table for `vocab` and how many of its words the file has.

    Row 0 (padding) is zero; a missing word gets a seeded normal vector with the spread of the found ones.
    """
    path = Path(path)
    index = {w: i for i, w in enumerate(vocab) if i != PAD}
    rows, vecs, d = [], [], None
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(path, f"cannot read GloVe vectors ({e.strerror or e})") from None
    with f:
        for lineno, line in _capped_lines(f, path):
            parts = line.rstrip("\n").rstrip().split(" ")
            if len(parts) == 1 and not parts[0]:
                continue
            if d is None:
                d = len(parts) - 1
                if d < 1:
                    raise DataError(path, "not GloVe text vectors: expected 'word v1 ... vd'", line=lineno)
            elif len(parts) - 1 != d:
                raise DataError(path, f"{len(parts) - 1} values after the word {parts[0]!r}; expected {d} "
                                      "like the first line", line=lineno)
            i = index.get(parts[0])
            if i is not None:
                try:
                    vecs.append(np.array(parts[1:], np.float32))
                except ValueError:
                    raise DataError(path, f"a value of the word {parts[0]!r} is not a number",
                                    line=lineno) from None
                rows.append(i)
                del index[parts[0]]
    if d is None:
        raise DataError(path, "empty GloVe file")
    table = np.zeros((len(vocab), d), np.float32)
    if vecs:
        table[rows] = np.stack(vecs)
    scale = float(np.std(table[rows])) if vecs else 0.1
    missing = sorted(index.values())
    rng = np.random.default_rng(seed)
    table[missing] = rng.normal(0.0, scale or 0.1, (len(missing), d)).astype(np.float32)
    return table, len(rows)


def _capped_lines(f, path: Path):
    """(line number, line) of a text file; a line longer than MAX_LINE_CHARS raises DataError
    after reading only that much of it (a file that is one giant line does not fill memory)."""
    lineno = 0
    while True:
        line = f.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            raise DataError(path, f"line longer than {MAX_LINE_CHARS:,} characters; a GloVe line is "
                                  "'word v1 ... vd'", line=lineno, hint="is this a GloVe text file?")
        yield lineno, line


def load_newsgroups(path, seq_len: int = 1000, classes=None, vocab: int = 20000, skip_top: int = 0,
                    glove: str | None = None, drop_headers: bool = False, val_fraction: float = 0.2,
                    seed: int = 0, pipeline: int = TEXT_PIPELINE) -> Data:
    """The text CNN's data: a 20 Newsgroups-style directory (and GloVe vectors) as id sequences."""
    if path is None:
        raise ConfigError("textcnn needs --data DIR: a 20 Newsgroups-style folder (one folder per class)")
    if int(seq_len) < 1 or int(vocab) < 1 or int(skip_top) < 0:
        raise ConfigError(f"seq_len and vocab must be >= 1 and skip_top >= 0; got "
                          f"{seq_len!r}, {vocab!r}, {skip_top!r}")
    if pipeline not in PIPELINES:
        raise ConfigError(f"pipeline must be 1 (BigDL's), 2 or 3; got {pipeline!r}")
    texts, labels, names = read_newsgroups(path, classes, drop_headers)
    docs = [doc_tokens(t, pipeline) for t in texts]
    tr, va = split_indices(len(docs), val_fraction, seed)
    words = build_vocab([docs[i] for i in tr], int(vocab), int(skip_top), unk=pipeline > 1)
    if len(words) < 2 + (pipeline > 1):
        raise DataError(path, "no words left for the vocabulary (too few documents or all words skipped)")
    x = encode_docs(docs, words, int(seq_len))
    info = {"vocab": words, "classes": names, "source": str(path), "documents": (len(tr), len(va)),
            "text": {"pipeline": pipeline},
            "arch": {"length": int(seq_len), "vocab_size": len(words), "n_classes": len(names),
                     "pretrained": glove is not None and glove != ""},
            "data_params": {"seq_len": seq_len, "classes": classes, "vocab": vocab, "skip_top": skip_top,
                            "glove": glove, "drop_headers": drop_headers, "val_fraction": val_fraction,
                            "pipeline": pipeline}}
    if info["arch"]["pretrained"]:
        table, found = read_glove(glove, words, seed)
        info["embedding"] = table
        info["arch"]["embed"] = int(table.shape[1])
        info["glove"] = {"path": str(glove), "found": found, "words": len(words) - 1,
                         "coverage": found / max(1, len(words) - 1)}
    shape = (int(seq_len),)
    return Data(TokenSplit(x[tr], labels[tr], shape, info=info), TokenSplit(x[va], labels[va], shape, info=info),
                source=str(path), info=info)


# --------------------------------------------------------------------------- plain-text corpus (RNN LM)

def split_sentences(text: str) -> list[str]:
    """Paragraphs (blank-line separated) cut after . ! or ? followed by white space."""
    out = []
    for para in _PARAGRAPH.split(text.replace("\r\n", "\n")):
        para = " ".join(para.split())
        out += [s for s in _SENTENCE_END.split(para) if s]
    return out


def sentence_tokens(sentence: str) -> list[str]:
    """Lower-case words (with inner apostrophes), numbers, and each punctuation mark as a token."""
    return _LM_TOKEN.findall(sentence.lower())


def build_lm_vocab(sentences: list[list[str]], size: int = 4000) -> list[str]:
    """["<pad>", "<unk>", "<s>", "</s>", the `size` most frequent words (ties alphabetical)]."""
    counts = Counter(w for s in sentences for w in s)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return list(LM_SPECIALS) + [w for w, _ in ranked[:size]]


def encode_lm(sentences: list[list[str]], vocab: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y (N, max_len) int32: windows of <s> w1 ... wn </s> (x = ids[:-1], y = ids[1:]), 0-padded.

    A sentence longer than max_len steps continues in the next window (which starts at the last
    token of the previous one), so every target is predicted exactly once."""
    index = {w: i for i, w in enumerate(vocab) if i >= len(LM_SPECIALS)}
    xs, ys = [], []
    for s in sentences:
        ids = [BOS] + [index.get(w, UNK) for w in s] + [EOS]
        for start in range(0, len(ids) - 1, max_len):
            w = ids[start:start + max_len + 1]
            xs.append(w[:-1])
            ys.append(w[1:])
    x = np.zeros((len(xs), max_len), np.int32)
    y = np.zeros((len(xs), max_len), np.int32)
    for n, (a, b) in enumerate(zip(xs, ys)):
        x[n, :len(a)] = a
        y[n, :len(b)] = b
    return x, y


def load_corpus(path, vocab: int = 4000, max_len: int = 50, val_fraction: float = 0.2,
                seed: int = 0) -> Data:
    """The RNN language model's data: a plain-text file as next-token id sequences."""
    if path is None:
        raise ConfigError("rnn needs --data FILE: a plain-text corpus such as Tiny Shakespeare's input.txt")
    if int(vocab) < 1 or int(max_len) < 1:
        raise ConfigError(f"vocab and max_len must be >= 1; got {vocab!r}, {max_len!r}")
    p = Path(path)
    if p.is_dir():
        raise DataError(p, "is a directory; expected a plain-text corpus file")
    sents = [t for t in (sentence_tokens(s) for s in split_sentences(read_text(p, MAX_CORPUS_BYTES, "corpus")))
             if any(w[0].isalnum() for w in t)]                     # punctuation alone is no sentence
    if not sents:
        raise DataError(p, "empty corpus: no words found")
    tr, va = split_indices(len(sents), val_fraction, seed)
    words = build_lm_vocab([sents[i] for i in tr], int(vocab))
    xt, yt = encode_lm([sents[i] for i in tr], words, int(max_len))
    xv, yv = encode_lm([sents[i] for i in va], words, int(max_len))
    info = {"vocab": words, "source": str(p), "sentences": (len(tr), len(va)),
            "words": (int((yt != PAD).sum()), int((yv != PAD).sum())),
            "arch": {"vocab_size": len(words), "length": int(max_len)},
            "data_params": {"vocab": vocab, "max_len": max_len, "val_fraction": val_fraction}}
    shape = (int(max_len),)
    return Data(TokenSplit(xt, yt, shape, info=info, trim=True), TokenSplit(xv, yv, shape, info=info, trim=True),
                source=str(p), info=info)


def encode_texts(texts: list[str], vocab: list[str], seq_len: int, text: dict | None = None) -> np.ndarray:
    """New documents as the text CNN's input ids, with a saved model's vocabulary (`model.vocab`) and
    pipeline (`model.arch.get("text")`; None: pipeline 1, that of models saved without one)."""
    pipeline = int((text or {}).get("pipeline", 1))
    return encode_docs([doc_tokens(t, pipeline) for t in texts], vocab, seq_len)
