"""An unreachable tracking server fails the run before anything is written."""
from __future__ import annotations

from pathlib import Path

from conftest import free_port, lenet_dict, run_cli, write_study


def test_unreachable_tracking_server_is_one_error_and_nothing_written(tmp_path: Path, env: dict) -> None:
    spec = write_study(tmp_path, "trk", lenet_dict(budget={"trials": 1}))
    env = {**env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    proc = run_cli(["run", str(spec), "--tracking-uri", f"http://127.0.0.1:{free_port()}"], env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trk.yaml"]
