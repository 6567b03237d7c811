"""The driver's pruning channel: an Optuna gRPC storage proxy served from a driver thread.

Workers (local processes or Spark executors) connect with ``GrpcStorageProxy(host, port)``, load
the study with the same pruner, ``report(value, epoch)`` and ask ``should_prune()``. All reads and
writes go through the driver's own storage object, so a SQLite store has one writer process.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hpsearch.errors import HpsearchError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


@contextmanager
def proxy_server(storage: BaseStorage, *, bind: str = "127.0.0.1",
                 advertise: str | None = None) -> Iterator[tuple[str, int]]:
    """Serve ``storage`` over gRPC on a free port; yields ``(host, port)`` for the workers.

    Args:
        bind: the address to listen on (``0.0.0.0`` for executors on other machines).
        advertise: the host workers should dial (defaults to ``bind``).
    """
    from concurrent.futures import ThreadPoolExecutor
    try:
        import grpc
        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.servicer import OptunaStorageProxyService
    except ImportError as exc:
        raise HpsearchError(f"pruning needs grpcio ({exc})", "pip install grpcio") from None
    server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="hpsearch-grpc"))
    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    port = server.add_insecure_port(f"{bind}:0")
    if not port:
        raise HpsearchError(f"cannot listen on {bind} for the pruning channel",
                            "check the network settings of the driver")
    server.start()
    try:
        yield advertise or bind, port
    finally:
        server.stop(grace=2).wait(5)
