"""A real Spark Connect server on loopback, started from the pyspark wheel (tests and benchmarks).

``ConnectServer(cores=2).start()`` runs ``spark-submit --class ...SparkConnectServer`` in the
foreground of a new process group (so ``stop`` ends it and its Python workers), bound to
127.0.0.1 on a free port, with its UI on another free port (``ui_url``). The server's Python
workers run this interpreter, with ``pythonpath`` in front (test recipes).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (the test suites' helper too, through conftest)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConnectServer:
    def __init__(self, cores: int = 2, pythonpath: list[str] | None = None,
                 conf: dict[str, str] | None = None) -> None:
        self.cores, self.pythonpath, self.conf = cores, pythonpath or [], conf or {}
        self.port, self.ui_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkdtemp(prefix="hpsearch-connect-")) / "server.log"

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self, timeout: float = 120.0) -> ConnectServer:
        import pyspark
        home = os.path.dirname(pyspark.__file__)
        env = dict(os.environ, SPARK_HOME=home, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
                   PYTHONPATH=os.pathsep.join([*self.pythonpath, os.environ.get("PYTHONPATH", "")]))
        conf = {"spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.connect.grpc.binding.port": str(self.port), "spark.ui.port": str(self.ui_port),
                "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                "spark.python.worker.reuse": "true", "spark.ui.showConsoleProgress": "false",
                **self.conf}
        args = [os.path.join(home, "bin", "spark-submit"), "--class", CLASS, "--name", "hpsearch-connect",
                "--master", f"local[{self.cores}]"]
        for k, v in conf.items():
            args += ["--conf", f"{k}={v}"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Spark Connect server exited: {self.log.read_text()[-2000:]}")
            if self._answers():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Spark Connect server not up in {timeout} s: {self.log.read_text()[-2000:]}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            urllib.request.urlopen(self.ui_url, timeout=2).close()
            return True
        except OSError:
            return False

    def jobs(self) -> list[dict]:
        """The server's Spark jobs, from its UI's REST API."""
        import json
        with urllib.request.urlopen(f"{self.ui_url}/api/v1/applications", timeout=10) as resp:
            app = json.load(resp)[0]["id"]
        with urllib.request.urlopen(f"{self.ui_url}/api/v1/applications/{app}/jobs", timeout=10) as resp:
            return json.load(resp)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> ConnectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
