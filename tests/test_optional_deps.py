"""bayesmix without its optional packages (issue 18, item 12).

A plain install must import, fit and sample even where JAX, numpyro, nutpie, blackjax or Dask cannot
be imported: ``sampler="auto"`` then falls back (numpyro -> nutpie -> pymc) with one note naming
what is missing and the pip command that installs it. The subprocesses below make those packages
unimportable (``sys.modules[name] = None``) before anything imports them.
"""

import json
import re
import subprocess
import sys
import warnings

import pytest

import bayesmix
from bayesmix.nuts import run as sampling

BLOCKED = ("jax", "jaxlib", "numpyro", "nutpie", "blackjax", "dask", "distributed")
SHIM = f"import sys\nBLOCKED = {BLOCKED!r}\nfor _name in BLOCKED:\n    sys.modules[_name] = None\n"
REML_DAYS = 10.467285959595987  # lme4's REML estimate of the Days coefficient on sleepstudy

WITHOUT_EXTRAS = (
    SHIM
    + """
import json, warnings
import bayesmix
from bayesmix.nuts import run as sampling

out = {"importable": [name for name in BLOCKED if sampling.importable(name)]}
model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
out["reml"] = model.fit("reml").to_dict()["fixef"]["estimate"]
try:
    model.sample(sampler="numpyro", chains=1, draws=10, tune=10)
except bayesmix.BayesmixError as error:
    out["numpyro_error"] = str(error)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.sample(chains=2, draws=100, tune=100, random_seed=1, progressbar=False, posterior_predictive=False)
out["notes"] = [str(w.message) for w in caught if issubclass(w.category, bayesmix.BayesmixWarning)]
out["attrs"] = {key: str(value) for key, value in model.idata.posterior.attrs.items() if key.startswith("bayesmix")}
out["fixef"] = model.to_dict()["fixef"]
out["modules"] = sorted(name for name, module in sys.modules.items() if module and name.split(".")[0] in BLOCKED)
print(json.dumps(out))
"""
)


def _run(code: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def without_extras():
    done = _run(WITHOUT_EXTRAS)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_imports_and_fits_reml_without_the_optional_packages(without_extras):
    assert without_extras["importable"] == [] and without_extras["modules"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
        here = model.fit("reml").to_dict()["fixef"]["estimate"]
    assert without_extras["reml"] == pytest.approx(here, rel=1e-8, abs=1e-8)


def test_samples_with_pymc_and_one_note_without_jax(without_extras):
    attrs = without_extras["attrs"]
    assert attrs["bayesmix_sampler"] == "pymc"
    # the collapsed gaussian model needs JAX to be fast: PyMC's NUTS samples the non-centred one
    assert attrs["bayesmix_parameterization"] == "noncentered"
    notes = [note for note in without_extras["notes"] if "not available" in note]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "jax" in notes[0] and "numpyro" in notes[0] and "pip install jax jaxlib numpyro" in notes[0]
    fixef = without_extras["fixef"]
    days = fixef["names"].index("Days")
    assert abs(fixef["estimate"][days] - REML_DAYS) < 3 * fixef["se"][days]


def test_explicit_numpyro_without_jax_names_the_install(without_extras):
    message = without_extras["numpyro_error"]
    assert "sampler='numpyro' needs jax" in message and "pip install jax jaxlib numpyro" in message


def test_demo_runs_without_the_optional_packages():
    code = SHIM + "from bayesmix.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    done = _run(code, "demo", "--chains", "2", "--draws", "100", "--tune", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Fixed effects" in done.stdout and "Days" in done.stdout
    assert "pip install jax jaxlib numpyro" in done.stderr


def _without(monkeypatch, *missing):
    monkeypatch.setattr(sampling, "importable", lambda module: module not in missing)


def test_auto_falls_back_in_order(monkeypatch):
    _without(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sampling.resolve_sampler("auto") == "numpyro"  # no note when the default is there
    _without(monkeypatch, "numpyro")
    with pytest.warns(bayesmix.BayesmixWarning, match=r"\(numpyro cannot be imported\); sampling with nutpie\."):
        assert sampling.resolve_sampler("auto") == "nutpie"
    _without(monkeypatch, "jax", "nutpie")
    with pytest.warns(bayesmix.BayesmixWarning, match="PyMC's own NUTS.*non-centred rather than collapsed"):
        assert sampling.resolve_sampler("auto") == "pymc"


@pytest.mark.parametrize(
    "sampler, missing, command",
    [
        ("numpyro", ("jax",), "pip install jax jaxlib numpyro"),
        ("blackjax", ("blackjax",), "pip install 'bayesmix[jax]'"),
        ("nutpie", ("nutpie",), "pip install 'bayesmix[nutpie]'"),
    ],
)
def test_an_explicit_sampler_that_cannot_be_imported_names_the_install(monkeypatch, sampler, missing, command):
    _without(monkeypatch, *missing)
    with pytest.raises(bayesmix.BayesmixError, match=f"needs {missing[0]}.*{re.escape(command)}"):
        sampling.resolve_sampler(sampler)


def test_parameterization_auto_keeps_the_collapsed_model_with_jax(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
    assert model.resolve_parameterization("auto") == "marginal"
    _without(monkeypatch, "jax")
    assert model.resolve_parameterization("auto") == "noncentered"
