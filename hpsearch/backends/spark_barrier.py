"""Data-parallel mode: one trial trained across W Spark barrier tasks.

Use it for one big trial (or to retrain a sweep's best configuration on all the data); a sweep of
many small trials is faster as plain fan-out (one core per trial, no synchronisation at all).

How it runs
-----------
- The trial is one barrier job of W tasks (an RDD's ``barrier()`` stage on classic Spark,
  ``mapInArrow(..., barrier=True)`` on Connect), so Spark starts all W
  ranks together or none. The ranks meet once: rank 0 listens on a TCP port of its executor's address
  and publishes it with one ``BarrierTaskContext.allGather``; the other ranks connect to it. After
  that, every exchange goes over these sockets, rank 0 being the hub: each rank sends its flat float32
  buffer (numpy bytes), rank 0 adds them up in float64, weighted by each rank's share of the samples,
  and sends the mean back. Spark is not involved again until the job ends.
- Every rank builds the same model from the trial's seed and runs ``nets.fit`` with the
  *global* batch size and the same seed, so all ranks draw the same permutation and the same global
  batches; each keeps its contiguous part of every global batch (:class:`_Shard`). With
  ``sync_every = 1`` the ranks average their GRADIENTS (the ``reduce_grads`` hook, before the
  optimizer step): every rank then takes the same step, which is synchronous SGD with the global
  batch; it equals one worker with that batch over the same sample order up to float rounding.
  (STYLE 12 suggests ``seed + rank`` for the data order; slicing one global order is what makes
  the equivalence exact, and the shards are still disjoint.)
- With ``sync_every = K > 1`` every rank takes K local steps on its part of the batches, then the
  ranks average their PARAMETERS and their OPTIMIZER STATE (momentum buffer, Adagrad's accumulator,
  Adam's moments: every array of the optimizer shaped like the parameters), weighted by the samples
  each saw since the last average; they average again at the end of every epoch, so the model
  evaluated and returned is the average. Averaging the state too restarts every rank from one
  common point, as if one optimizer had taken the steps. The step counter (learning-rate decay) is
  the same on every rank.
- Rank 0 alone evaluates on the validation split after each epoch, reports the epoch through the
  trial's usual report callback (so pruning works as for any trial), tells the other ranks whether
  to stop, and returns the result (history, weights). Its training ``loss`` is the loss on its
  shard; ``samples_per_s`` counts every rank's samples; ``sync_s`` is the time it spent averaging.
- Failures: an exception in the net on any rank becomes the trial's failed result (its reason and
  traceback, with the rank), as for any trial. A rank whose process or connection is lost makes the
  barrier job fail; Spark does not retry a failed barrier result stage ("Could not recover from a
  failed barrier ResultStage"), so the backend re-submits the whole job, at most ``retries`` times,
  then fails the trial with the reason. Same seed, same result: a retried trial restarts from epoch
  1 and reproduces what was lost.

Measured on the 2-core development machine (local[2], shared; ``bench/data_parallel.py``)
----------------------------------------------------------------------------------------
- one ``allGather`` or ``barrier()``: 1.00 s however small the message (PySpark's barrier client
  polls once a second); one plain two-task Spark job: 0.12-0.15 s, more with weights to broadcast.
- one average over the hub's sockets, two ranks: 0.10-0.12 ms for LeNet's 22k parameters, 9-10 ms
  for the text CNN's 1.3M (2.2M with a 20k vocabulary: 11-15 ms).
- one training step on one core: LeNet 0.4-0.7 ms at batch 12, 5-7 ms at batch 128; text CNN
  (length 1000) 0.42 s at batch 64, 0.78-0.86 s at batch 128.
So Spark is used once per trial to meet (one ``allGather``, 1 s) and never per step: an allGather
per step costs more than a text CNN step on two ranks (0.42 s) and 2,000 LeNet steps, and a Spark
job per step (0.12 s bare, up to 1.6 s once the weights travel) 30-400% of that step. K = 1 is the
default: on the text CNN (batch 128) an average is about 2% of a half-batch step, and W = 2 trains
at 1.6-2.0x the samples/s of W = 1 (medians of three bench runs, the low end with other processes
busy on the machine) to the same accuracy (top-1 within 0.2 points after 4 epochs). LeNet at
batch 128 (5 ms steps): 1.7x with K = 1, 1.95x with K = 4. For short steps the ranks' waits for
each other dominate: LeNet at batch 12 is slower on two ranks with K = 1 than on one, and about
1.2x faster with K = 4 to 16; such a net is better tuned by plain fan-out, one trial per core.
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import struct
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from typing import Any

import numpy as np

from hpsearch.backends.common import job_error, limit_threads
from hpsearch.backends.spark import SparkBackend, log, result_row, worker_data
from hpsearch.errors import BackendError
from hpsearch.records import COMPLETE, FAILED, PRUNED, TrialResult, TrialTask

CONNECT_S = 120.0      # how long rank 0 waits for the other ranks to connect (they start together)
SILENCE_S = 1800.0     # a rank silent this long is lost (rank 0's evaluation is the longest wait)

_HEADER = struct.Struct("!BdQ")   # kind, weight, payload bytes
_HELLO = struct.Struct("!I16s")   # rank, token
_DATA, _FLAG, _ABORT = 1, 2, 3
LOST_TAG = "data-parallel"


# --------------------------------------------------------------------------- the hub

class PeerLost(ConnectionError):
    """A rank's process or connection is gone: the trial is retried, not failed."""


class PeerFailed(Exception):
    """A rank's net raised: the trial fails with that rank's reason and traceback."""

    def __init__(self, rank: int, reason: str, tb: str = "") -> None:
        super().__init__(f"rank {rank}: {reason}")
        self.rank, self.reason, self.tb = rank, reason, tb


class Hub:
    """The sockets between the ranks of one trial: rank 0 holds one per other rank, in rank order;
    every other rank holds one, to rank 0. ``world == 1`` needs no socket and averages nothing."""

    def __init__(self, rank: int, world: int, socks: list[socket.socket]) -> None:
        self.rank, self.world, self.socks = rank, world, socks
        self.seconds = 0.0            # time spent in average()
        self._acc = self._t64 = self._tmp = None

    def average(self, buf: np.ndarray, weight: float) -> None:
        """Replace ``buf`` (float32, contiguous) on every rank by the weighted mean over the ranks."""
        if self.world == 1:
            return
        t0 = time.perf_counter()
        if self.rank:
            _send(self.socks[0], _DATA, weight, buf)
            _expect(self.socks[0], _DATA, 0, buf)
        else:
            self._reduce(buf, weight)
        self.seconds += time.perf_counter() - t0

    def _reduce(self, buf: np.ndarray, weight: float) -> None:
        if self._acc is None or self._acc.shape != buf.shape:   # float64 sums, no allocation
            self._acc, self._t64 = np.empty(buf.shape, np.float64), np.empty(buf.shape, np.float64)
            self._tmp = np.empty_like(buf)
        acc, t64, tmp, total = self._acc, self._t64, self._tmp, float(weight)
        np.copyto(acc, buf)
        acc *= weight
        for rank, sock in enumerate(self.socks, 1):   # a fixed order: the same sum every run
            w = _expect(sock, _DATA, rank, tmp)
            np.copyto(t64, tmp)
            t64 *= w
            acc += t64
            total += w
        acc /= total if total > 0 else 1.0
        np.copyto(buf, acc, casting="same_kind")
        for sock in self.socks:
            _send(sock, _DATA, 0.0, buf)

    def decide(self, stop: bool = False) -> bool:
        """Rank 0 tells the others whether to stop after this epoch; they return what it said."""
        if self.world == 1:
            return stop
        if self.rank:
            return bool(_expect(self.socks[0], _FLAG, 0, None))
        for sock in self.socks:
            _send(sock, _FLAG, float(stop), None)
        return stop

    def abort(self, reason: str, tb: str = "") -> None:
        """Tell the other ranks this one failed (best effort), and close."""
        payload = np.frombuffer(json.dumps({"reason": reason, "traceback": tb}).encode(), np.uint8)
        for sock in self.socks:
            with suppress(OSError):
                _send(sock, _ABORT, 0.0, payload)
        self.close()

    def close(self) -> None:
        for sock in self.socks:
            with suppress(OSError):
                sock.close()
        self.socks = []


def _send(sock: socket.socket, kind: int, weight: float, buf: np.ndarray | None) -> None:
    view = b"" if buf is None else memoryview(buf).cast("B")
    try:
        sock.sendall(_HEADER.pack(kind, weight, len(view)))
        if len(view):
            sock.sendall(view)
    except OSError as exc:
        raise PeerLost(f"connection lost while sending ({exc})") from None


def _recv_exact(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        try:
            n = sock.recv_into(view[got:])
        except OSError as exc:
            raise PeerLost(f"connection lost ({exc})") from None
        if n == 0:
            raise PeerLost("connection closed: the other rank's process is gone")
        got += n


def _expect(sock: socket.socket, kind: int, rank: int, out: np.ndarray | None) -> float:
    """Receive one frame of ``kind`` into ``out``; returns its weight. An abort raises PeerFailed."""
    head = bytearray(_HEADER.size)
    _recv_exact(sock, memoryview(head))
    got, weight, size = _HEADER.unpack(head)
    if got == _ABORT:
        body = bytearray(size)
        _recv_exact(sock, memoryview(body))
        info = json.loads(body.decode() or "{}")
        raise PeerFailed(rank, info.get("reason", "failed"), info.get("traceback", ""))
    want = 0 if out is None else out.nbytes
    if got != kind or size != want:
        raise PeerLost(f"protocol error: frame {got} of {size} bytes, expected {kind} of {want}")
    if want:
        _recv_exact(sock, memoryview(out).cast("B"))
    return weight


def rendezvous(rank: int, world: int, all_gather: Callable[[str], list[str]], host: str) -> Hub:
    """Connect the ranks: rank 0 listens on ``host`` and publishes its port with ONE ``all_gather``
    (every rank must call this function once, together); the others connect to it."""
    if world == 1:
        return Hub(0, 1, [])
    if rank:
        return _join(rank, world, json.loads(all_gather("")[0]))
    with socket.create_server((host, 0)) as server:
        server.settimeout(CONNECT_S)
        token = secrets.token_bytes(16)
        all_gather(json.dumps({"host": host, "port": server.getsockname()[1], "token": token.hex()}))
        peers: dict[int, socket.socket] = {}
        while len(peers) < world - 1:
            try:
                sock, _ = server.accept()
            except OSError as exc:
                raise PeerLost(f"{world - 1 - len(peers)} rank(s) did not connect ({exc})") from None
            r = _hello(sock, token, world)
            if r is None or r in peers:      # not one of ours (a stray connection): drop it
                sock.close()
                continue
            _setup(sock)
            peers[r] = sock
    return Hub(0, world, [peers[r] for r in range(1, world)])


def _hello(sock: socket.socket, token: bytes, world: int) -> int | None:
    """The rank a new connection announces, or None when it does not show the token in time."""
    sock.settimeout(10.0)
    hello = bytearray(_HELLO.size)
    try:
        _recv_exact(sock, memoryview(hello))
    except PeerLost:
        return None
    rank, tok = _HELLO.unpack(hello)
    return rank if tok == token and 0 < rank < world else None


def _join(rank: int, world: int, address: dict[str, Any]) -> Hub:
    try:
        sock = socket.create_connection((address["host"], address["port"]), timeout=CONNECT_S)
    except OSError as exc:
        raise PeerLost(f"rank {rank} cannot reach rank 0 at {address['host']}:{address['port']} "
                       f"({exc})") from None
    _setup(sock)
    sock.sendall(_HELLO.pack(rank, bytes.fromhex(address["token"])))
    return Hub(rank, world, [sock])


def _setup(sock: socket.socket) -> None:
    sock.settimeout(SILENCE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --------------------------------------------------------------------------- one rank's training

class _Shard:
    """The training split as one rank sees it. ``fit`` draws the global batches (same seed and size
    on every rank); ``batch`` keeps this rank's contiguous part of each, and records in ``weight``
    how many loss terms that part holds (0 when a short last batch leaves this rank nothing: it then
    computes on one sample and its gradient is weighted 0)."""

    def __init__(self, split: Any, rank: int, world: int) -> None:
        self.split, self.rank, self.world = split, rank, world
        self.sample_shape = split.sample_shape
        self.weight = 0.0

    def __len__(self) -> int:
        return len(self.split)

    def batch(self, idx: np.ndarray, dtype: Any = np.float32, out: Any = None) -> tuple[Any, Any]:
        part = np.array_split(idx, self.world)[self.rank]
        xb, yb = self.split.batch(part if len(part) else idx[:1], dtype)
        self.weight = float(_loss_terms(yb, len(part))) if len(part) else 0.0
        return xb, yb


def _loss_terms(yb: Any, n: int) -> int:
    """What the loss averages over: real (non-zero) targets for token sequences, else samples."""
    if isinstance(yb, np.ndarray) and yb.ndim == 2 and yb.dtype.kind in "iu":
        return int(np.count_nonzero(yb))
    return n


class _Sync:
    """The two fit() hooks that keep the ranks together."""

    def __init__(self, hub: Hub, model: Any, opt: Any, shard: _Shard, every: int) -> None:
        self.hub, self.model, self.opt, self.shard, self.every = hub, model, opt, shard, every
        self.steps, self.window = 0, 0.0
        self.first_at: float | None = None

    def reduce_grads(self, grads: np.ndarray) -> None:
        """Before the optimizer step: K = 1 averages the gradients; K > 1 only counts samples."""
        w = self.shard.weight
        if self.every == 1:
            self.hub.average(grads, w)
        elif w == 0:
            grads.fill(0)
        self.window += w

    def on_batch(self, done: int, total: int) -> None:
        """After the optimizer step: K > 1 averages parameters and state every K steps and at the
        end of every epoch."""
        self.steps += 1
        if self.first_at is None:
            self.first_at = time.time()
        if self.every > 1 and (self.steps % self.every == 0 or done == total):
            self._average_params()

    def _average_params(self) -> None:
        params = self.model.params
        parts = [params, *self.opt.state().values()]     # momentum, accumulators, moments
        packed = np.concatenate(parts)
        self.hub.average(packed, self.window)
        offset = 0
        for part in parts:
            part[...] = packed[offset:offset + part.size]
            offset += part.size
        self.window = 0.0


def _train_rank(task: TrialTask, report: Callable[[int, float], bool], data: Any, hub: Hub,
                every: int, seen: list[dict[str, float]]) -> dict[str, Any]:
    """Train this rank's share of ``task``; on rank 0, what objective._train returns (and each
    epoch's metrics appended to ``seen`` as they come)."""
    import nets

    from hpsearch.objective import model_bytes, plain_metrics, prepare_run

    run = prepare_run(task, data)
    shard = _Shard(run.data.train, hub.rank, hub.world)
    sync = _Sync(hub, run.model, run.opt, shard, every)
    on_epoch_end = _epoch_end(task, report, hub, seen) if hub.rank == 0 else _follow(hub)
    if hub.world == 1:   # one rank: plain training, bit for bit
        hist = run.fit(on_epoch_end, None, sync.on_batch)
    else:
        hist = nets.fit(run.model, run.loss, run.opt, shard, run.data.val if hub.rank == 0 else None,
                        run.config, on_epoch_end, sync.reduce_grads, sync.on_batch)
    if hub.rank:
        return {}
    history = tuple(plain_metrics(h) for h in seen)
    value = float(history[-1][task.metric]) if history else None
    out = {"value": value, "history": history, "first_batch_at": sync.first_at}
    if hist.stopped:
        return {**out, "state": PRUNED, "reason": f"pruned after epoch {len(history)}"}
    if ":" in task.net:
        run.model.arch.setdefault("builder", task.net)
    return {**out, "state": COMPLETE, "weights": model_bytes(run.model)}


def _epoch_end(task: TrialTask, report: Callable[[int, float], bool], hub: Hub,
               seen: list[dict[str, float]]) -> Callable[[int, dict], bool]:
    """Rank 0's on_epoch_end: check the metric, report it, tell the other ranks the verdict."""
    from hpsearch.objective import objective_value

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append({"epoch": epoch, **metrics, "workers": hub.world, "sync_s": hub.seconds})
        hub.seconds = 0.0
        return hub.decide(bool(report(epoch, objective_value(task, epoch, metrics))))

    return on_epoch_end


def _follow(hub: Hub) -> Callable[[int, dict], bool]:
    """The other ranks' on_epoch_end: stop when rank 0 says so."""
    return lambda epoch, metrics: hub.decide()


def run_rank(task: TrialTask, data: Any, hub: Hub, every: int,
             report: Callable[[int, float], bool] | None = None) -> TrialResult | None:
    """One rank's part of a trial. Rank 0 returns the result (a failure in the net on any rank is a
    failed result, as for any trial); the others return None. A lost rank raises PeerLost.

    ``report`` (rank 0): ``report(epoch, value) -> prune?``; by default the task's pruning channel.
    """
    from hpsearch.objective import failure_reason, never_prune
    from hpsearch.pruning import Reporter

    started, t0 = time.time(), time.perf_counter()
    where = f"{socket.gethostname()}:{os.getpid()} rank 0 of {hub.world}"

    def done(**kw: Any) -> TrialResult:
        return TrialResult(trial_id=task.trial_id, number=task.number, started=started,
                           seconds=time.perf_counter() - t0, worker=where, **kw)

    seen: list[dict[str, float]] = []
    try:
        if report is None:
            report = (Reporter(task.channel, task.trial_id) if task.channel and not hub.rank
                      else never_prune)
    except Exception as exc:  # noqa: BLE001 - as objective.execute: the channel is unreachable
        hub.abort("rank 0 lost its pruning channel")
        return done(state=FAILED, reason=f"pruning channel unreachable: {failure_reason(exc)}",
                    traceback=traceback.format_exc(), lost=True)
    try:
        out = _train_rank(task, report, data, hub, every, seen)
    except PeerLost:
        hub.close()
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of the net is a value
        if isinstance(exc, PeerFailed):          # another rank's failure: "rank r: reason"
            reason, tb = str(exc), exc.tb
        else:                                     # rank 0 prefixes a peer's reason with its rank
            reason, tb = failure_reason(exc), traceback.format_exc()
        hub.abort(reason, tb)
        return None if hub.rank else done(state=FAILED, reason=reason, traceback=tb,
                                          **_partial(seen, task.metric))
    hub.close()
    if hub.rank:
        return None
    at = out.pop("first_batch_at", None)
    return done(first_batch_s=None if at is None else at - started, **out)


def _partial(seen: list[dict[str, float]], metric: str) -> dict[str, Any]:
    """The history (and last value) of a trial that failed after some epochs."""
    from hpsearch.objective import plain_metrics

    history = tuple(plain_metrics(h) for h in seen)
    value = history[-1].get(metric) if history else None
    return {"history": history, "value": value}


def _rank_partition(data_name: str | None, every: int, task: TrialTask,
                    rows: Iterable[int]) -> Iterator[bytes]:
    """The barrier task: meet the other ranks, train, and (rank 0) return the result."""
    from pyspark import BarrierTaskContext

    for _ in rows:             # consume the input, so Spark reuses the Python worker
        pass
    limit_threads()
    ctx = BarrierTaskContext.get()
    infos = ctx.getTaskInfos()
    rank, world = ctx.partitionId(), len(infos)
    host = infos[0].address.rsplit(":", 1)[0]
    data = worker_data(data_name)
    try:
        result = run_rank(task, data, rendezvous(rank, world, ctx.allGather, host), every)
    except PeerLost as exc:
        # the barrier job must fail so that the driver retries it: let Spark see an error
        raise RuntimeError(f"{LOST_TAG} rank {rank} of {world}: {exc}") from None
    if result is not None:
        yield result_row(result)


# --------------------------------------------------------------------------- the driver side

def _barrier_error(exc: BaseException) -> str:
    """One line for a failed barrier job: a rank's own words when it reported a lost peer."""
    text = str(exc)
    at = text.find(LOST_TAG + " rank ")
    if at >= 0:
        return " ".join(text[at:].split("\n", 1)[0].split())[:200]
    return job_error(exc)


class BarrierBackend(SparkBackend):
    """Each trial as one Spark barrier job of ``workers`` tasks (see the module docstring).

    Args:
        workers: ranks per trial (task slots each trial holds); at most the session's slots.
        sync_every: K, optimizer steps between averages (1: gradients every step).
        parallelism: trials at once; at most ``slots // workers`` (the default).
        retries: re-submissions of a trial's job when a rank was lost.
    """

    rungs_ok = False     # a data-parallel trial is one barrier job: no pruning between jobs

    def __init__(self, parallelism: int | None = None, data: Any = None, master: str | None = None,
                 spark: Any = None, study_name: str = "hpsearch", retries: int = 2,
                 workers: int = 2, sync_every: int = 1,
                 conf: Mapping[str, str] | None = None) -> None:
        # a local session gets parallelism x workers slots (all cores when parallelism is None);
        # each trial is one barrier job of its own (never slot mode)
        super().__init__(parallelism and parallelism * workers, data, master, spark, study_name,
                         retries, dispatch="jobs", conf=conf)
        if workers > self.slots:
            raise BackendError(f"{workers} data-parallel workers need {workers} task slots; the "
                               f"Spark session has {self.slots}",
                               "lower the workers, or use a master with more cores")
        self.workers, self.sync_every = int(workers), int(sync_every)
        most = max(1, self.slots // self.workers)
        if parallelism and parallelism > most:
            log.warning("parallelism %d x %d workers > %d task slots: running %d trial(s) at once",
                        parallelism, self.workers, self.slots, most)
        self.parallelism = min(parallelism or most, most)

    def _attempt(self, task: TrialTask) -> TrialResult:
        """One barrier job of ``workers`` tasks; rank 0 returns the result."""
        fn = functools.partial(_rank_partition, self._data_name, self.sync_every, task)
        name = f"{self.study_name} trial {task.number} ({self.workers} workers)"
        return self.collect(fn, name, tasks=self.workers, barrier=True)[0]

    _job_error = staticmethod(_barrier_error)
    lost_words = ("data-parallel job failed", "data-parallel job failed")
