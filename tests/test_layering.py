"""The direction of imports between bayesmix's modules (issue 19): read with ``ast``, not by importing.

Layers, lowest first; a module imports only from its own layer or below, the two engines (the exact
one and the Bayesian one) sit side by side and never import each other, nothing imports in a cycle,
and no function imports a bayesmix module inside its body (a sign of a cycle worked around).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bayesmix"

LAYERS = [
    # plumbing that knows nothing of models
    {"errors", "memory", "datasets"},
    # formula text and distributions
    {"counts", "densities", "censored", "ordinal", "categorical"},
    {
        "design.expressions",
        "design.smooth",
        "design.matern",
        "design.hilbert",
        "design.plain",
        "design.membership",
        "design.formula",
        "design.covariance",
        "design.fixed",
        "families",
    },
    {"design.crossprod", "design.partitions"},
    # data -> arrays: the design, its cross-products, the Dask statistics, the moments
    {"design.known", "design.linpred", "design.moments", "design.encode", "design.statistics", "design"},
    {"design.hypotheses"},
    {"report"},
    # the engines, side by side: exact (lme4's pipeline) and Bayesian (PyMC model -> NUTS -> posterior)
    {
        "exact",
        "exact.optimize",
        "exact.glm",
        "exact.blocked",
        "exact.lmm",
        "exact.glmm",
        "exact.glmm_partitions",
        "exact.satterthwaite",
        "exact.kenward_roger",
        "exact.profile",
        "exact.glmm_profile",
        "exact.refit",
    }
    | {"bayes", "bayes.names", "bayes.priors", "bayes.build", "bayes.built", "bayes.collapsed", "bayes.hsgp"}
    | {"bayes.collapsed.statistics", "bayes.collapsed.start", "bayes.collapsed.draws", "bayes.collapsed.model"},
    {"nuts", "nuts.jax_config", "nuts.low_rank", "nuts.program_cache", "nuts.convergence", "nuts.numpyro_driver"}
    | {"nuts.coordinates", "nuts.density", "nuts.start", "nuts.programs"},
    {"nuts.run"},
    {"nuts.summary"},
    # what reads either kind of result
    {"after", "after.members", "after.fit_view", "after.predict", "after.smooth_band", "after.io"},
    {"after.checks", "after.tidy", "after.r2"},
    {"after.verbs", "after.confint", "after.emmeans"},
    {"after.hypothesis"},
    {"plots", "plots._common", "plots.random_effects", "plots.pooling", "plots.diagnostics", "plots.conditional"}
    | {"plots.correlation"},
    # the façades: the exact fit, the model, lme4's modular steps, the comparison of fits
    {"mixedfit", "sampled"},
    {"model", "modular", "compare"},
    {"loading", "cli", "__init__"},
]
EXACT = {"exact"}
BAYES = {"bayes", "nuts"}


def folder(name: str) -> str:
    return name.split(".")[0]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imported(node, package_names) -> set[str]:
    """The bayesmix modules one import statement names (``from bayesmix import memory`` names memory)."""
    out = set()
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bayesmix":
        base = node.module.removeprefix("bayesmix").lstrip(".")
        for alias in node.names:
            full = f"{base}.{alias.name}" if base else alias.name
            out.add(full if full in package_names else base or "__init__")
    elif isinstance(node, ast.Import):
        out |= {a.name.removeprefix("bayesmix.") for a in node.names if a.name.split(".")[0] == "bayesmix"}
    return out


def deferred(tree) -> set[str]:
    """Modules loaded on first use with ``importlib.import_module("bayesmix.<name>")`` (the Model's
    Bayesian half, so an exact fit never imports PyMC): still edges of the graph, held to the same
    direction, but not function-local imports in the sense of a cycle worked around."""
    return {
        node.args[0].value.removeprefix("bayesmix.")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).startswith("bayesmix.")
    }


def graph():
    paths = {module_name(p).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}
    paths["__init__"] = paths.pop("__init__", PACKAGE / "__init__.py")
    names = set(paths)
    edges, local = {}, []
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        edges[name] = (set().union(*(imported(n, names) for n in tree.body)) | deferred(tree)) - {name}
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                if imported(node, names):
                    local.append(f"{name}.{function.name}")
    return edges, local


def layer_of(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name in layer:
            return i
    raise AssertionError(f"bayesmix/{name}.py is in no layer of tests/test_layering.py: place it there")


def test_every_import_points_down():
    edges, _ = graph()
    upward = [
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, targets in edges.items()
        for b in targets
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, upward


def test_the_engines_do_not_import_each_other():
    edges, _ = graph()
    crossing = [
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if {folder(a), folder(b)} & EXACT and {folder(a), folder(b)} & BAYES
    ]
    assert not crossing, crossing


def test_no_cycles():
    edges, _ = graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in edges.get(node, ()):
            assert state.get(target) != "open", " -> ".join([*path, node, target])
            if target not in state:
                visit(target, [*path, node])
        state[node] = "done"

    for node in edges:
        if node not in state:
            visit(node, [])


def test_no_function_local_bayesmix_imports():
    _, local = graph()
    assert not local, local


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines():
    """Long functions hid several jobs (issue 19); a function that grows past this is split into named steps."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module_name(path)}.{node.name}: {lines} lines")
    assert not long, long
