"""The default study store, a journal file (hpsearch.journal.DriverJournal): what a driver writes
is read back as Optuna reads it, a driver killed at any moment leaves a store that resumes, a
partial last line is cut before the next append, and old studies keep their SQLite file."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

import hpsearch
from conftest import lenet_dict
from hpsearch.storage import LOCK_ATTR, REQUEUED, driver_lock, load_existing_study, open_storage, requeue_orphans

DISTS = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "momentum": FloatDistribution(0.5, 0.99),
         "batch_size": IntDistribution(8, 128, log=True), "dropout": FloatDistribution(0.0, 0.5)}

# what the driver does per trial: ask, 4 user attributes, tell (a few pruned and failed)
DRIVER = textwrap.dedent("""
    import sys, optuna
    from optuna.distributions import FloatDistribution as F, IntDistribution as I
    from hpsearch.storage import open_storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {"lr": F(1e-4, 1e-1, log=True), "momentum": F(0.5, 0.99), "batch_size": I(8, 128, log=True),
             "dropout": F(0.0, 0.5)}
    study = optuna.create_study(study_name="s", storage=open_storage(sys.argv[1], create=True),
                                load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=0))
    for i in range(100000):
        trial = study.ask(fixed_distributions=dists)
        for epoch in range(3):
            trial.report(trial.params["lr"] * (3 - epoch), epoch)
        for key, value in (("mlflow_run_id", f"run{trial.number}"), ("epochs", 3), ("seconds", 0.5),
                           ("worker", "w")):
            trial.set_user_attr(key, value)
        state = [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED][trial.number % 5 == 4]
        study.tell(trial, trial.params["lr"] if state.name == "COMPLETE" else None, state=state)
        print("told", trial.number, flush=True)
""")


def _url(tmp_path: Path, name: str = "s") -> str:
    return f"journal:///{tmp_path / (name + '.journal')}"


def _record(t: optuna.trial.FrozenTrial) -> tuple:
    return (t.number, t.state.name, t.params, t.values, t.user_attrs, t.intermediate_values,
            t.distributions, t.datetime_start, t.datetime_complete)


def _drive(study: optuna.Study, n: int) -> None:
    """``n`` trials as the driver tells them: complete, pruned (with epochs) and failed."""
    for _ in range(n):
        trial = study.ask(fixed_distributions=DISTS)
        trial.report(0.5, 0)
        trial.set_user_attr("mlflow_run_id", f"run{trial.number}")
        trial.set_user_attr("seconds", 1.5)
        if trial.number % 3 == 1:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif trial.number % 3 == 2:
            trial.set_user_attr("fail_reason", "NaN loss")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, trial.params["lr"])


def test_what_the_driver_writes_reads_back_the_same_from_memory_and_from_the_file(tmp_path: Path) -> None:
    writer = optuna.create_study(study_name="s", storage=open_storage(_url(tmp_path), create=True))
    _drive(writer, 12)
    with driver_lock(writer):
        pass
    reader = load_existing_study(_url(tmp_path), "s")
    plain = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(
        str(tmp_path / "s.journal"))))                      # Optuna's own backend reads it too
    mine = [_record(t) for t in writer.trials]
    assert [_record(t) for t in reader.trials] == mine == [_record(t) for t in plain.trials]
    assert [t.state.name for t in writer.trials[:3]] == ["COMPLETE", "PRUNED", "FAIL"]
    assert reader.user_attrs == {LOCK_ATTR: None} and reader.best_trial.number == writer.best_trial.number


def test_two_drivers_on_one_file_see_each_others_trials(tmp_path: Path) -> None:
    a = optuna.create_study(study_name="s", storage=open_storage(_url(tmp_path), create=True))
    _drive(a, 2)
    b = optuna.load_study(study_name="s", storage=open_storage(_url(tmp_path), create=True))
    _drive(b, 2)
    _drive(a, 1)                                         # a reads b's lines from the file again
    assert [t.number for t in a.trials] == [0, 1, 2, 3, 4] == [t.number for t in b.trials]
    assert [_record(t) for t in a.trials] == [_record(t) for t in b.trials]


def test_a_partial_last_line_is_skipped_by_readers_and_cut_before_the_next_append(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=open_storage(_url(tmp_path), create=True))
    _drive(study, 3)
    path = tmp_path / "s.journal"
    with open(path, "ab") as f:
        f.write(b'{"op_code":6,"worker_id":"x","trial_id":0,"sta')   # a writer killed mid-line
    assert len(load_existing_study(_url(tmp_path), "s").trials) == 3
    again = optuna.load_study(study_name="s", storage=open_storage(_url(tmp_path), create=True))
    _drive(again, 2)
    lines = path.read_bytes().splitlines()
    assert all(json.loads(line) for line in lines)       # every line whole: the fragment is gone
    plain = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert [t.state.name for t in plain.trials] == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE", "PRUNED"]


@pytest.mark.parametrize("kill_after", [5, 23])
def test_a_driver_killed_at_any_moment_leaves_a_store_that_resumes(tmp_path: Path, kill_after: int) -> None:
    url = _url(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, url], stdout=subprocess.PIPE, text=True)
    told = []
    try:
        while len(told) < kill_after:
            line = proc.stdout.readline()
            assert line, "the writer ended early"
            told.append(int(line.split()[1]))
        time.sleep(0.003 * (kill_after % 7))             # somewhere inside a later trial
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    study = optuna.load_study(study_name="s", storage=open_storage(url, create=True))
    by_number = {t.number: t for t in study.trials}
    for n in told:                                       # every verdict it printed is stored, whole
        t = by_number[n]
        assert t.state.name in ("COMPLETE", "PRUNED") and t.user_attrs["mlflow_run_id"] == f"run{n}"
        assert t.user_attrs["worker"] == "w" and len(t.params) == 4 and len(t.intermediate_values) == 3
    running = [t for t in study.trials if t.state.name == "RUNNING"]
    assert len(running) <= 1 and all(t.number not in told for t in running)
    assert requeue_orphans(study, DISTS) == len(running)
    assert all(t.user_attrs[REQUEUED] for t in study.trials if t.number in {r.number for r in running})
    _drive(study, 2)                                     # the resumed driver appends after it
    fresh = load_existing_study(url, "s")
    assert [_record(t) for t in fresh.trials] == [_record(t) for t in study.trials]
    started = [t for t in running if len(t.params) == 4]
    assert [t.params for t in started] == [t.params for t in fresh.trials[len(by_number):][:len(started)]]


def test_new_studies_default_to_a_journal_file_and_old_ones_keep_their_sqlite_file(tmp_path: Path) -> None:
    spec = hpsearch.spec_from_dict(lenet_dict(), name="fresh", base_dir=tmp_path)
    assert spec.storage == f"journal:///{tmp_path / 'fresh.optuna.journal'}"
    (tmp_path / "old.optuna.db").touch()
    spec = hpsearch.spec_from_dict(lenet_dict(), name="old", base_dir=tmp_path)
    assert spec.storage == f"sqlite:///{tmp_path / 'old.optuna.db'}"
    spec = hpsearch.spec_from_dict(lenet_dict(storage="runs/s.journal"), name="rel", base_dir=tmp_path)
    assert spec.storage == f"journal:///{tmp_path / 'runs' / 's.journal'}"   # beside the study file
    with pytest.raises(hpsearch.HpsearchError, match="no study store at"):
        load_existing_study(spec.storage, "rel")
