"""Command line: ``bayesmix fit`` (summary + JSON contract) and ``bayesmix demo``.

    bayesmix fit --data FILE.csv --formula F [--family NAME] [--link NAME] [--method nuts]
                 [--categorical COL[=L1,L2,...]]... [--thresholds flexible|equidistant]
                 [--ddf satterthwaite|kenward-roger|residual|none]
                 [--chains N --draws N --tune N --seed S
                 --sampler NAME] [--json OUT]
    bayesmix demo

With ``--json -`` stdout holds the JSON document alone; the summary, progress bars and warnings go
to stderr. Non-finite numbers are written as null (JSON has none), with a warning.

Exit codes: 0 success, 2 a user mistake (the BayesmixError message is printed), 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings

from bayesmix.after.confint import confint
from bayesmix.datasets import load_dataset
from bayesmix.errors import BayesmixError, did_you_mean
from bayesmix.model import Model

METHODS = ("nuts", "reml", "ml", "laplace", "agq")


def _categorical(values: list[str] | None) -> dict | None:
    """``["Sex=Male,Female", "herd"]`` -> ``{"Sex": ["Male", "Female"], "herd": None}``."""
    if not values:
        return None
    out = {}
    for value in values:
        name, _, levels = value.partition("=")
        if not name:
            raise BayesmixError(f"--categorical '{value}': write COLUMN or COLUMN=LEVEL1,LEVEL2,...")
        out[name] = [level for level in levels.split(",")] if levels else None
    return out


def _read_data(path: str):
    import pandas as pd

    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise BayesmixError(f"--data '{path}': no such file.") from None
    except Exception as exc:
        raise BayesmixError(f"--data '{path}' could not be read as CSV: {exc}") from None


def _fit(args) -> int:
    if args.method not in METHODS:
        raise BayesmixError(
            f"Unknown method '{args.method}'.{did_you_mean(args.method, METHODS)} Methods: {', '.join(METHODS)}."
        )
    if args.nagq is not None and args.method not in ("laplace", "agq"):
        raise BayesmixError(f"--nagq is for --method laplace or agq (quadrature of a GLMM), not {args.method}.")
    to_stdout = args.json == "-"
    # with --json -, stdout is the JSON document's alone: everything else the run prints (the
    # summary, progress bars, notes of PyMC and the samplers) goes to stderr
    with _stdout_to_stderr() if to_stdout else contextlib.nullcontext():
        result, summary, noted = _run_fit(args)
        print(summary)
        for message in noted:
            print(f"bayesmix: warning: {message}", file=sys.stderr)
        text = json_text(result) if args.json else None
    if to_stdout:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    elif args.json:
        with open(args.json, "w") as handle:
            handle.write(text)
    return 0


def _run_fit(args) -> tuple[dict, str, list[str]]:
    """The fit: (the JSON contract, the printed summary, the warnings that are not in the summary)."""
    start = time.perf_counter()
    model = Model(
        args.formula,
        _read_data(args.data),
        family=args.family,
        link=args.link,
        categorical=_categorical(args.categorical),
        weights=args.weights,
        zi=args.zi,
        dispersion=args.dispersion,
        censored=args.censored,
        upper=args.upper,
        thresholds=args.thresholds,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.method == "nuts":
            model.sample(
                draws=args.draws,
                tune=args.tune,
                chains=args.chains,
                random_seed=args.seed,
                sampler=args.sampler,
                progressbar=not args.quiet,
            )
            result, summary = model.to_dict(), model.summary()
            source = model
        else:
            source = model.fit(method=args.method, nAGQ=args.nagq, ddf=args.ddf)
            result, summary = source.to_dict(), source.summary()
        if args.confint is not None:  # {name: [lower, upper]}, NaN (a Wald bound of a variance) as null
            table = confint(source, method=args.confint, seed=args.seed)
            result["confint"] = {
                name: [float(v) if math.isfinite(v) else None for v in (row.lower, row.upper)]
                for name, row in table.iterrows()
            }
    result["time_s"] = round(time.perf_counter() - start, 3)
    noted = {str(w.message) for w in caught if issubclass(w.category, UserWarning)}
    result["messages"] = result["messages"] + sorted(noted - set(result["messages"]))
    return result, summary, [message for message in sorted(noted) if message not in summary]


def json_text(result: dict) -> str:
    """The JSON contract as text. JSON has no NaN or infinity: a non-finite number is written as
    null, with a warning on stderr that names where (also added to ``messages``)."""
    clean, where = _finite(result, "")
    if where:
        message = (
            f"{len(where)} non-finite value(s) written as null in the JSON (JSON has no NaN or infinity): "
            f"{', '.join(where[:10])}{' ...' if len(where) > 10 else ''}"
        )
        print(f"bayesmix: warning: {message}", file=sys.stderr)
        if isinstance(clean.get("messages"), list):
            clean["messages"] = [*clean["messages"], message]
    return json.dumps(clean, indent=1, allow_nan=False)


def _finite(value, path: str):
    """``value`` with every NaN/infinity (numpy scalars and arrays included) replaced by None, and
    the paths of those replaced (``fixef.se[1]``)."""
    if isinstance(value, dict):
        where, out = [], {}
        for key, item in value.items():
            out[key], found = _finite(item, f"{path}.{key}" if path else str(key))
            where += found
        return out, where
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0):
        where, out = [], []
        for i, item in enumerate(value.tolist() if hasattr(value, "tolist") else value):
            item, found = _finite(item, f"{path}[{i}]")
            out.append(item)
            where += found
        return out, where
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None, [path]
    return value, []


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what is written to stdout to stderr: Python's ``sys.stdout`` and, when that is the
    process's own, file descriptor 1 too (what compiled code prints)."""
    sys.stdout.flush()
    saved = None
    if sys.stdout is sys.__stdout__ and sys.__stdout__ is not None and sys.__stderr__ is not None:
        try:
            out_fd, err_fd = sys.__stdout__.fileno(), sys.__stderr__.fileno()
            saved = os.dup(out_fd)
            os.dup2(err_fd, out_fd)
        except (OSError, ValueError, AttributeError):
            saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, out_fd)
            os.close(saved)


def _demo(args) -> int:
    formula = "Reaction ~ Days + (Days | Subject)"
    print(f"bayesmix demo: sleepstudy (lme4), {formula}, NUTS {args.chains} chains x {args.draws} draws\n")
    start = time.perf_counter()
    model = Model(formula, load_dataset("sleepstudy"))
    model.sample(draws=args.draws, tune=args.tune, chains=args.chains, random_seed=args.seed, progressbar=False)
    print(model.summary())
    print(f"\nTime: {time.perf_counter() - start:.1f} s (model building, compilation and sampling)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayesmix", description="lme4-style mixed models on PyMC")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fit a model to a CSV file; print the summary, write the JSON contract")
    fit.add_argument("--data", required=True, help="CSV file")
    fit.add_argument("--formula", required=True, help="lme4 formula, e.g. 'y ~ x + (x | g)'")
    fit.add_argument("--family", default="gaussian")
    fit.add_argument("--link", default=None)
    fit.add_argument("--zi", default=None, metavar="FORMULA", help="zero-inflation / hurdle formula, e.g. '~ x'")
    fit.add_argument("--dispersion", default=None, metavar="FORMULA", help="dispersion formula, e.g. '~ x'")
    fit.add_argument("--censored", default=None, metavar="COL", help="censoring codes: none, left, right, interval")
    fit.add_argument("--upper", default=None, metavar="COL", help="upper bounds of interval-censored rows")
    fit.add_argument(
        "--thresholds", default=None, metavar="STRUCTURE", help="an ordinal family's cut points: flexible, equidistant"
    )
    fit.add_argument(
        "--weights",
        default=None,
        metavar="COL",
        help="prior weights (lme4's weights=): a column or an expression of columns",
    )
    fit.add_argument("--method", default="nuts", help="nuts, reml, ml, laplace or agq")
    fit.add_argument(
        "--nagq",
        type=int,
        default=None,
        help="quadrature points per level for --method laplace/agq (glmer's nAGQ; 1 = Laplace, agq's default 10)",
    )
    fit.add_argument(
        "--ddf",
        default="satterthwaite",
        metavar="METHOD",
        help="df of an ML/REML fit's t tests (lmerTest's ddf): satterthwaite, kenward-roger (REML), residual, none",
    )
    fit.add_argument(
        "--confint",
        default=None,
        metavar="METHOD",
        help="add intervals for every parameter to the JSON: wald, profile (an LMM) or boot (1000 refits) for an "
        "exact fit; the posterior's for NUTS",
    )
    fit.add_argument(
        "--categorical",
        action="append",
        metavar="COL[=L1,L2,...]",
        help="treat COL as a factor, optionally with this level order (repeatable)",
    )
    for name, default in (("chains", 4), ("draws", 1000), ("tune", 1000)):
        fit.add_argument(f"--{name}", type=int, default=default)
    fit.add_argument("--seed", type=int, default=None)
    fit.add_argument("--sampler", default="auto", help="auto, pymc, nutpie, numpyro, blackjax")
    fit.add_argument("--json", default=None, metavar="OUT", help="write the JSON contract here ('-' for stdout)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(run=_fit)

    demo = sub.add_parser("demo", help="fit sleepstudy with NUTS and print the summary")
    demo.add_argument("--chains", type=int, default=4)
    demo.add_argument("--draws", type=int, default=1000)
    demo.add_argument("--tune", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=2024)
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BayesmixError as exc:
        print(f"bayesmix: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
