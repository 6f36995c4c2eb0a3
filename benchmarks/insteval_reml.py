"""REML on an InstEval-shaped crossed design, timed beside lme4's 19.4 s (same 2-core machine).

lme4's InstEval is not redistributed here; this simulates a design of the same shape: 73,421 ratings
by 2,972 students (s) of 1,128 lecturers (d) in 14 departments, service in {0, 1}, and the model
``y ~ service + (1 | s) + (1 | d) + (1 | dept:service)`` (28 dept:service levels), with variance
components near lme4's InstEval fit (SDs 0.32, 0.52, 0.08; residual 1.18). Students rate a skewed
choice of lecturers, so the s-by-d crossing is sparse and unbalanced as in the real data.

    python benchmarks/insteval_reml.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

LME4_SECONDS = 19.4  # lme4 REML on the real InstEval, 2-core machine (shared/reference/README.md)
N_ROWS, N_STUDENTS, N_LECTURERS, N_DEPTS = 73_421, 2_972, 1_128, 14


def simulate(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = rng.integers(0, N_STUDENTS, N_ROWS)
    popularity = rng.gamma(0.7, size=N_LECTURERS)
    d = rng.choice(N_LECTURERS, size=N_ROWS, p=popularity / popularity.sum())
    dept_of = rng.integers(0, N_DEPTS, N_LECTURERS)
    service = rng.integers(0, 2, N_ROWS)
    dept = dept_of[d]
    y = (
        3.2
        - 0.07 * service
        + rng.normal(0, 0.32, N_STUDENTS)[s]
        + rng.normal(0, 0.52, N_LECTURERS)[d]
        + rng.normal(0, 0.08, (N_DEPTS, 2))[dept, service]
        + rng.normal(0, 1.18, N_ROWS)
    )
    return pd.DataFrame({"y": y, "service": service, "s": s, "d": d, "dept": dept})


def main() -> None:
    start = time.perf_counter()
    import bayesmix

    imported = time.perf_counter()
    data = simulate()
    model = bayesmix.Model("y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", data)
    built = time.perf_counter()
    fit = model.fit("reml")
    done = time.perf_counter()
    print(fit.summary())
    print()
    print("| step | seconds |")
    print("|---|---|")
    print(f"| import bayesmix | {imported - start:.2f} |")
    print(f"| simulate + formula + design | {built - imported:.2f} |")
    print(f"| REML fit ({fit.optimizer.evaluations} objective evaluations) | {done - built:.2f} |")
    print(f"| whole process | {done - start:.2f} |")
    print(f"| lme4 on the real InstEval | {LME4_SECONDS:.1f} |")
    print(f"\nngrps: {fit.ngrps}, converged: {fit.converged}")


if __name__ == "__main__":
    main()
