"""The MLflow UI in a real browser: `mlflow server` on 127.0.0.1 with a SQLite store, a 4-trial sweep
logged to it over HTTP, and headless Chromium (Debian's, driven by Playwright) on the experiment's
runs (opened on its runs table, with no experiment-type prompt), the compare-runs view of the trials,
and a plot of the sweep's parent run.

Needs: pip install playwright (no `playwright install`: the browser is /usr/bin/chromium, from
`apt-get install chromium`). Screenshots: the test's tmp folder, and /tmp/hpsearch-ui*.png."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from conftest import (free_port, lenet_dict, mlflow_server_args, run_cli, start_server, stop_server,
                      sweep_runs, write_study)

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")]


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """``mlflow server`` on a free loopback port, SQLite store and artifacts under tmp_path/server."""
    port, root = free_port(), tmp_path / "server"
    root.mkdir()
    proc = start_server(mlflow_server_args(root, port), f"http://127.0.0.1:{port}/health", root / "server.log",
                        timeout=90)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc, grace_s=3)                    # the server and its uvicorn worker


def _format_metric(v: float) -> str:
    """MLflow UI's Utils.formatMetric (3 decimals below 10), as JavaScript prints it."""
    if v == 0:
        return "0"
    digits = 3 if abs(v) < 10 else 2 if abs(v) < 100 else 1
    text = repr(math.floor(v * 10 ** digits + 0.5) / 10 ** digits)
    return text[:-2] if text.endswith(".0") else text


def _close_assistant(page) -> None:
    """The MLflow Assistant side panel covers a third of the page; close it when it is there."""
    close = page.locator("button[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()


def test_mlflow_ui_shows_the_sweep_the_trials_params_and_objective(
        tmp_path: Path, env: dict, mlflow_server: str) -> None:
    spec = write_study(tmp_path, "lenet", lenet_dict(pruner="none"))
    proc = run_cli(["run", str(spec), "--trials", "4", "--tracking-uri", mlflow_server,
                    "--set", "data.limit=300", "--set", "fixed.epochs=2"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr

    from mlflow import MlflowClient
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("lenet")
    runs = client.search_runs([exp.experiment_id])
    parent = sweep_runs(runs)[0]
    trials = sorted((r for r in runs if r.data.tags.get("hpsearch.kind") == "trial"),
                    key=lambda r: int(r.data.tags["hpsearch.trial_number"]))
    assert len(trials) == 4 and all("objective" in r.data.metrics for r in trials)
    base = f"{mlflow_server}/#/experiments/{exp.experiment_id}"

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})

        # the experiment, opened at its root: the runs table at once, with no "Choose experiment type"
        # prompt. The experiment is tagged mlflow.experimentKind=custom_model_development (MLflow 3.0-3.x
        # UIs read it); MLflow 3.17's UI takes the view from its "GenAI | Model training" switch
        # instead (remembered by the browser, GenAI at first), which the link sets
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
        page.goto(f"{base}?workflowType=machine_learning")
        page.get_by_text(parent.info.run_name).first.wait_for(timeout=60000)
        _close_assistant(page)
        assert "/runs" in page.url, page.url
        for prompt in ("Choose experiment type", "automatically detected the experiment type"):
            assert page.get_by_text(prompt).count() == 0, prompt
        table = page.inner_text("body")
        assert "mnist_sample[:300]" in table and "best_model" in table   # dataset input, MLflow Model
        page.screenshot(path=tmp_path / "experiment-root.png")
        # the sweep's parent run, expanded to its four trials
        row = page.locator("[role=row]", has=page.get_by_text(parent.info.run_name))
        row.locator("button[data-component-id*=runnamecellrenderer]").first.click()
        for r in trials:
            page.get_by_text(r.info.run_name, exact=True).first.wait_for(timeout=30000)
        page.screenshot(path=tmp_path / "experiment.png")

        # compare-runs of the child runs: every trial's params, and the objective metric
        ids = [r.info.run_id for r in trials]
        page.goto(f"{mlflow_server}/#/compare-runs?runs={json.dumps(ids)}"
                  f"&experiments={json.dumps([exp.experiment_id])}")
        page.get_by_text("Comparing 4 Runs").wait_for(timeout=60000)
        page.get_by_text("objective", exact=True).first.wait_for(timeout=30000)
        _close_assistant(page)
        page.set_viewport_size({"width": 1600, "height": 2000})   # the whole table in one shot
        text = page.inner_text("body")
        for r in trials:
            assert r.info.run_name in text and r.info.run_id in text
            for key in ("lr", "batch_size", "hidden", "momentum"):
                assert f"{key}\t" in text and r.data.params[key] in text, (key, r.data.params[key])
            assert _format_metric(r.data.metrics["objective"]) in text
        assert "val_loss" in text
        page.get_by_text("Parameters", exact=True).first.scroll_into_view_if_needed()
        page.screenshot(path=tmp_path / "compare.png")

        # a plot of the sweep, from the parent run's artifacts, drawn by the browser
        page.goto(f"{base}/runs/{parent.info.run_id}/artifacts/plots/optimization_history.png")
        image = page.locator('img[alt="plots/optimization_history.png"]').first
        image.wait_for(timeout=30000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle(),
                               timeout=30000)
        page.screenshot(path=tmp_path / "plot.png")
        browser.close()

    for name in ("experiment-root", "experiment", "compare", "plot"):
        shot = tmp_path / f"{name}.png"
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    shutil.copy(tmp_path / "compare.png", "/tmp/hpsearch-ui.png")
    shutil.copy(tmp_path / "experiment.png", "/tmp/hpsearch-ui-experiment.png")
    shutil.copy(tmp_path / "plot.png", "/tmp/hpsearch-ui-plot.png")
    shutil.copy(tmp_path / "experiment-root.png", "/tmp/hpsearch-ui-experiment-root.png")
