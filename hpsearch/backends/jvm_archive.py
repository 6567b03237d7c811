"""Class-data sharing for the driver JVM of a sweep: Spark's classes mapped from an archive.

A classic session's driver JVM loads thousands of classes from Spark's jars as it starts: 4.3-5.6 s
here (local[2], 2 cores), 5.4-6.7 s of CPU. With a dynamic AppCDS archive of those classes
(HotSpot's class-data sharing, ``-XX:SharedArchiveFile``) it started in 2.2-2.7 s, 2.6-3.3 s of CPU.

The archive (about 120 MB) is written once per pyspark version, Java and class-path settings, into
``$XDG_CACHE_HOME/hpsearch`` (``~/.cache/hpsearch``). Writing it is no part of a sweep: a JVM
started with ``-XX:ArchiveClassesAtExit`` started in 10 s and spent 10 s more writing the archive as
it exited. So a sweep that finds none starts as before and, as its process exits, leaves a
detached, low-priority process to write it (``python -m hpsearch.backends.jvm_archive``); the
next sweeps use it. The file is moved into place whole, its size in its name: a truncated archive
crashes the JVM (SIGBUS, checked), so one whose size differs is never used, and a JVM that does
not start with one is started again without it (the archive is removed). An archive of another
Java or class path is ignored by the JVM itself; its messages about that are off.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from hpsearch.storage import cache_dir

OPTION = "spark.driver.extraJavaOptions"
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
SETTINGS = ("spark.driver.extraClassPath", "spark.driver.memory")   # the JVM's class path and heap
ENVIRON = ("SPARK_HOME", "SPARK_CONF_DIR", "SPARK_DIST_CLASSPATH", "HADOOP_CONF_DIR", "YARN_CONF_DIR")
KEEP = 2              # archives kept (the newest): each pyspark or Java upgrade writes another
STALE_S = 900.0       # a build's lock older than this was left by a process that died
RETRY_S = 86400.0     # after a build that failed (a Java that cannot write archives), the next one


def _stem(conf: Mapping[str, str]) -> str | None:
    """The archive's name for this pyspark, Java and class path (None: no Java found)."""
    import pyspark
    home = os.environ.get("JAVA_HOME")
    if (java := shutil.which("java", path=os.path.join(home, "bin") if home else None)) is None:
        return None
    stat = os.stat(real := os.path.realpath(java))
    key = [pyspark.__version__, real, stat.st_size, stat.st_mtime_ns,
           [conf.get(k) for k in SETTINGS], [os.environ.get(k) for k in ENVIRON]]
    return f"spark-jvm-{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]}"


def _whole(stem: str | None) -> list[Path]:
    """The archive named ``stem`` if there is a whole one (its size as its name says)."""
    return [p for p in cache_dir().glob(f"{stem}.*.jsa") if p.name == f"{stem}.{p.stat().st_size}.jsa"]


def start(get_or_create: Callable[[dict[str, str]], Any], conf: dict[str, str]) -> Any:
    """``get_or_create(conf)``, its driver JVM started with the archive when there is one; when
    there is none, a detached process writes it once this process exits (unless a build failed
    in the last day: a Java that cannot write archives)."""
    stem = _stem(conf)
    found = _whole(stem)                                 # none for stem None
    failed = [p for p in cache_dir().glob(f"{stem}.failed") if time.time() - p.stat().st_mtime < RETRY_S]
    if stem is not None and not found and not failed:
        import atexit
        atexit.register(_build_later, stem, {k: conf[k] for k in SETTINGS if k in conf})
    if not found or any(c.isspace() or c in "'\"" for c in str(found[0])):   # none the options can hold
        return get_or_create(conf)
    try:
        return get_or_create({**conf, OPTION: f"{conf.get(OPTION, '')} -XX:SharedArchiveFile={found[0]} {QUIET}"})
    except Exception as exc:
        if "JAVA_GATEWAY_EXITED" not in str(exc):
            raise
        found[0].unlink(missing_ok=True)       # the JVM died with it: start without it
        # the session builder keeps the options of the first try: the caller's own (none: empty) again
        return get_or_create({**conf, OPTION: conf.get(OPTION, "")})


def _build_later(stem: str, settings: dict[str, str]) -> None:
    """Start the process that writes the archive, detached: it outlives this one (when it cannot
    start, the next sweep tries again)."""
    with suppress(OSError):
        proc = subprocess.Popen([sys.executable, "-m", "hpsearch.backends.jvm_archive", stem],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        proc.stdin.write(json.dumps(settings).encode())     # settings stay out of the command line
        proc.stdin.close()


def build(stem: str, settings: dict[str, str]) -> Path | None:
    """Write the archive ``stem``: a local session whose JVM archives its classes as it exits, one
    job, the JVM's end awaited, the file moved into place whole. None when another process is
    writing it or has written it, or the JVM failed (``<stem>.failed`` then says when). Only in a
    process of its own (``python -m hpsearch.backends.jvm_archive``): it ends that process's JVM."""
    cache, flags = cache_dir(), os.O_CREAT | os.O_EXCL | os.O_WRONLY
    lock, part = cache / f"{stem}.lock", cache / f"{stem}.{os.getpid()}.part"
    cache.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, flags)
    except FileExistsError:
        if time.time() - lock.stat().st_mtime < STALE_S:
            return None
        lock.unlink()
        fd = os.open(lock, flags)
    try:
        if _whole(stem):                       # written by a process that asked before this one
            return None
        for left in cache.glob(f"{stem}.*.part"):   # by a build that was killed (the lock is ours)
            left.unlink(missing_ok=True)
        from pyspark.sql import SparkSession
        builder = (SparkSession.builder.master("local[1]").appName("hpsearch JVM archive")
                   .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                   .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                   .config(OPTION, f"-XX:TieredStopAtLevel=1 -XX:ArchiveClassesAtExit={part} {QUIET}"))
        spark = builder.config(map=settings).getOrCreate()
        spark.sparkContext.parallelize(range(2), 2).map(str).collect()
        jvm = spark.sparkContext._gateway.proc
        jvm.stdin.close()            # the JVM stops Spark and exits when its Python side goes away
        if jvm.wait(600) != 0 or not part.is_file():
            raise RuntimeError("the JVM wrote no archive")
        os.replace(part, path := cache / f"{stem}.{part.stat().st_size}.jsa")
        for old in sorted(cache.glob("spark-jvm-*.jsa"), key=lambda p: p.stat().st_mtime)[:-KEEP]:
            old.unlink(missing_ok=True)
        return path
    except Exception:
        (cache / f"{stem}.failed").touch()
        return None
    finally:
        part.unlink(missing_ok=True)
        os.close(fd)
        lock.unlink(missing_ok=True)


if __name__ == "__main__":
    os.nice(10)
    build(sys.argv[1], json.loads(sys.stdin.read() or "{}"))
