"""Every example script runs (quickly: few draws) so none can rot."""

import runpy
import sys
import warnings
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    assert {p.stem for p in EXAMPLES} >= {"sleepstudy", "cbpp", "penicillin", "pastes", "bayes_vs_reml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(path, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # whatever an example writes lands here, not in the checkout
    monkeypatch.setattr(sys, "argv", [str(path), "--quick"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few draws: low-ESS warnings are expected
        runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "Fixed effects" in out or "posterior mean" in out
    for line in out.splitlines():  # a figure an example says it wrote exists
        if "written to" in line:
            assert (tmp_path / line.split("written to ")[1].strip()).stat().st_size > 10_000
