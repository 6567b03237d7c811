"""Training the text CNN and the RNN language model: they learn, a saved model loads back (vocabulary,
classes, frozen GloVe table) and predicts identically, sparse embedding updates, determinism."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_text_data import run_cli, write_corpus, write_glove, write_newsgroups

import nets
from nets.data.text import encode_texts
from nets.losses import NLLLoss, SeqNLLLoss
from nets.models import rnn_lm, text_cnn
from nets.optim import SGD, Adagrad
from nets.recipes import load_data


@pytest.fixture(scope="module")
def ng(tmp_path_factory):
    return write_newsgroups(tmp_path_factory.mktemp("ng") / "20news", docs_per_class=10)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("lm") / "input.txt", repeat=4)


CNN = {"seq_len": 20, "embed": 8, "filters": 6, "hidden": 10, "batch_size": 8, "drop_headers": True}


def test_text_cnn_learns(ng):
    res = nets.train("textcnn", {**CNN, "epochs": 12, "lr": 0.05}, str(ng), seed=1)
    h = res.history
    assert h[-1]["loss"] < 0.5 * h[0]["loss"]
    assert h[-1]["val_top1"] >= 60.0                 # 3 topics, 6 validation documents


def test_rnn_learns_and_reports_per_word_cross_entropy(corpus):
    res = nets.train("rnn", {"epochs": 6, "hidden": 12, "vocab": 40, "lr": 0.5}, str(corpus), seed=0)
    h = res.history
    assert h[-1]["val_loss"] < h[0]["val_loss"] and h[-1]["loss"] < h[0]["loss"]
    assert h[-1]["val_ppl"] == pytest.approx(np.exp(h[-1]["val_loss"]))
    assert h[-1]["val_words"] == int((load_data("rnn", str(corpus), {"vocab": 40}).val.y != 0).sum())


def test_cli_textcnn_saves_a_model_that_predicts_identically(ng, tmp_path):
    path = tmp_path / "tc.npz"
    r = run_cli("train", "textcnn", "--data", str(ng), "--seq-len", "20", "--embed", "8", "--filters", "6",
                "--epochs", "2", "--batch-size", "8", "--drop-headers", "--classes", "2", "--save", str(path),
                "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["data_summary"]["classes"] == 2 and out["params"]["seq_len"] == 20
    model = nets.load(path)
    assert model.classes == ["rec.autos", "sci.med"]
    assert (tmp_path / "tc.vocab.txt").read_text().split("\n")[:-1] == model.vocab
    data = load_data("textcnn", str(ng), {"seq_len": 20, "classes": "2", "drop_headers": True})
    assert model.vocab == data.info["vocab"]
    x = data.val.inputs()
    again = nets.load(path)
    np.testing.assert_array_equal(model.predict(x), again.predict(x))
    new = encode_texts(["The astronauts fixed the satellite in orbit."], model.vocab, 20)
    assert model.predict(new).shape == (1, 2)


def test_trained_model_and_loaded_copy_predict_identically(ng, corpus, tmp_path):
    res = nets.train("textcnn", {**CNN, "epochs": 1}, str(ng), seed=2)
    loaded = nets.load(nets.save(res.model, tmp_path / "c.npz"))
    x = load_data("textcnn", str(ng), CNN).val.inputs()
    np.testing.assert_array_equal(loaded.predict(x), res.model.predict(x))
    assert loaded.vocab == res.model.vocab and loaded.classes == res.model.classes

    res = nets.train("rnn", {"epochs": 1, "hidden": 6, "vocab": 30}, str(corpus), seed=2)
    loaded = nets.load(nets.save(res.model, tmp_path / "r.npz"))
    x = load_data("rnn", str(corpus), {"vocab": 30}).val.inputs()
    p = loaded.predict(x, batch_size=16)
    np.testing.assert_array_equal(p, res.model.predict(x, batch_size=16))
    assert p.shape == (int((x != 0).sum()), len(loaded.vocab))   # packed: one row per real position
    assert loaded.vocab == res.model.vocab


def test_cli_rnn_json_and_saved_dictionary(corpus, tmp_path):
    path = tmp_path / "lm.npz"
    r = run_cli("train", "rnn", "--data", str(corpus), "--vocab", "25", "--hidden", "8", "--max-len", "12",
                "--epochs", "1", "--save", str(path), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    e = out["epochs"][-1]
    assert {"val_loss", "val_ppl"} <= set(e) and out["data_summary"]["vocabulary"] == 29
    words = (tmp_path / "lm.vocab.txt").read_text().split("\n")[:-1]
    assert words[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and words == nets.load(path).vocab


def test_frozen_glove_stays_fixed_and_round_trips(ng, tmp_path):
    glove = write_glove(tmp_path / "g.txt", ["engine", "satellite", "doctor", "orbit", "patients"], dim=8)
    params = {**CNN, "epochs": 2, "glove": str(glove)}
    data = load_data("textcnn", str(ng), params)
    res = nets.train("textcnn", params, data, seed=0)
    emb = res.model.layers[0]
    assert emb.frozen and "w" not in emb.p
    np.testing.assert_array_equal(emb.table[1:], data.info["embedding"][1:])
    path = nets.save(res.model, tmp_path / "g.npz")
    loaded = nets.load(path)
    np.testing.assert_array_equal(loaded.layers[0].table, emb.table)
    x = data.val.inputs()
    np.testing.assert_array_equal(loaded.predict(x), res.model.predict(x))

    with pytest.raises(nets.ConfigError, match="embed=5 does not fit the data, which fixes embed=8"):
        nets.train("textcnn", {**params, "embed": 5}, data)
    tuned = nets.train("textcnn", {**params, "fine_tune": True}, data, seed=0).model.layers[0]
    assert not tuned.frozen and not np.array_equal(tuned.table, data.info["embedding"])


@pytest.mark.parametrize("opt", [SGD(0.5), Adagrad(0.5)], ids=["sgd", "adagrad"])
def test_embedding_update_touches_only_the_rows_in_the_batch(opt):
    model = text_cnn(50, 3, length=13, embed=4, filters=3, hidden=5, seed=0)
    x = np.zeros((2, 13), np.int32)
    x[0, :5], x[1, :3] = [3, 7, 7, 9, 11], [4, 3, 20]
    before = model.layers[0].table.copy()
    loss = NLLLoss()
    for _ in range(2):
        loss.forward(model.forward(x), np.array([0, 2]))
        model.backward(loss.backward())
        opt.step(model.params, model.grads)
    after = model.layers[0].table
    used = np.zeros(50, bool)
    used[[3, 4, 7, 9, 11, 20]] = True
    np.testing.assert_array_equal(after[~used], before[~used])       # bit for bit, padding row too
    assert (after[used] != before[used]).any(axis=1).sum() >= 4    # (a ReLU or a pool may block a few)


def test_rnn_skips_padding_positions():
    """Logits only for real positions; the same as the unpacked computation there."""
    model = rnn_lm(12, hidden=5, length=6, seed=1, dtype=np.float64)
    x = np.array([[2, 5, 6, 0, 0, 0], [2, 7, 8, 9, 10, 11]])
    y = np.array([[5, 6, 3, 0, 0, 0], [7, 8, 9, 10, 11, 3]])
    out = model.forward(x)
    assert out.shape == (9, 12)
    emb, rnn, lin = model.layers
    h = rnn.forward(emb.forward(x))
    full = h @ lin.p["w"] + lin.p["b"]
    np.testing.assert_allclose(out, full[x != 0], rtol=1e-12)
    ref = SeqNLLLoss().forward(full, y)
    assert SeqNLLLoss().forward(out, y) == pytest.approx(ref, rel=1e-12)


def test_same_seed_same_weights_and_data_settings_must_match(ng):
    a = nets.train("textcnn", {**CNN, "epochs": 1}, str(ng), seed=3).model.params
    data = load_data("textcnn", str(ng), CNN)
    b = nets.train("textcnn", {**CNN, "epochs": 1}, data, seed=3).model.params
    assert a.tobytes() == b.tobytes()
    with pytest.raises(nets.ConfigError, match="seq_len=20, not 30"):
        nets.train("textcnn", {**CNN, "seq_len": 30, "epochs": 1}, data)
    # splits cut down without the Data's info (as hpsearch's warm-up does) still carry the vocabulary
    tiny = nets.Data(data.train.subset(8), data.val.subset(4), data.source)
    assert nets.train("textcnn", {**CNN, "epochs": 1}, tiny).model.vocab == data.info["vocab"]


@pytest.mark.parametrize("name,text", [("textcnn_v1", None), ("textcnn_v2", {"pipeline": 2})])
def test_model_saved_by_an_earlier_text_pipeline_encodes_and_predicts_as_it_did(name, text):
    """textcnn_v1.npz was saved by the text pipeline of issue 16's start (letters only, out-of-vocabulary
    words dropped, last tokens kept), textcnn_v2.npz by pipeline 2 (<unk>); the .json holds what each gave."""
    here = Path(__file__).parent / "data"
    rec = json.loads((here / f"{name}.json").read_text())
    model = nets.load(here / f"{name}.npz")
    assert model.arch.get("text") == text
    ids = encode_texts(rec["documents"], model.vocab, model.input_shape[0], model.arch.get("text"))
    np.testing.assert_array_equal(ids, rec["ids"])
    np.testing.assert_allclose(model.predict(ids), rec["log_probs"], rtol=1e-5, atol=1e-6)


def test_a_model_records_its_text_pipeline_and_encodes_new_text_with_it(ng, tmp_path):
    new = nets.load(nets.save(nets.train("textcnn", {**CNN, "epochs": 1}, str(ng)).model, tmp_path / "n.npz"))
    assert new.arch["text"] == {"pipeline": 2} and new.vocab[1] == "<unk>"
    ids = encode_texts(["The zorgs deployed many satellites"], new.vocab, 20, new.arch["text"])
    assert ids[0, :5].tolist() == [new.vocab.index("the"), 1, new.vocab.index("deployed"), 1, 1]
    path = tmp_path / "old.npz"
    r = run_cli("train", "textcnn", "--data", str(ng), "--seq-len", "20", "--embed", "8", "--filters", "6",
                "--epochs", "1", "--drop-headers", "--pipeline", "1", "--skip-top", "10", "--save", str(path))
    assert r.returncode == 0, r.stderr
    old = nets.load(path)
    assert old.arch["text"] == {"pipeline": 1} and "<unk>" not in old.vocab and "the" not in old.vocab
    assert encode_texts(["The zorgs deployed many satellites"], old.vocab, 20, old.arch["text"])[0, 0] == \
        old.vocab.index("deployed")
