"""CLI pieces that need no sweep: validate, help, the progress views."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from conftest import STUDIES
from hpsearch.cli import LiveView, PlainLog, cli
from hpsearch.records import FAILED, TrialResult
from hpsearch.study import Progress


def test_validate_all_shipped_studies() -> None:
    result = CliRunner().invoke(cli, ["validate", *map(str, sorted(STUDIES.glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok ") == len(list(STUDIES.glob("*.yaml")))
    assert "note: data.path: textcnn needs a data path" in result.stdout


def test_every_command_has_help_with_examples() -> None:
    for command in ("run", "validate", "show", "best"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.stdout


def test_show_before_run_is_one_error_line(tmp_path: Path) -> None:
    spec = tmp_path / "lenet.yaml"
    spec.write_text((STUDIES / "lenet.yaml").read_text())
    result = CliRunner().invoke(cli, ["show", str(spec)])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no study store at ") and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.yaml"]


PROGRESS = Progress(done=3, target=12, running=2, complete=2, pruned=1, failed=0, best_value=0.25,
                    best_number=1, elapsed_s=10.0, eta_s=30.0, metric="val_loss")


def test_plain_log_line(capsys) -> None:
    PlainLog().finished(TrialResult(4, 4, FAILED, reason="diverged: loss became nan"), PROGRESS)
    line = capsys.readouterr().out
    assert line.startswith("trial 4 FAILED (diverged: loss became nan)")
    assert "3/12 done, 2 running, 1 pruned, 0 failed | best val_loss 0.25 (trial 1)" in line


def test_live_view_renders_counts_best_and_eta() -> None:
    view = LiveView("lenet")
    view.progress = PROGRESS
    text = view._render().plain
    assert "3/12 done" in text and "best val_loss 0.25" in text and "ETA" in text
