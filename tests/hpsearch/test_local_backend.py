"""The local backend meets the Backend contract; its workers are reused and single-threaded."""
from __future__ import annotations

import pytest

from backend_contract import BackendContract, task
from hpsearch.backends import make_backend
from hpsearch.backends.local import LocalBackend
from hpsearch.errors import BackendError
from hpsearch.records import COMPLETE

pytestmark = pytest.mark.slow  # each test starts worker processes (a few seconds)


@pytest.fixture
def backend(data):
    return lambda parallelism: LocalBackend(parallelism=parallelism, data=data)


class TestLocalBackend(BackendContract):
    def test_workers_are_reused(self, backend) -> None:
        with backend(1) as b:
            results = list(b.run([task(i) for i in range(3)]))
        assert len({r.worker for r in results}) == 1


def test_workers_exit_at_once_with_their_output_written(data, capfd, monkeypatch) -> None:
    """A worker ends with os._exit (no interpreter teardown): what a trial printed without a newline
    still reaches the terminal (its stdout buffered, as without PYTHONUNBUFFERED), exit code 0."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    b = LocalBackend(parallelism=1, data=data)
    results = list(b.run([task(0, net="recipes_for_tests:fragile", mode="say")]))
    processes = [w.process for w in b._idle]
    b.close()
    assert [r.state for r in results] == [COMPLETE]
    assert [p.exitcode for p in processes] == [0]
    assert "fragile says hello" in capfd.readouterr().out


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="unknown backend 'yarn'"):
        make_backend("yarn", parallelism=1)
