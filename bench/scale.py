"""How many slots one driver keeps busy: hpsearch on local[P] sessions, against the anchors.

    .venv/bin/python bench/scale.py                 # P = 16 and 64, 2,000 trivial trials (~6 min)
    .venv/bin/python bench/scale.py --slots 16 --trivial 500 --no-anchors   # quicker
    .venv/bin/python bench/scale.py --json

(a) Slot efficiency: a local[P] session, every slot's Python worker started first (a warm-up sweep),
    then 20 x P one-second trials at parallelism P (ideal: 20 s). Each trial is a 784-4-10 MLP on 12
    images that also sleeps one second (bench/_fanout_recipes.py ``napper``), so P slots need far
    fewer than P cores: what is measured is the driver, not this machine's 2 cores. Prints the slot
    efficiency (ideal / wall), trials/s, and the driver's CPU per trial (this Python process, every
    thread: Optuna, MLflow, the channel, Spark's client; the JVM is not counted).
    The anchors run the same one-second trials (a function that sleeps) on the same session:
    hyperopt's SparkTrials (parallelism P) and MLflow's MlflowSparkStudy (n_jobs P), with 5 x P
    trials each (they are slower; "reasonable time").
(b) Throughput: ``--trivial`` trials (default 2,000) of the same MLP without the sleep, parallelism 2
    on local[2]: trials/s over the whole sweep and over its second half (sustained), driver CPU/trial.
(c) Ask time at 100, 1,000 and 5,000 trials: bench/ask_scale.py, when present (``--ask``).
hpsearch runs with its defaults (TPE sampler, its default study store, MLflow in SQLite) unless
--sampler/--storage say otherwise. ``--tracking server`` logs to an ``mlflow server`` on loopback (one
worker, SQLite behind it, started here) instead, as on a cluster with a tracking server: MLflow's
store then runs in the server's process, whose CPU per trial is printed beside the driver's; with
``--latency-ms D`` the driver reaches it through a proxy here that delays each way by D/2 ms, as a
server across a network would (D = 20: a tracking server in another zone or a managed one).
Every number is a wall time of the whole sweep, from the call to its return.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_spec(work: Path, net: str, trials: int, parallelism: int, name: str, args):
    import hpsearch

    return hpsearch.spec_from_dict({
        "name": name, "net": f"_fanout_recipes:{net}", "fixed": {"epochs": 1},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                         "momentum": {"type": "float", "low": 0.0, "high": 0.9},
                         "batch_size": {"choices": [4, 6, 12]},
                         "hidden": {"type": "int", "low": 2, "high": 8}},
        "objective": {"metric": "val_loss"}, "sampler": {"name": args.sampler}, "pruner": {"name": "none"},
        "budget": {"trials": trials},
        "execution": {"backend": "spark", "parallelism": parallelism, "dispatch": args.dispatch},
        "storage": args.storage.format(dir=work, name=name) if args.storage else None,
        "tracking": {"uri": args.tracking_uri or f"sqlite:///{work / 'mlflow.db'}", "plots": False},
    }, name=name, base_dir=work)


def sweep(spark, work: Path, net: str, trials: int, parallelism: int, name: str, args,
          extend: int | None = None) -> dict:
    """Run the study (``extend``: that many trials more on an existing one); its rates."""
    import hpsearch

    spec = make_spec(work, net, trials, parallelism, name, args)
    s0, c0, t0 = server_cpu(args), cpu(), time.perf_counter()
    summary = hpsearch.run_study(spec, spark=spark, extend=extend)
    wall, used, served = time.perf_counter() - t0, cpu() - c0, server_cpu(args) - s0
    n = extend or trials
    assert summary.counts.get("complete", 0) == n, summary.counts
    out = {"wall_s": round(wall, 2), "trials_per_s": round(n / wall, 1),
           "driver_cpu_ms_per_trial": round(used / n * 1e3, 1)}
    if args.server is not None:
        out["server_cpu_ms_per_trial"] = round(served / n * 1e3, 1)
    return out


def start_server(work: Path) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on a free loopback port (one worker, SQLite behind it); its URL."""
    import socket
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = work / "server"
    root.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        cwd=root, stdout=(root / "server.log").open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},   # no GenAI job runner:
        start_new_session=True)                    # its processes (8 of 10) are not the tracking server
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, 9)          # the server and its workers (a session of their own)
    raise SystemExit("the MLflow server did not start: " + (root / "server.log").read_text()[-2000:])


def delay_proxy(url: str, latency_s: float) -> str:
    """A loopback TCP proxy to ``url`` that holds every chunk latency_s / 2 each way (a network's
    round trip); its URL. Runs on a daemon thread until the process ends."""
    import asyncio
    import threading
    from urllib.parse import urlparse
    target = urlparse(url)
    ready: dict = {}

    async def pipe(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                await asyncio.sleep(latency_s / 2)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready["port"] = server.sockets[0].getsockname()[1]
        await server.serve_forever()

    threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()
    while "port" not in ready:
        time.sleep(0.01)
    return f"http://127.0.0.1:{ready['port']}"


def server_cpu(args) -> float:
    """CPU seconds of the MLflow server's process group (the server and its workers) so far."""
    if args.server is None:
        return 0.0
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        try:
            fields = (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == args.server.pid:        # its process group
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _sleep_square(params):
    time.sleep(1.0)
    return params["x"] ** 2


def hyperopt_sweep(spark, trials: int, parallelism: int) -> float:
    from hyperopt import SparkTrials, fmin, hp, tpe

    t0 = time.perf_counter()
    fmin(_sleep_square, {"x": hp.uniform("x", -1, 1)}, algo=tpe.suggest, max_evals=trials,
         trials=SparkTrials(parallelism=parallelism, spark_session=spark), show_progressbar=False,
         rstate=__import__("numpy").random.default_rng(0))
    return time.perf_counter() - t0


def mlflow_spark_sweep(spark, work: Path, trials: int, parallelism: int, name: str) -> float:
    import mlflow
    from mlflow.optuna.storage import MlflowStorage
    from mlflow.pyspark.optuna.study import MlflowSparkStudy

    def objective(trial):
        x = trial.suggest_float("x", -1, 1)
        time.sleep(1.0)
        return x * x

    uri = f"sqlite:///{work / 'mlflow_anchor.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.set_experiment(name)
    study = MlflowSparkStudy(name, MlflowStorage(experiment_id=exp.experiment_id), mlflow_tracking_uri=uri)
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=parallelism)
    return time.perf_counter() - t0


def anchor(out: dict, key: str, fn, ideal: float) -> None:
    log(f"{key} ...")
    try:
        wall = fn()
        out[key] = {"wall_s": round(wall, 2), "efficiency": round(ideal / wall, 3)}
    except Exception as exc:  # noqa: BLE001 - an anchor that breaks is reported, not fatal
        out[key] = f"error: {type(exc).__name__}: {exc}"[:300]
    log(f"  {out[key]}")


def slots_case(out: dict, p: int, work: Path, args) -> None:
    from hpsearch.backends.spark import spark_session
    spark = spark_session(f"local[{p}]", app_name=f"hpsearch-scale-{p}")
    log(f"local[{p}]: warming {p} Python workers ...")
    sweep(spark, work, "tiny", 2 * p, p, f"warm-{p}", args)
    n = args.rounds * p
    log(f"local[{p}]: {n} one-second trials ...")
    r = sweep(spark, work, "napper", n, p, f"slots-{p}", args)
    r["efficiency"] = round(args.rounds / r["wall_s"], 3)
    out[f"slots{p}/hpsearch"] = r
    log(f"  {r}")
    if args.anchors:
        m = 5 * p
        anchor(out, f"slots{p}/hyperopt_sparktrials", lambda: hyperopt_sweep(spark, m, p), 5.0)
        anchor(out, f"slots{p}/mlflow_spark_study",
               lambda: mlflow_spark_sweep(spark, work, m, p, f"ms-{p}"), 5.0)
    spark.stop()


def trivial_case(out: dict, work: Path, args) -> None:
    from hpsearch.backends.spark import spark_session
    spark = spark_session("local[2]", app_name="hpsearch-scale-trivial")
    sweep(spark, work, "tiny", 4, 2, "warm-trivial", args)
    n = args.trivial
    log(f"{n} trivial trials at parallelism 2 ...")
    half = sweep(spark, work, "tiny", n // 2, 2, "trivial", args)
    # the same study extended by its second half: the rate once it already holds n/2 trials
    out["trivial/first_half"] = half
    second = sweep(spark, work, "tiny", n // 2, 2, "trivial", args, extend=n - n // 2)
    out["trivial/second_half"] = second
    total = half["wall_s"] + second["wall_s"]
    out["trivial/hpsearch"] = {"trials": n, "wall_s": round(total, 2), "trials_per_s": round(n / total, 1),
                               "sustained_trials_per_s": second["trials_per_s"],
                               "driver_cpu_ms_per_trial": second["driver_cpu_ms_per_trial"]}
    log(f"  {out['trivial/hpsearch']}")
    spark.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", default="16,64", help="comma-separated P of local[P] (empty: none)")
    ap.add_argument("--rounds", type=int, default=20, help="one-second trials per slot")
    ap.add_argument("--trivial", type=int, default=2000, help="trivial trials at parallelism 2 (0: none)")
    ap.add_argument("--no-anchors", dest="anchors", action="store_false")
    ap.add_argument("--ask", action="store_true", help="also run bench/ask_scale.py")
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--dispatch", default="auto", choices=("auto", "jobs"))
    ap.add_argument("--storage", help="Optuna storage URL; {dir} and {name} are filled in "
                                      "(default: hpsearch's default store)")
    ap.add_argument("--tracking", default="sqlite", choices=("sqlite", "server"),
                    help="hpsearch's MLflow: a SQLite file, or an mlflow server started here")
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="with --tracking server: round-trip delay added between driver and server")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hpsearch-scale-"))
    args.server, args.tracking_uri = None, None
    if args.tracking == "server":
        args.server, args.tracking_uri = start_server(work)
        if args.latency_ms:
            args.tracking_uri = delay_proxy(args.tracking_uri, args.latency_ms / 1e3)
    try:
        run(args, work)
    finally:
        if args.server is not None:
            os.killpg(args.server.pid, 15)
            args.server.wait()


def run(args, work: Path) -> None:
    out: dict = {"sampler": args.sampler, "dispatch": args.dispatch, "storage": args.storage or "default",
                 "tracking": args.tracking + (f" +{args.latency_ms:g} ms" if args.latency_ms else "")}
    for p in [int(x) for x in args.slots.split(",") if x]:
        slots_case(out, p, work, args)
    if args.trivial:
        trivial_case(out, work, args)
    if args.ask and (HERE / "ask_scale.py").exists():
        out["ask"] = subprocess.run([sys.executable, str(HERE / "ask_scale.py")], check=False,
                                    capture_output=True, text=True).stdout
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"hpsearch sampler {out['sampler']}, dispatch {out['dispatch']}, storage {out['storage']}, "
          f"MLflow {out['tracking']}")
    for key, value in out.items():
        if "/" in key:
            print(f"  {key:32s} {value}")
    if "ask" in out:
        print(out["ask"])


if __name__ == "__main__":
    main()
