"""The hypotheses of a type III analysis of variance: one contrast matrix L per term of the fixed
part, each row a linear combination of the coefficients (lmerTest's ``get_contrasts_type3``, SAS's
type III).

With treatment coding, X is full rank and the "complete" matrix rdX holds every cell of every term
(a factor's indicator for all its levels, times the numeric components): L0 = (X^+ rdX)', one row
per rdX column. Working from the highest-order terms down, a term's columns of L0 are made
orthogonal (least-squares residuals) to the columns of every term that contains it, so that a main
effect's hypothesis averages over the levels of the factors it interacts with, whatever the
coding. The rows that are X's own columns give each term's L (its nonzero rows). A model coded with
other contrasts (sum, polynomial for an ordered factor) gets the treatment-coded hypotheses mapped
onto its coefficients, L (X_treatment^+ X).
"""

from __future__ import annotations

import numpy as np

from bayesmix.design.encode import Design
from bayesmix.design.expressions import formulae_matrix
from bayesmix.design.formula import parse_formula
from bayesmix.errors import BayesmixError

ZERO = 1e-8  # R's zapsmall: entries below this (relative) are rounding, not contrast


def type3_contrasts(design: Design) -> dict[str, np.ndarray]:
    """{term: L (q, p)} over the design's coefficients, for each term of the fixed part but the
    intercept (formulae's term names, e.g. ``recipe``, ``recipe:temp``)."""
    matrix = design.codings.fixed_matrix
    if matrix is None or not design.fixed_names:
        raise BayesmixError("A type III table tests the terms of the fixed part; this model has no fixed effects.")
    terms = {name: term for name, term in matrix.terms.items() if name != "Intercept"}
    if not terms:
        raise BayesmixError("A type III table tests the terms of the fixed part; this model has the intercept alone.")
    X = np.asarray(matrix.design_matrix, dtype=float)  # all of formulae's columns (an ordinal model drops one)
    if design.codings.contrasts:  # other codings: the treatment-coded hypotheses, mapped
        treated = formulae_matrix(parse_formula(design.spec.text).fixed, design.data)
        treated_terms = {name: term for name, term in treated.terms.items() if name != "Intercept"}
        X_treated = np.asarray(treated.design_matrix, dtype=float)
        treated_L = _treatment_contrasts(design, X_treated, treated.slices, treated_terms)
        mapping = np.linalg.pinv(X_treated) @ X
        contrasts = {name: L @ mapping for name, L in treated_L.items()}
    else:
        contrasts = _treatment_contrasts(design, X, matrix.slices, terms)
    kept = design.codings.fixed_columns
    if kept is not None:  # an ordinal model's coefficients: formulae's columns without the intercept
        contrasts = {name: L[:, list(kept)] for name, L in contrasts.items()}
    return {name: _nonzero(_zap(L)) for name, L in contrasts.items()}


def _treatment_contrasts(design: Design, X: np.ndarray, slices: dict, terms: dict) -> dict[str, np.ndarray]:
    complete = _complete_matrix(design, terms)  # rdX
    L = np.linalg.pinv(X) @ complete  # (p, c): column c is L0's row for rdX column c
    L = _zap(L).T  # (c, p)
    columns = {name: np.arange(X.shape[1])[slices[name]] for name in terms}
    contains = {
        name: [other for other in terms if other != name and _contained(terms[name], terms[other])] for name in terms
    }
    for name in sorted(terms, key=lambda t: -len(_variables(terms[t]))):
        if contains[name]:
            basis = L[:, np.concatenate([columns[other] for other in contains[name]])]
            target = L[:, columns[name]]
            L[:, columns[name]] = _zap(target - basis @ np.linalg.lstsq(basis, target, rcond=None)[0])
    rows = _own_rows(X, complete)
    return {name: _nonzero(L[rows][:, columns[name]].T) for name in terms}


def _complete_matrix(design: Design, terms: dict) -> np.ndarray:
    """rdX: per term, the row-wise products of its components' full columns (a factor's indicator
    of every level, a numeric component's values); the intercept first."""
    parts = [np.ones((design.nobs, 1))]
    for term in terms.values():
        block = np.ones((design.nobs, 1))
        for component in term.components:
            values = _component_columns(design, component)
            block = (block[:, :, None] * values[:, None, :]).reshape(design.nobs, -1)
        parts.append(block)
    return np.hstack(parts)


def _component_columns(design: Design, component) -> np.ndarray:
    if component.kind == "numeric":
        values = np.asarray(component.value, dtype=float)
        return values.reshape(len(values), -1)
    names = [v for v in component.var_names if v in design.codings.levels]
    if len(names) != 1:
        raise BayesmixError(
            f"A type III table needs each factor of the fixed part to be a data column; '{component.name}' is not. "
            "Make it a column of the data first."
        )
    column = design.data[names[0]]
    codes = column.cat.codes.to_numpy() if hasattr(column, "cat") else None
    levels = design.codings.levels[names[0]]
    if codes is None:
        raise BayesmixError(f"The factor '{names[0]}' is not coded as categories; pass categorical=['{names[0]}'].")
    return (codes[:, None] == np.arange(len(levels))[None, :]).astype(float)


def _variables(term) -> set[str]:
    return {component.name for component in term.components}


def _contained(term, other) -> bool:
    """Whether ``term``'s variables are a proper subset of ``other``'s (R's marginality)."""
    mine, theirs = _variables(term), _variables(other)
    return mine < theirs


def _own_rows(X: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """For each column of X, the column of rdX equal to it (treatment coding keeps every X column
    among rdX's): L0's rows that are the model's own coefficients."""
    rows = []
    for j in range(X.shape[1]):
        match = np.flatnonzero(np.all(np.isclose(complete, X[:, [j]], rtol=0, atol=1e-12), axis=0))
        if not len(match):
            raise BayesmixError(
                "A type III table could not match a coefficient of the fixed part to a cell of its terms (a "
                "transformation that changes a factor's coding). Write the model with plain factors and covariates."
            )
        rows.append(match[0])
    return np.asarray(rows)


def _zap(values: np.ndarray) -> np.ndarray:
    scale = max(float(np.max(np.abs(values), initial=0.0)), 1.0)
    return np.where(np.abs(values) < ZERO * scale, 0.0, values)


def _nonzero(L: np.ndarray) -> np.ndarray:
    return L[np.sum(np.abs(L), axis=1) > ZERO]
