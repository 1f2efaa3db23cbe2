"""The detections table: docs/events.md carries the default config's, `randguard detections`
prints any config's."""

from __future__ import annotations

from pathlib import Path

import pytest

from randguard.process import cli, detection_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_the_docs_table_is_the_default_configs() -> None:
    doc = DOC.read_text()
    assert detection_table.splice(doc, detection_table.default_table()) == doc, (
        "docs/events.md's detections table is stale: run "
        "`.venv/bin/python -m randguard.process.detection_table docs/events.md`")


def test_the_command_prints_the_table_of_the_config_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[detections.persistence]]\nname = "account_modified"\nenabled = false\n\n'
                   '[[detections.persistence]]\nname = "my_dotfile"\nmitre = ["T1546"]\n'
                   'paths = ["~/.rgrc"]\npatterns = ["*.rg"]\n')
    cfg.chmod(0o600)
    assert cli.main(["detections", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    rows = [ln.split(" | ")[0].strip("| `") for ln in out.splitlines() if ln.startswith("| `")]
    assert "account_modified" not in rows and rows[-2:] == ["my_dotfile",
                                                            "suspicious_outbound_port"]
    assert ("| `my_dotfile` | `T1546` | all file events | under `~/.rgrc`; and matching `*.rg` |"
            in out)


def test_splice_needs_both_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        detection_table.splice("no markers here\n", "| x |\n")
