"""Backends: name -> factory registry. Factories are imported only when used.

A factory is called as ``factory(parallelism=N, data=obj, master=url_or_None, study_name=str)``
and returns a :class:`Backend`. The Spark backend lives in ``hpsearch/backends/spark.py``; the
data-parallel one (``spark_barrier``: each trial on W barrier tasks) in ``spark_barrier.py``, and
``make_backend(..., data_parallel=spec.execution.data_parallel)`` picks it.
"""
from __future__ import annotations

import importlib
from typing import Any

from hpsearch.backends._base import Backend
from hpsearch.backends._parallelism import parallelism_notes
from hpsearch.errors import BackendError

BACKENDS: dict[str, str] = {
    "local": "hpsearch.backends.local:LocalBackend",
    "spark": "hpsearch.backends.spark:SparkBackend",
    "spark_barrier": "hpsearch.backends.spark_barrier:BarrierBackend",
}

_EXTRAS = {"spark": "hpsearch[spark]", "spark_barrier": "hpsearch[spark]"}


def make_backend(name: str, *, parallelism: int | None, data: Any = None, master: str | None = None,
                 study_name: str = "hpsearch", spark: Any = None, data_parallel: Any = None,
                 conf: dict[str, str] | None = None, dispatch: str = "auto") -> Backend:
    """A backend by registry name; BackendError when it is unknown or cannot be loaded.

    ``data_parallel`` (a ``DataParallelSpec``: workers, sync_every) selects ``spark_barrier``.
    Spark backends also take ``conf`` (``execution.spark_conf``, for the session they start) and
    the Spark one ``dispatch`` (``execution.dispatch``).
    """
    options: dict[str, Any] = {}
    if data_parallel is not None:
        name = "spark_barrier"
        options = {"workers": data_parallel.workers, "sync_every": data_parallel.sync_every}
    elif name == "spark":
        options["dispatch"] = dispatch
    if name in _EXTRAS and conf:
        options["conf"] = conf
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}'", "valid: " + ", ".join(BACKENDS))
    module_name, _, attr = BACKENDS[name].partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        if exc.name == module_name:
            raise BackendError(f"the {name} backend is not installed yet in this version of hpsearch",
                               "use --backend local") from None
        extra = _EXTRAS.get(name, exc.name or "the missing package")
        raise BackendError(f"the {name} backend needs {exc.name}: {exc}",
                           f"pip install '{extra}'") from None
    return factory(parallelism=parallelism, data=data, master=master, study_name=study_name, spark=spark,
                   **options)


__all__ = ["BACKENDS", "Backend", "make_backend", "parallelism_notes"]
