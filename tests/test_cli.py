"""The command line and its JSON contract."""

import shutil
import subprocess
import sys

import pytest

import bayesmix
from bayesmix.cli import main
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
