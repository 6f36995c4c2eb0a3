"""Known covariances between a grouping factor's levels: ``Model(..., cov={"species": A})``.

brms's ``(1 | gr(species, cov = A))``, lme4qtl's ``relmatLmer``, MCMCglmm's ``ginverse``: the
levels' effects are N(0, s^2 A) with A given (a phylogeny's or pedigree's correlation matrix). The
term ``(1 | species)`` becomes one block of one level whose terms are the levels' indicators
(``0 + species``) and whose covariance is s^2 A (glmmTMB's ``propto``;
:class:`bayesmix.design.covariance.KnownCovariance`): both engines then take it as any structure.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from bayesmix.design.formula import FormulaSpec
from bayesmix.errors import BayesmixError

KNOWN_SUFFIX = " (known)"  # the one-level grouping column of a known-covariance block


def with_known_covariances(spec: FormulaSpec, cov) -> FormulaSpec:
    """``spec`` with each ``(1 | g)`` whose g ``cov`` names, and each brms ``(1 | gr(g, cov = A))``
    whose A it names, turned into a known-covariance block."""
    named = [term for term in spec.random if term.cov_key is not None]
    if cov is None and named:
        term = named[0]
        raise BayesmixError(
            f"gr({term.group}, cov = {term.cov_key}) names a matrix; pass it as cov={{'{term.cov_key}': A}}."
        )
    if cov is None:
        return spec
    if not isinstance(cov, dict):
        raise BayesmixError("cov= takes a dict {grouping column: matrix}, e.g. cov={'species': A}.")
    random, used = [], set()
    for term in spec.random:
        key = term.cov_key or term.group
        if term.cov_key is not None and key not in cov:
            raise BayesmixError(
                f"gr({term.group}, cov = {key}) names the matrix '{key}'; pass it as cov={{'{key}': A}}."
            )
        if key in cov:
            _check_term(term)
            matrix = _as_matrix(term.group, cov[key])
            column = term.factors[0]
            random.append(
                replace(
                    term,
                    expr=f"0 + `{column}`",
                    factors=(column + KNOWN_SUFFIX,),
                    structure="known",
                    known=matrix,
                )
            )
            used.add(key)
        else:
            random.append(term)
    unused = sorted(set(cov) - used)
    if unused:
        raise BayesmixError(
            f"cov= names '{unused[0]}', which groups no (1 | {unused[0]}) term of the formula; "
            f"the formula's groups: {', '.join(spec.groups) or 'none'}."
        )
    return replace(spec, random=tuple(random))


def _check_term(term) -> None:
    if term.expr.strip() != "1" or len(term.factors) != 1 or term.structure != "us":
        raise BayesmixError(
            f"cov= gives ({term.expr} | {term.group}) a known covariance between its levels; this version takes "
            f"an intercept over one grouping column: write (1 | {term.group})."
        )


def _as_matrix(group: str, value) -> pd.DataFrame:
    """A square, symmetric, positive-definite matrix labelled by the levels on both sides."""
    if not isinstance(value, pd.DataFrame):
        raise BayesmixError(
            f"cov['{group}'] must be a pandas DataFrame whose index and columns are the levels of '{group}' (an "
            "array has no level names to align by): pd.DataFrame(A, index=levels, columns=levels)."
        )
    index, columns = [str(v) for v in value.index], [str(v) for v in value.columns]
    if index != columns or len(set(index)) != len(index):
        raise BayesmixError(f"cov['{group}'] needs the same level names, once each, in its index and its columns.")
    A = value.to_numpy(dtype=float)
    if not np.all(np.isfinite(A)) or not np.allclose(A, A.T, rtol=1e-10, atol=1e-12):
        raise BayesmixError(f"cov['{group}'] must be finite and symmetric.")
    try:
        np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        raise BayesmixError(
            f"cov['{group}'] is not positive definite (a relationship matrix with identical or linearly dependent "
            "levels is singular); add a small value to its diagonal, or merge identical levels."
        ) from None
    return pd.DataFrame(A, index=index, columns=index)


def known_column(term) -> str:
    """The grouping column whose levels a known-covariance block's indicators are (``0 + `species```)."""
    return term.expr.split("`")[1]


def known_root(term, levels) -> np.ndarray:
    """The lower Cholesky factor of the term's matrix over the data's ``levels``, in their order
    (levels of the matrix that the data lack are left out: their marginal is the submatrix)."""
    A = term.known
    missing = [str(level) for level in levels if str(level) not in A.index]
    if missing:
        raise BayesmixError(
            f"cov['{term.group}'] lacks the data's level(s) {missing[:5]} of '{term.group}'; it must cover them."
        )
    order = [str(level) for level in levels]
    return np.linalg.cholesky(A.loc[order, order].to_numpy())


def with_one_level_columns(frame: pd.DataFrame, spec: FormulaSpec) -> pd.DataFrame:
    """``frame`` with the one-level grouping column of every block whose terms are levels (a known
    covariance's, a multi-membership group's)."""
    terms = [term for term in spec.random if term.structure in ("known", "mm")]
    if not terms:
        return frame
    frame = frame.copy()
    for term in terms:
        frame[term.factors[0]] = term.group
    return frame
