"""The driver JVM's class-data archive (hpsearch.backends.jvm_archive), with real JVMs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.spark]

SESSION = """
import json, sys
from hpsearch.backends.spark import spark_session
from hpsearch.study import DRIVER_JVM
spark = spark_session("local[1]", conf=DRIVER_JVM if sys.argv[1] == "sweep" else {}, archive=True)
assert spark.sparkContext.parallelize(range(3), 3).map(str).collect() == ["0", "1", "2"]
maps = open(f"/proc/{spark.sparkContext._gateway.proc.pid}/maps").read().splitlines()
print(json.dumps(sorted({line.split()[-1] for line in maps if line.endswith(".jsa")})))
"""


def _mapped(cache: Path, env: dict, cwd: Path, kind: str = "sweep") -> list[str]:
    """Start a sweep's kind of session (``predict``: one without driver Java options of its own) in a
    new process: the archives of ``cache`` its JVM maps."""
    out = subprocess.run([sys.executable, "-c", SESSION, kind], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return [p for p in json.loads(out.stdout.splitlines()[-1]) if p.startswith(str(cache))]


def test_the_driver_jvm_maps_sparks_classes_from_an_archive_written_after_the_first_session(
        tmp_path: Path, env: dict) -> None:
    cache = tmp_path / "cache"
    env = {**env, "XDG_CACHE_HOME": str(cache)}
    # what a build killed 20 minutes ago left: its lock and part of its file
    stem = subprocess.run([sys.executable, "-c", "from hpsearch.backends.jvm_archive import _stem; from "
                           "hpsearch.study import DRIVER_JVM; print(_stem(DRIVER_JVM))"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    (cache / "hpsearch").mkdir(parents=True)
    for left in (f"{stem}.lock", f"{stem}.12345.part"):
        (cache / "hpsearch" / left).write_bytes(b"x" * 1000)
        os.utime(cache / "hpsearch" / left, (time.time() - 1200, time.time() - 1200))
    # no archive yet: the session starts as before, and one is written once its process exited
    assert _mapped(cache, env, tmp_path) == []
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not (list(cache.glob("hpsearch/spark-jvm-*.jsa"))
                                               and not list(cache.glob("hpsearch/*.lock"))):
        time.sleep(1)
    (archive,) = cache.glob("hpsearch/spark-jvm-*.jsa")
    assert archive.name.endswith(f".{archive.stat().st_size}.jsa")      # whole: its size in its name
    assert not list(cache.glob("hpsearch/*.part")) and not list(cache.glob("hpsearch/*.lock"))
    # the next session's JVM maps it
    assert _mapped(cache, env, tmp_path) == [str(archive)]
    # a truncated archive under a name that claims its size crashes the JVM: the session starts
    # again without it, and it is gone (a sweep's session, and one without Java options of its own)
    half = archive.stat().st_size // 2
    bad = archive.with_name(archive.name.replace(f".{archive.stat().st_size}.", f".{half}."))
    with archive.open("rb") as src:
        truncated = src.read(half)
    archive.unlink()
    for kind in ("sweep", "predict"):
        bad.write_bytes(truncated)
        assert _mapped(cache, env, tmp_path, kind) == []
        assert not bad.exists()


def test_a_failed_build_leaves_a_mark_and_no_sweep_asks_for_another_for_a_day(tmp_path: Path, env: dict,
                                                                              monkeypatch) -> None:
    from hpsearch.backends import jvm_archive
    from hpsearch.study import DRIVER_JVM
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    env = {**env, "XDG_CACHE_HOME": str(tmp_path)}
    stem = jvm_archive._stem(DRIVER_JVM)
    # a JVM that cannot start (as a Java that cannot write archives): in a process of its own
    code = ("import sys\nfrom hpsearch.backends.jvm_archive import build\n"
            "print(build(sys.argv[1], {'spark.driver.memory': 'no-size'}))")
    out = subprocess.run([sys.executable, "-c", code, stem], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines()[-1] == "None", out.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "hpsearch").iterdir()) == [f"{stem}.failed"]   # no lock, no part
    asked: list = []
    monkeypatch.setattr("atexit.register", lambda fn, *args: asked.append(args))
    assert jvm_archive.start(lambda conf: conf, dict(DRIVER_JVM)) == DRIVER_JVM     # no archive: as it was
    assert asked == []
    day_ago = time.time() - jvm_archive.RETRY_S - 60
    os.utime(tmp_path / "hpsearch" / f"{stem}.failed", (day_ago, day_ago))
    assert jvm_archive.start(lambda conf: conf, dict(DRIVER_JVM)) == DRIVER_JVM
    assert asked == [(stem, {})]
