"""The pruning channel: only the sweep's own tasks get in, over TLS off loopback, and the pruner
decides on the driver with every task's reports."""
from __future__ import annotations

import grpc
import optuna
import pytest

from conftest import free_port

from hpsearch.pruning import Reporter, call, ping, serve, study_decider
from hpsearch.records import PruningChannel


@pytest.fixture
def study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    done = s.ask()
    for epoch in (1, 2):
        done.report(1.0, epoch)
    s.tell(done, 1.0)
    return s


@pytest.mark.parametrize("tls", [False, True], ids=["loopback", "tls"])
def test_reports_reach_the_pruner_and_bad_trials_are_pruned(study, tls: bool) -> None:
    good, bad = study.ask(), study.ask()
    with serve(study_decider(study), tls=tls) as channel:
        assert (channel.cert is not None) == tls
        assert Reporter(channel, good._trial_id)(1, 0.5) is False   # better than the median: go on
        assert Reporter(channel, bad._trial_id)(1, 3.0) is True     # worse: prune
    assert study.trials[good.number].intermediate_values == {1: 0.5}
    assert study.trials[bad.number].intermediate_values == {1: 3.0}


@pytest.mark.parametrize("tls", [False, True], ids=["loopback", "tls"])
def test_a_client_without_the_secret_is_refused_and_changes_nothing(study, tls: bool) -> None:
    trial = study.ask()
    with serve(study_decider(study), tls=tls) as channel:
        for secret in ("", "not-the-secret", channel.secret[:-1]):
            intruder = PruningChannel(channel.host, channel.port, secret, channel.cert)
            with pytest.raises(grpc.RpcError) as err:
                call(intruder, "Report", {"trial_id": trial._trial_id, "epoch": 1, "value": 9.0}, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert ping(intruder, timeout=5).startswith("UNAUTHENTICATED")
        assert ping(channel, timeout=5) is None
    assert study.trials[trial.number].intermediate_values == {}


def test_tls_channel_refuses_plaintext_and_unpinned_clients(study) -> None:
    with serve(study_decider(study), tls=True) as channel:
        plain = PruningChannel(channel.host, channel.port, channel.secret, None)   # no TLS
        assert ping(plain, timeout=3) is not None
        other_cert = PruningChannel(channel.host, channel.port, channel.secret, _other_cert())
        assert ping(other_cert, timeout=3) is not None                            # not the sweep's cert
        assert ping(channel, timeout=5) is None


def test_a_refused_connection_is_reported_as_such_not_waited_on() -> None:
    """The channel check's probe: nothing listens, so the answer is UNAVAILABLE ("Connection refused")
    after its few tries, not DEADLINE_EXCEEDED after waiting out the whole timeout."""
    why = ping(PruningChannel("127.0.0.1", free_port(), "x"), timeout=60)   # nothing listens there
    assert why is not None and why.startswith("UNAVAILABLE") and "refused" in why


def test_the_secret_never_shows_in_a_repr(study) -> None:
    with serve(study_decider(study)) as channel:
        assert channel.secret not in repr(channel)
        from hpsearch.records import TrialTask
        task = TrialTask(0, 0, "lenet", {}, {}, "val_loss", "minimize", 0, channel=channel)
        assert channel.secret not in repr(task) and channel.secret not in str(task)


def _other_cert() -> bytes:
    from hpsearch.pruning import self_signed
    return self_signed()[1]


@pytest.mark.parametrize("name,options", [
    ("hyperband", {"min_resource": 1, "reduction_factor": 3, "max_resource": 9}),
    ("successive_halving", {"min_resource": 1}),
    ("successive_halving", {"min_resource": 2, "reduction_factor": 2, "min_early_stopping_rate": 1}),
])
def test_successive_halving_prunes_only_where_next_decision_says(name: str, options: dict) -> None:
    """The rung-by-rung schedule (hpsearch.samplers.next_decision) against Optuna's own pruners: 40
    trials report 9 epochs each (random values); every prune comes at an epoch the schedule names."""
    import random

    from hpsearch.samplers import make_pruner, next_decision
    after = next_decision(name, options)
    rungs, e = set(), 0
    while e < 9:
        e = after(e)
        rungs.add(e)
    study = optuna.create_study(pruner=make_pruner(name, options))
    rng, pruned_at = random.Random(0), []
    for _ in range(40):
        trial = study.ask()
        for epoch in range(1, 10):
            trial.report(rng.random(), epoch)
            if trial.should_prune():
                pruned_at.append(epoch)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, rng.random())
    assert pruned_at and set(pruned_at) <= rungs
