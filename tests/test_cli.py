"""The command line and its JSON contract."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import bayesmix
from bayesmix.cli import json_text, main
from tests.helpers import CONTRACT, QUICK_NUTS, fit_via_cli


@pytest.fixture
def orthodont_csv(tmp_path):
    path = tmp_path / "orthodont.csv"
    bayesmix.load_dataset("Orthodont").to_csv(path, index=False)
    return path


def test_fit_writes_the_json_contract(tmp_path, capsys):
    code, result = fit_via_cli(
        tmp_path,
        "Orthodont",
        "distance ~ age + Sex + (1 | Subject)",
        "--categorical",
        "Sex=Male,Female",
        *QUICK_NUTS,
        "--seed",
        "3",
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Random effects" in printed and "Sex[Female]" in printed
    assert list(result) == CONTRACT
    assert result["fixef"]["names"] == ["Intercept", "age", "Sex[Female]"]
    assert result["ngrps"] == {"Subject": 27} and result["nobs"] == 108
    assert result["family"] == "gaussian" and result["link"] == "identity" and result["method"] == "nuts"
    assert result["varcorr"][0]["group"] == "Subject" and result["varcorr"][0]["corr"] == [[1.0]]
    assert len(result["ranef"]["Subject"]["condval"]["Intercept"]) == 27
    assert 0 < result["fixef"]["estimate"][1] < 1.5  # growth per year (lme4: 0.66)
    assert result["sigma"] > 0 and result["family_params"] is None


def test_binomial_fit_from_cli(tmp_path):
    code, result = fit_via_cli(
        tmp_path,
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "--family",
        "binomial",
        "--categorical",
        "period",
        *QUICK_NUTS,
        "--seed",
        "1",
    )
    assert code == 0
    assert result["fixef"]["names"] == ["Intercept", "period[2]", "period[3]", "period[4]"]
    assert result["sigma"] is None and result["link"] == "logit"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (
            ["--formula", "distance ~ agee + (1 | Subject)"],
            "Unknown column 'agee' in formula 'distance ~ agee + (1 | Subject)'. Did you mean 'age'",
        ),
        (["--formula", "distance ~ age + (1 | Subject)", "--method", "nut"], "Unknown method 'nut'"),
        (["--formula", "distance ~ age + (1 | Subject)", "--family", "gausian"], "Did you mean 'gaussian'"),
        (["--formula", "distance ~ age + (1 | Subject"], "never closed"),
    ],
)
def test_user_errors_exit_2_with_the_message(orthodont_csv, capsys, args, fragment):
    assert main(["fit", "--data", str(orthodont_csv), *args]) == 2
    assert fragment in capsys.readouterr().err


def test_reml_from_cli(tmp_path):
    code, result = fit_via_cli(tmp_path, "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--method", "reml")
    assert code == 0
    assert list(result) == CONTRACT
    assert result["method"] == "reml" and result["REMLcrit"] == pytest.approx(1743.628271959952, rel=1e-9)
    assert result["fixef"]["estimate"] == pytest.approx([251.40510484848497, 10.467285959595987], rel=1e-9)


def test_missing_file(capsys):
    assert main(["fit", "--data", "no/such.csv", "--formula", "y ~ 1 + (1 | g)"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_demo_runs_as_a_command():
    exe = shutil.which("bayesmix") or sys.executable
    cmd = [exe] if exe.endswith("bayesmix") else [exe, "-m", "bayesmix.cli"]
    done = subprocess.run(
        [*cmd, "demo", "--chains", "2", "--draws", "200", "--tune", "200"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "Reaction ~ Days + (Days | Subject)" in done.stdout
    assert "Subject" in done.stdout and "Days" in done.stdout and "Fixed effects" in done.stdout


def _csv(tmp_path, dataset):
    path = tmp_path / f"{dataset}.csv"
    bayesmix.load_dataset(dataset).to_csv(path, index=False)
    return str(path)


SLEEP = ("sleepstudy", "Reaction ~ Days + (Days | Subject)")
CBPP = ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "--family", "binomial")


@pytest.mark.parametrize(
    "case, method, extra",
    [
        (SLEEP, "reml", ()),
        (SLEEP, "ml", ("--quiet",)),
        (CBPP + ("--categorical", "period"), "laplace", ()),
        (SLEEP, "nuts", ("--chains", "2", "--draws", "100", "--tune", "100", "--seed", "1")),
    ],
)
def test_json_to_stdout_is_the_only_thing_on_stdout(tmp_path, capsys, case, method, extra):
    dataset, formula, *options = case
    argv = ["fit", "--data", _csv(tmp_path, dataset), "--formula", formula, *options, "--method", method, *extra]
    assert main([*argv, "--json", "-"]) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)  # one JSON document, nothing else
    assert list(result) == CONTRACT and result["method"] == method
    assert "Random effects" in printed.err and "Fixed effects" in printed.err  # the summary went to stderr
    assert main(argv) == 0  # without --json the summary is on stdout, as before
    assert "Random effects" in capsys.readouterr().out


def test_json_to_stdout_of_the_command(tmp_path):
    """A real process: compiled code, progress bars and warnings cannot reach stdout either."""
    exe = shutil.which("bayesmix")
    cmd = [exe] if exe else [sys.executable, "-m", "bayesmix.cli"]
    done = subprocess.run(
        [*cmd, "fit", "--data", _csv(tmp_path, "sleepstudy"), "--formula", SLEEP[1], "--method", "reml", "--json", "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["fixef"]["estimate"] == pytest.approx([251.40510484848497, 10.467285959595987], rel=1e-9)
    assert "Linear mixed model fit by REML" in done.stderr


def test_non_finite_numbers_are_written_as_null_with_a_warning(tmp_path, capsys, monkeypatch):
    """JSON has no NaN: a fit that leaves one (an optimiser stopped at its evaluation limit) writes null."""
    from bayesmix.mixedfit import MixedFit

    original = MixedFit.to_dict

    def with_nan(self):
        result = original(self)
        result["AIC"] = float("nan")
        result["fixef"]["se"] = [np.float64("inf"), result["fixef"]["se"][1]]
        return result

    monkeypatch.setattr(MixedFit, "to_dict", with_nan)
    argv = ["fit", "--data", _csv(tmp_path, "sleepstudy"), "--formula", SLEEP[1], "--method", "reml"]
    assert main([*argv, "--json", "-"]) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)
    assert result["AIC"] is None and result["fixef"]["se"][0] is None and result["fixef"]["se"][1] > 0
    assert "2 non-finite value(s) written as null" in printed.err and "fixef.se[0], AIC" in printed.err
    assert any("written as null" in message for message in result["messages"])
    out = tmp_path / "fit.json"
    assert main([*argv, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["AIC"] is None


def test_json_text_is_strict_json():
    text = json_text(
        {"a": np.float64("nan"), "b": [np.int64(2), -np.inf], "c": np.array([1.0, np.nan]), "messages": []}
    )
    assert json.loads(text) == {
        "a": None,
        "b": [2, None],
        "c": [1.0, None],
        "messages": [json.loads(text)["messages"][0]],
    }
    json.dumps(json.loads(text), allow_nan=False)
