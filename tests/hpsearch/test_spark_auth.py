"""A Spark standalone cluster with authentication and encryption on (issue 15, acceptance 3): master
and worker on 127.0.0.1 with ``spark.authenticate`` (a shared secret) and ``spark.network.crypto.enabled``,
started here on free ports; the sweep passes the same settings as ``execution.spark_conf``.
The secret never appears in the output or in MLflow; a wrong secret is one clean error (exit 2)."""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import HERE, REPO, TINY, free_port, lenet_dict, mlflow_runs, run_cli, sweep_runs, write_study

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

SECRET = "spark-secret-" + secrets.token_hex(6)


def _alive(ui_port: int) -> bool:
    import json
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
            return any(w.get("state") == "ALIVE" for w in json.load(r).get("workers", []))
    except OSError:
        return False


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory):
    """spark://127.0.0.1:PORT of a master + one 2-core worker that require SECRET and encryption."""
    pyspark = pytest.importorskip("pyspark")
    root = tmp_path_factory.mktemp("spark-auth")
    props = root / "spark-auth.conf"
    props.write_text(f"spark.authenticate true\nspark.authenticate.secret {SECRET}\n"
                     "spark.network.crypto.enabled true\n")
    home = os.path.dirname(pyspark.__file__)
    env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_CONF_DIR": str(root),
           "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    port, ui, wui = free_port(), free_port(), free_port()
    klass = os.path.join(home, "bin", "spark-class")
    procs = []
    try:
        for name, args in (("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                       "--port", str(port), "--webui-port", str(ui)]),
                           ("worker", ["org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                                       "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
                                       "--webui-port", str(wui), "--work-dir", str(root / "work")])):
            with (root / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(["bash", klass, *args, "--properties-file", str(props)],
                                              env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        deadline = time.monotonic() + 120
        while not _alive(ui):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail("the authenticated cluster did not come up:\n"
                            + (root / "worker.log").read_text()[-3000:])
            time.sleep(1)
        yield f"spark://127.0.0.1:{port}", root
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)


def _conf(secret: str) -> list[str]:
    return ["--set", "execution.spark_conf.spark.authenticate=true",
            "--set", f"execution.spark_conf.spark.authenticate.secret={secret}",
            "--set", "execution.spark_conf.spark.network.crypto.enabled=true"]


def test_sweep_on_a_cluster_with_authentication_and_encryption(auth_cluster, tmp_path: Path, env: dict) -> None:
    master, root = auth_cluster
    spec = write_study(tmp_path, "authspark", lenet_dict(execution={"backend": "spark"}, budget={"trials": 2}))
    proc = run_cli(["run", str(spec), "--master", master, "--parallelism", "2", *TINY, *_conf(SECRET)],
                   env, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finished = [line for line in proc.stdout.splitlines() if re.match(r"trial \d+ (complete|pruned)", line)]
    assert len(finished) == 2, proc.stdout
    runs = mlflow_runs(tmp_path, "authspark")
    assert len(runs) == 3
    assert SECRET not in proc.stdout + proc.stderr
    for run in runs:
        for value in [*run.data.params.values(), *run.data.tags.values()]:
            assert SECRET not in value
    parent = sweep_runs(runs)[0]
    assert "spark.authenticate.secret=***" in parent.data.params["overrides"]
    # the executors really ran under the cluster's worker (not a local fallback)
    assert any((root / "work").iterdir())


def test_a_wrong_secret_is_one_clean_error(auth_cluster, tmp_path: Path, env: dict) -> None:
    master, _ = auth_cluster
    spec = write_study(tmp_path, "badspark", lenet_dict(execution={"backend": "spark"}, budget={"trials": 1}))
    wrong = "not-the-" + secrets.token_hex(4)
    proc = run_cli(["run", str(spec), "--master", master, *TINY, *_conf(wrong)], env, tmp_path, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "cannot start Spark on " + master in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert wrong not in proc.stdout + proc.stderr and SECRET not in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["badspark.yaml"]      # no Optuna store
