"""The text readers on small files written here in the real layouts: 20 Newsgroups (folder per class,
file per document), GloVe text vectors, a plain-text corpus; and their errors, on the command line too
(one `Error:` line, exit code 2, no traceback)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nets
from nets.cli import main
from nets.data.text import (BOS, EOS, UNK, TokenSplit, build_vocab, doc_tokens, drop_header, encode_docs,
                            encode_lm, load_corpus, load_newsgroups, read_glove, read_newsgroups,
                            sentence_tokens, split_indices, split_sentences)

# ------------------------------------------------------------------------------ files in real layouts

TOPICS = {
    "rec.autos": [
        "The engine of my old sedan makes a knocking noise when the oil runs low.",
        "Dealers charge too much for brake pads, rotors and a simple tire rotation.",
        "A manual transmission gives the driver more control on steep mountain roads.",
        "The new coupe accelerates quickly but its fuel economy on the highway is poor.",
    ],
    "sci.med": [
        "The doctor prescribed antibiotics for the infection and advised plenty of rest.",
        "Patients with high blood pressure should reduce salt and exercise every week.",
        "The clinical trial compared the new vaccine with a placebo in older patients.",
        "Migraine headaches often respond to medication taken at the first symptoms.",
    ],
    "sci.space": [
        "The shuttle crew deployed the satellite into a geostationary orbit above the equator.",
        "Astronomers measured the distance to the comet with radar from the ground station.",
        "The lunar lander carried enough fuel for a second attempt at the landing site.",
        "Solar panels on the probe lose power as the spacecraft travels beyond Jupiter.",
    ],
}
HEADER = "From: someone@example.edu\nSubject: Re: engines and orbits\nOrganization: A University\nLines: 3\n\n"

CORPUS = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

First Citizen:
You are all resolved rather to die than to famish?

All:
Resolved. resolved.

First Citizen:
First, you know Caius Marcius is chief enemy to the people.

All:
We know't, we know't.

First Citizen:
Let us kill him, and we'll have corn at our own price. Is't a verdict?

All:
No more talking on't; let it be done: away, away!
"""


def write_newsgroups(root: Path, docs_per_class: int = 6, headers: bool = True) -> Path:
    """One folder per class, one file per document (named like 20 Newsgroups' numbered files)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, sents in TOPICS.items():
        (root / name).mkdir()
        for i in range(docs_per_class):
            body = " ".join(sents[(i + j) % len(sents)] for j in range(3))
            (root / name / f"{50000 + i}").write_text((HEADER if headers else "") + body + "\n")
    return root


def write_glove(path: Path, words: list[str], dim: int = 4) -> Path:
    lines = [w + " " + " ".join(f"{0.1 * (i + 1) + 0.01 * d:.3f}" for d in range(dim))
             for i, w in enumerate(words)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_corpus(path: Path, repeat: int = 1) -> Path:
    path.write_text(CORPUS * repeat)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nets", *args], capture_output=True, text=True)


def assert_one_error_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ------------------------------------------------------------------------------ the text CNN pipeline

def test_tokens_are_lower_case_letters_longer_than_two():
    assert doc_tokens("Hello, World! It's a 2nd TEST-case; ok? e-mail x11r5") == \
        ["hello", "world", "test", "case", "mail"]


def test_pipeline_2_tokens_are_pipeline_1s_in_any_alphabet():
    text = "Hello, World! It's a 2nd TEST-case; ok? e-mail x11r5 " \
        "Hamlet's na\u00efve \u0436\u0438\u0437\u043d\u044c"
    assert doc_tokens(text, 2) == ["hello", "world", "test", "case", "mail", "hamlet", "na\u00efve",
                                   "\u0436\u0438\u0437\u043d\u044c"]
    assert doc_tokens(text, 1) == ["hello", "world", "test", "case", "mail", "hamlet"]
    assert doc_tokens(text, 3) == ["hello", "world", "it", "s", "a", "nd", "test", "case", "ok", "e", "mail",
                                   "x", "r", "hamlet", "s", "na\u00efve", "\u0436\u0438\u0437\u043d\u044c"]


def test_unknown_words_become_unk_when_the_vocabulary_has_it():
    vocab = build_vocab([["b", "a", "b", "c"]], 2, 0, unk=True)
    assert vocab == ["<pad>", "<unk>", "b", "a"]
    x = encode_docs([["a", "zzz", "c", "b"], ["qq"], []], vocab, 3)
    np.testing.assert_array_equal(x, [[1, 1, 2], [1, 0, 0], [0, 0, 0]])


def test_vocabulary_skips_the_most_frequent_and_caps_the_size():
    docs = [["w%02d" % i] * (30 - i) for i in range(20)]          # w00 most frequent ... w19 least
    vocab = build_vocab(docs, max_words=5, skip_top=10)
    assert vocab == ["<pad>", "w10", "w11", "w12", "w13", "w14"]
    assert build_vocab([["b", "a", "b", "a", "c"]], 10, 0) == ["<pad>", "a", "b", "c"]   # ties: a-z


def test_encoding_keeps_the_last_tokens_drops_oov_pads_at_the_end():
    vocab = ["<pad>", "alpha", "beta", "gamma"]
    x = encode_docs([["alpha", "zzz", "beta", "gamma", "beta"], ["gamma"], []], vocab, 3)
    np.testing.assert_array_equal(x, [[2, 3, 2], [3, 0, 0], [0, 0, 0]])
    assert x.dtype == np.int32


def test_headers_are_dropped_only_when_asked(tmp_path):
    root = write_newsgroups(tmp_path / "ng")
    texts, labels, names = read_newsgroups(root)
    assert texts[0].startswith("From:") and names == sorted(TOPICS)
    texts, _, _ = read_newsgroups(root, drop_headers=True)
    assert texts[0].startswith("The engine")
    assert drop_header("No header here.\n\nBody") == "No header here.\n\nBody"
    assert list(labels) == [0] * 6 + [1] * 6 + [2] * 6


def test_classes_by_count_and_by_name(tmp_path):
    root = write_newsgroups(tmp_path / "ng")
    assert read_newsgroups(root, classes=2)[2] == ["rec.autos", "sci.med"]
    assert read_newsgroups(root, classes="2")[2] == ["rec.autos", "sci.med"]
    _, labels, names = read_newsgroups(root, classes="sci.space,rec.autos")
    assert names == ["sci.space", "rec.autos"] and sorted(set(labels)) == [0, 1]


def test_unknown_class_names_it_and_lists_the_available(tmp_path):
    root = write_newsgroups(tmp_path / "ng")
    with pytest.raises(nets.DataError, match=r"'sci\.crypt'.*available: rec\.autos, sci\.med, sci\.space"):
        read_newsgroups(root, classes="sci.crypt,sci.med")
    with pytest.raises(nets.DataError, match="asked for 9 classes"):
        read_newsgroups(root, classes=9)


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = write_newsgroups(tmp_path / "ng")
    (root / "talk.empty").mkdir()
    with pytest.raises(nets.DataError, match=r"talk\.empty: class folder has no documents"):
        read_newsgroups(root)
    assert read_newsgroups(root, classes="sci.med")[2] == ["sci.med"]   # not chosen: not read


def test_no_class_folders_and_missing_directory(tmp_path):
    with pytest.raises(nets.DataError, match="no class folders"):
        read_newsgroups(tmp_path)
    with pytest.raises(nets.DataError, match="no such directory"):
        read_newsgroups(tmp_path / "nope")


def test_non_utf8_bytes_load_as_latin1(tmp_path):
    root = write_newsgroups(tmp_path / "ng")
    (root / "sci.med" / "60000").write_bytes(b"Subject: caf\xe9\n\nThe na\xefve patient drank caf\xe9 au lait.\n")
    texts, _, _ = read_newsgroups(root, drop_headers=True)
    assert any("na\u00efve patient drank caf\u00e9" in t for t in texts)
    assert doc_tokens("na\u00efve") == []          # letters only: a-z after lower-casing


def test_load_newsgroups_builds_padded_sequences_and_a_seeded_split(tmp_path):
    root = write_newsgroups(tmp_path / "ng")
    d = load_newsgroups(root, seq_len=12, skip_top=2, drop_headers=True, val_fraction=0.25)
    assert isinstance(d.train, TokenSplit) and d.train.x.shape[1] == 12
    assert len(d.train) + len(d.val) == 18 and len(d.val) == round(18 * 0.25)
    assert d.info["arch"] == {"length": 12, "vocab_size": len(d.info["vocab"]), "n_classes": 3,
                              "pretrained": False}
    assert d.info["text"] == {"pipeline": 2} and d.info["vocab"][:2] == ["<pad>", "<unk>"]
    x = d.train.x
    for row in x:                                  # zero padding only at the end
        nz = np.flatnonzero(row)
        assert nz.size == 0 or (nz == np.arange(nz.size)).all()
    xb, yb = d.train.batch(np.array([0, 2]))
    np.testing.assert_array_equal(xb, x[[0, 2]])
    np.testing.assert_array_equal(yb, d.train.y[[0, 2]])
    again = load_newsgroups(root, seq_len=12, skip_top=2, drop_headers=True, val_fraction=0.25)
    np.testing.assert_array_equal(again.val.x, d.val.x)
    other = load_newsgroups(root, seq_len=12, skip_top=2, drop_headers=True, val_fraction=0.25, seed=1)
    assert not np.array_equal(other.val.y, d.val.y) or not np.array_equal(other.val.x, d.val.x)


def test_pipeline_1_is_the_seeds_text_and_other_pipelines_are_refused(tmp_path):
    root = write_newsgroups(tmp_path / "ng")
    old = load_newsgroups(root, seq_len=40, skip_top=10, drop_headers=True, pipeline=1)
    docs = [doc_tokens(t) for t in read_newsgroups(root, drop_headers=True)[0]]
    tr, _ = split_indices(len(docs), 0.2)
    words = build_vocab([docs[i] for i in tr], 20000, 10)
    assert old.info["vocab"] == words and old.info["text"] == {"pipeline": 1}
    np.testing.assert_array_equal(old.train.x, encode_docs([docs[i] for i in tr], words, 40))
    with pytest.raises(nets.ConfigError, match="pipeline must be 1"):
        load_newsgroups(root, pipeline=4)


def test_split_indices():
    tr, va = split_indices(10, 0.2, seed=3)
    assert len(tr) == 8 and len(va) == 2 and not set(tr) & set(va)
    assert split_indices(1, 0.5)[0].size == 1
    with pytest.raises(nets.ConfigError):
        split_indices(10, 1.0)


# ------------------------------------------------------------------------------------------- GloVe

def test_glove_table_coverage_and_seeded_vectors_for_missing_words(tmp_path):
    vocab = ["<pad>", "engine", "orbit", "doctor", "zebra"]
    path = write_glove(tmp_path / "glove.txt", ["the", "engine", "orbit", "doctor", "of"], dim=4)
    table, found = read_glove(path, vocab, seed=7)
    assert table.shape == (5, 4) and table.dtype == np.float32 and found == 3
    np.testing.assert_allclose(table[1], [0.2, 0.21, 0.22, 0.23], rtol=1e-6)
    assert not table[0].any()                                  # padding
    again, _ = read_glove(path, vocab, seed=7)
    other, _ = read_glove(path, vocab, seed=8)
    np.testing.assert_array_equal(again, table)
    assert table[4].any() and not np.array_equal(other[4], table[4])


def test_glove_wrong_dimension_names_file_and_line(tmp_path):
    path = write_glove(tmp_path / "glove.txt", ["the", "engine", "orbit"], dim=4)
    lines = path.read_text().splitlines()
    lines.insert(2, "broken 0.1 0.2 0.3")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(nets.DataError) as e:
        read_glove(path, ["<pad>", "engine"])
    assert e.value.line == 3 and str(path) in str(e.value) and "line 3" in str(e.value)
    assert "3 values" in str(e.value) and "expected 4" in str(e.value)


def test_glove_bad_number_and_empty_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("engine 0.1 zero.x\n")
    with pytest.raises(nets.DataError, match="line 1.*not a number"):
        read_glove(bad, ["<pad>", "engine"])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(nets.DataError, match="empty GloVe file"):
        read_glove(empty, ["<pad>", "engine"])


def test_load_newsgroups_with_glove_reports_coverage(tmp_path):
    root = write_newsgroups(tmp_path / "ng")
    glove = write_glove(tmp_path / "g.txt", ["engine", "satellite", "doctor", "unrelated"], dim=5)
    d = load_newsgroups(root, seq_len=10, glove=str(glove), drop_headers=True)
    g = d.info["glove"]
    assert g["found"] == 3 and g["words"] == len(d.info["vocab"]) - 1
    assert g["coverage"] == pytest.approx(3 / g["words"])
    assert d.info["embedding"].shape == (len(d.info["vocab"]), 5)
    assert d.info["arch"]["pretrained"] and d.info["arch"]["embed"] == 5


# ----------------------------------------------------------------------------------- plain-text corpus

def test_sentences_and_tokens():
    sents = split_sentences(CORPUS)
    assert sents[:3] == ["First Citizen: Before we proceed any further, hear me speak.", "All: Speak, speak.",
                         "First Citizen: You are all resolved rather to die than to famish?"]
    assert sentence_tokens("We know't, we KNOW'T; Is't 2 o'clock?") == \
        ["we", "know't", ",", "we", "know't", ";", "is't", "2", "o'clock", "?"]


def test_lm_sequences_wrap_sentences_and_continue_long_ones():
    vocab = ["<pad>", "<unk>", "<s>", "</s>", "a", "b"]
    x, y = encode_lm([["a", "b", "zzz"], ["a", "b", "a", "b", "a"]], vocab, max_len=4)
    np.testing.assert_array_equal(x, [[BOS, 4, 5, UNK], [BOS, 4, 5, 4], [5, 4, 0, 0]])
    np.testing.assert_array_equal(y, [[4, 5, UNK, EOS], [4, 5, 4, 5], [4, EOS, 0, 0]])
    assert ((x != 0) == (y != 0)).all()          # the model's padding mask is the loss's


def test_load_corpus_vocabulary_unknown_and_trimmed_batches(tmp_path):
    d = load_corpus(write_corpus(tmp_path / "input.txt", 3), vocab=10, max_len=8, val_fraction=0.25)
    v = d.info["vocab"]
    assert v[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and len(v) == 14 and {",", ":", "."} < set(v)
    assert d.info["arch"] == {"vocab_size": 14, "length": 8}
    assert d.train.trim and (d.train.x[:, 0] != 0).all()
    assert (d.train.y == UNK).any()
    xb, yb = d.train.batch(np.arange(4))
    assert xb.shape == yb.shape and xb.shape[1] <= 8 and (xb[:, -1] != 0).any()
    tr, va = d.info["words"]
    assert tr == int((d.train.y != 0).sum()) and va == int((d.val.y != 0).sum())


def test_empty_corpus_and_directory_are_errors(tmp_path):
    empty = tmp_path / "input.txt"
    empty.write_text("  \n\n ...  \n")
    with pytest.raises(nets.DataError, match=r"input\.txt: empty corpus"):
        load_corpus(empty)
    with pytest.raises(nets.DataError, match="is a directory"):
        load_corpus(tmp_path)
    with pytest.raises(nets.DataError, match="cannot read"):
        load_corpus(tmp_path / "missing.txt")


def test_non_utf8_corpus_loads(tmp_path):
    p = tmp_path / "input.txt"
    p.write_bytes(CORPUS.encode() + b"\n\nThe caf\xe9 is closed. Go home.\n")
    d = load_corpus(p, val_fraction=0.0)
    assert "caf\u00e9" in d.info["vocab"] or "caf" in d.info["vocab"]


# ------------------------------------------------------------------------ errors on the command line

def test_cli_glove_wrong_dimension_is_one_line_with_file_and_line(tmp_path, capsys):
    root = write_newsgroups(tmp_path / "ng")
    glove = write_glove(tmp_path / "glove.txt", ["the", "engine", "orbit", "doctor"], dim=3)
    glove.write_text(glove.read_text() + "satellite 0.5 0.5\n")
    assert main(["train", "textcnn", "--data", str(root), "--glove", str(glove), "--seq-len", "20"]) == 2
    assert_one_error_line(capsys.readouterr().err, str(glove), "line 5", "expected 3")


def test_cli_unknown_class_is_one_line(tmp_path, capsys):
    root = write_newsgroups(tmp_path / "ng")
    assert main(["train", "textcnn", "--data", str(root), "--classes", "sci.med,alt.atheism"]) == 2
    assert_one_error_line(capsys.readouterr().err, "'alt.atheism'", "available: rec.autos, sci.med, sci.space")


def test_cli_empty_class_folder_is_one_line(tmp_path, capsys):
    root = write_newsgroups(tmp_path / "ng")
    (root / "comp.graphics").mkdir()
    assert main(["train", "textcnn", "--data", str(root)]) == 2
    assert_one_error_line(capsys.readouterr().err, "comp.graphics", "no documents")


def test_cli_missing_data_and_unknown_flag_for_the_net(capsys):
    assert main(["train", "textcnn"]) == 2
    assert_one_error_line(capsys.readouterr().err, "--data")
    assert main(["train", "rnn"]) == 2
    assert_one_error_line(capsys.readouterr().err, "--data")
    assert main(["train", "lenet", "--seq-len", "10"]) == 2
    assert_one_error_line(capsys.readouterr().err, "seq_len")


def test_cli_empty_corpus_exit_code_2_no_traceback(tmp_path):
    """A real process: the exit code and stderr as a user sees them."""
    empty = tmp_path / "input.txt"
    empty.write_bytes(b"\n\n")
    r = run_cli("train", "rnn", "--data", str(empty))
    assert r.returncode == 2 and r.stdout == ""
    assert_one_error_line(r.stderr, str(empty), "empty corpus")
