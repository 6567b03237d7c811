"""The pruning channel: a small gRPC service on the driver that only the sweep's own tasks can use.

A worker (a local process or a Spark task) calls ``Report(trial_id, epoch, value)`` after every
epoch; the driver records the value in its Optuna study and answers whether to prune. The pruner
runs on the driver, against the driver's own store, so its decisions see every task's reports, and
a SQLite store keeps one writer process. One call per epoch (Optuna's storage proxy needed several).

Only the sweep's tasks get in:

- every call carries the sweep's secret (32 random bytes, new for each sweep) in its metadata; a call
  without it is refused (``UNAUTHENTICATED``) before its request is even decoded;
- when the channel listens on anything but loopback it speaks TLS, with a certificate made for this
  sweep (the tasks get it, pinned, with the secret);
- the secret travels inside the pickled :class:`~hpsearch.records.TrialTask`, never in a URL, a
  log line, an MLflow tag or a Spark job description (``repr`` hides it).

Requests and answers are small JSON documents, so neither side unpickles what the other sends.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError
from hpsearch.records import PruningChannel

if TYPE_CHECKING:
    import optuna

SERVICE = "hpsearch.Channel"
SECRET_KEY = "x-hpsearch-secret"
TLS_NAME = "hpsearch-driver"      # the name in the sweep's certificate (clients pin the certificate)

Decide = Callable[..., bool]
"""``decide(trial_id, epoch, value, values=None) -> prune?``: the driver's answer to one report
(``values``: every objective's, in a multi-objective study)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def study_decider(study: optuna.Study) -> Decide:
    """Report to ``study`` and ask its pruner, as ``optuna.Trial.report`` + ``should_prune`` would.
    A multi-objective study (where ``Trial.report`` raises) stores the epoch's values on the trial
    and asks its pruner directly (see :mod:`hpsearch.mo_pruner`)."""
    import optuna

    lock = threading.Lock()   # one report at a time: Optuna's storages are not all thread-safe

    def decide(trial_id: int, epoch: int, value: float, values: list[float] | None = None) -> bool:
        with lock:
            if len(study.directions) > 1:
                from hpsearch.mo_pruner import record
                record(study, trial_id, epoch, values if values is not None else [value])
                return study.pruner.prune(study, study._storage.get_trial(trial_id))
            trial = optuna.trial.Trial(study, trial_id)
            trial.report(value, epoch)
            return trial.should_prune()
    return decide


# --------------------------------------------------------------------------- the driver side

def self_signed() -> tuple[bytes, bytes]:
    """A key and certificate for this sweep only (EC P-256, one day, the name TLS_NAME)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_NAME)]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


NextTrial = Callable[[dict], dict]
"""``next_trial({"slot": .., "result": ..}) -> {"task": ..}``: the slot mode's feeder (see
:mod:`hpsearch.backends.spark_slots`); it blocks until the driver answers."""

MAX_MESSAGE = 1 << 30   # a trial's result carries its weights (an embedding can be 100s of MB)
OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE),
           ("grpc.max_send_message_length", MAX_MESSAGE)]


def _handlers(secret: str, decide: Decide, next_trial: NextTrial | None = None) -> Any:
    import grpc

    def authorised(context: Any) -> None:
        got = dict(context.invocation_metadata()).get(SECRET_KEY, "")
        if not hmac.compare_digest(got.encode(), secret.encode()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "not a task of this sweep")

    def ping(request: bytes, context: Any) -> bytes:
        authorised(context)
        return b"{}"

    def report(request: bytes, context: Any) -> bytes:
        authorised(context)
        try:
            r = json.loads(request)
            values = r.get("values")
            values = None if values is None else [float(v) for v in values]
            prune = decide(int(r["trial_id"]), int(r["epoch"]), float(r["value"]), values)
        except (ValueError, KeyError, TypeError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad report: {exc}")
        return json.dumps({"prune": bool(prune)}).encode()

    def next_(request: bytes, context: Any) -> bytes:
        authorised(context)
        if next_trial is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this sweep runs no slots")
        try:
            body = json.loads(request)
            str(body["slot"])
        except (ValueError, KeyError, TypeError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad request: {exc}")
        return json.dumps(next_trial(body)).encode()

    methods = {name: grpc.unary_unary_rpc_method_handler(fn)   # raw bytes in and out
               for name, fn in (("Ping", ping), ("Report", report), ("Next", next_))}
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def new_secret() -> str:
    """A fresh secret for one sweep (256 random bits)."""
    return secrets.token_urlsafe(32)


@contextmanager
def serve(decide: Decide, *, bind: str = "127.0.0.1", advertise: str | None = None,
          tls: bool | None = None, next_trial: NextTrial | None = None,
          slots: int = 0) -> Iterator[PruningChannel]:
    """Serve the channel on a free port of ``bind``; yields what the tasks need to reach it.

    Args:
        decide: answers each report (see :func:`study_decider`).
        bind: the address to listen on (one address, never every interface unless asked).
        advertise: the host the tasks dial (defaults to ``bind``).
        tls: speak TLS; by default whenever ``bind`` is not a loopback address.
        next_trial: serves ``Next`` (slot mode), with ``slots`` calls waiting at most at once.
    """
    from concurrent.futures import ThreadPoolExecutor
    try:
        import grpc
    except ImportError as exc:
        raise HpsearchError(f"pruning needs grpcio ({exc})", "pip install grpcio") from None
    secret = new_secret()
    # every slot may wait in Next while its trial's reports (and the probe) need threads too
    pool = ThreadPoolExecutor(max_workers=16 + 2 * slots, thread_name_prefix="hpsearch-channel")
    server = grpc.server(pool, handlers=[_handlers(secret, decide, next_trial)], options=OPTIONS)
    cert = None
    address = f"[{bind}]:0" if ":" in bind else f"{bind}:0"
    if tls is None:
        tls = not is_loopback(bind)
    if tls:
        key, cert = self_signed()
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(address)
    if not port:
        raise HpsearchError(f"cannot listen on {bind} for the pruning channel",
                            "set execution.report_bind to an address of this machine")
    server.start()
    try:
        yield PruningChannel(advertise or bind, port, secret, cert, listens=advertise in (None, bind))
    finally:
        server.stop(grace=2).wait(5)


# --------------------------------------------------------------------------- the task side

_STUBS: OrderedDict[tuple, Any] = OrderedDict()   # one gRPC channel per driver, per worker process
_MAX_STUBS = 4


def _stub(channel: PruningChannel) -> Any:
    import grpc

    key = (channel.host, channel.port, channel.cert)
    if key not in _STUBS:
        target = f"{channel.host}:{channel.port}"
        if channel.cert is None:
            conn = grpc.insecure_channel(target, options=OPTIONS)
        else:
            creds = grpc.ssl_channel_credentials(root_certificates=channel.cert)
            conn = grpc.secure_channel(target, creds,
                                       options=[*OPTIONS, ("grpc.ssl_target_name_override", TLS_NAME)])
        _STUBS[key] = conn
        while len(_STUBS) > _MAX_STUBS:
            _STUBS.popitem(last=False)[1].close()
    _STUBS.move_to_end(key)
    return _STUBS[key]


def call(channel: PruningChannel, method: str, body: dict[str, Any], timeout: float = 60.0,
         wait_for_ready: bool = True) -> dict:
    """One call to the driver's channel, with the sweep's secret (``wait_for_ready``: wait for a
    channel not up yet until ``timeout``, instead of failing at once)."""
    conn = _stub(channel)
    rpc = conn.unary_unary(f"/{SERVICE}/{method}")
    answer = rpc(json.dumps(body).encode(), timeout=timeout, wait_for_ready=wait_for_ready,
                 metadata=((SECRET_KEY, channel.secret),))
    return json.loads(answer)


class Reporter:
    """``report(epoch, value) -> prune?`` for one trial, through the driver's channel."""

    def __init__(self, channel: PruningChannel, trial_id: int, timeout: float = 30.0) -> None:
        self.channel, self.trial_id = channel, trial_id
        call(channel, "Ping", {}, timeout=timeout)     # fail now, before training, when unreachable

    def __call__(self, epoch: int, value: float, values: list[float] | None = None) -> bool:
        body: dict[str, Any] = {"trial_id": self.trial_id, "epoch": epoch, "value": value}
        if values is not None:
            body["values"] = values
        answer = call(self.channel, "Report", body)
        return bool(answer.get("prune"))


def ping(channel: PruningChannel, timeout: float, tries: int = 3) -> str | None:
    """``None`` when the channel answers within ``timeout`` s, else one line saying why not. A
    refused connection fails at once (not waited on until ``timeout``): tried ``tries`` times, 1 s
    apart; an address that does not answer at all still takes ``timeout``."""
    end, left = time.monotonic() + timeout, tries
    while True:
        left -= 1
        try:
            call(channel, "Ping", {}, timeout=max(0.1, end - time.monotonic()), wait_for_ready=False)
            return None
        except Exception as exc:  # noqa: BLE001 - grpc.RpcError and whatever a broken network raises
            code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
            if code != "UNAVAILABLE" or left <= 0 or time.monotonic() + 1.0 >= end:
                details = exc.details() if hasattr(exc, "details") else str(exc)
                return f"{code}: " + " ".join(str(details).split())[:160]
        time.sleep(1.0)
