"""The library's floor plan (the layout section of the README): imports of boltzflow modules sit at
the top of each file, the import graph has no cycle, and the evaluation and plotting stages do not
reach back into training or targets."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "workflow" / "boltzflow"
PACKAGES = ("systems", "md", "targets", "mcmc", "cnf", "couplings", "flows", "training", "ebm", "sgds",
            "evaluation", "fep", "shootout", "plots", "bench")
TOP_LEVEL_MODULES = {"__init__.py", "io.py", "config.py", "cli.py", "units.py"}
# A function-level import is allowed only for an optional heavy dependency; each one is listed here
# with its reason (the code carries the same comment).
LAZY_IMPORTS = {
    ("config.py", "boltzflow.systems"): "config validation runs in every snakemake call; OpenMM only when checked",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in sorted(LIBRARY.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return (LIBRARY.parent / name.replace(".", "/") / "__init__.py").exists()


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if _is_package(importer) else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _lazy_names(package: str) -> dict[str, str]:
    """Name -> submodule of a package whose ``__init__`` re-exports lazily (``lazy_loader.attach``)."""
    init = LIBRARY.parent / package.replace(".", "/") / "__init__.py"
    if not init.exists():
        return {}
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            for keyword in node.value.keywords:
                if keyword.arg == "submod_attrs":
                    table = ast.literal_eval(keyword.value)
                    return {name: module for module, names in table.items() for name in names}
    return {}


def _edges(name: str, tree: ast.Module, top_only: bool) -> set[str]:
    """Modules ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    nodes = tree.body if top_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            target = _resolve(name, node)
            if not target.startswith("boltzflow"):
                continue
            found.add(target)
            for alias in node.names:
                if _is_package(target) and (LIBRARY.parent / target.replace(".", "/") / f"{alias.name}.py").exists():
                    found.add(f"{target}.{alias.name}")
                elif alias.name in _lazy_names(target):  # a name the package loads from its module on use
                    found.add(f"{target}.{_lazy_names(target)[alias.name]}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("boltzflow"))
    # importing a.b.c runs a/__init__ and a/b/__init__ first
    closure = set()
    for target in found:
        parts = target.split(".")
        closure.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    # a package's own __init__ is already running when its modules import each other
    return {t for t in closure if not (name == t or name.startswith(t + "."))}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {t for t in _edges(name, tree, top_only=True) if t in modules} for name, tree in modules.items()}


def test_library_is_packages_plus_four_shared_modules():
    loose = {p.name for p in LIBRARY.glob("*.py")}
    assert loose == TOP_LEVEL_MODULES, f"modules outside a stage package: {sorted(loose - TOP_LEVEL_MODULES)}"
    packages = {p.parent.name for p in LIBRARY.glob("*/__init__.py")}
    assert packages == set(PACKAGES), f"packages: {sorted(packages)}"


def test_boltzflow_imports_sit_at_the_top_of_each_file():
    misplaced = []
    for name, tree in _modules().items():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    targets = ([_resolve(name, node)] if isinstance(node, ast.ImportFrom)
                               else [a.name for a in node.names])
                    for target in targets:
                        path = str(Path(*name.split(".")[1:])) + ("/__init__.py" if _is_package(name) else ".py")
                        if target.startswith("boltzflow") and (path, target) not in LAZY_IMPORTS:
                            misplaced.append(f"{name}:{node.lineno} imports {target} inside {fn.name}")
    assert not misplaced, "\n".join(misplaced)


def test_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [m for m in graph if m == start or m.startswith(start + ".")]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


@pytest.mark.parametrize("stage, forbidden", [
    ("boltzflow.evaluation", ("boltzflow.training", "boltzflow.couplings", "boltzflow.cnf", "boltzflow.ebm",
                              "boltzflow.sgds", "boltzflow.fep", "boltzflow.plots")),
    ("boltzflow.plots", ("boltzflow.targets", "boltzflow.training", "boltzflow.mcmc", "boltzflow.sgds",
                         "boltzflow.ebm", "boltzflow.fep", "boltzflow.md")),
    ("boltzflow.md", ("boltzflow.training", "boltzflow.flows", "boltzflow.sgds", "boltzflow.ebm",
                      "boltzflow.fep", "boltzflow.plots")),
])
def test_stage_does_not_reach_back(stage, forbidden):
    reached = _reachable(stage, _graph())
    bad = sorted(m for m in reached for f in forbidden if m == f or m.startswith(f + "."))
    assert not bad, f"{stage} imports (directly or not) {bad}"


def test_graph_sees_a_planted_cycle(tmp_path, monkeypatch):
    # The checker itself must be able to fail: a two-module loop in a scratch package is found.
    pkg = tmp_path / "boltzflow" / "scratch"
    pkg.mkdir(parents=True)
    (tmp_path / "boltzflow" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from boltzflow.scratch.b import g\n")
    (pkg / "b.py").write_text("from boltzflow.scratch.a import f\n")
    monkeypatch.setattr(__import__(__name__), "LIBRARY", tmp_path / "boltzflow")
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_import_graph_has_no_cycle()


# The README's library table, top to bottom: a package may import only packages above it.
ORDER = ("systems", "evaluation", "targets", "mcmc", "md", "cnf", "couplings", "flows", "training", "ebm",
         "sgds", "fep", "plots", "bench")


def test_packages_import_only_those_above_them():
    upward = []
    for importer, targets in _graph().items():
        parts = importer.split(".")
        if len(parts) < 2 or parts[1] not in ORDER:
            continue
        for target in targets:
            other = target.split(".")[1] if "." in target else ""
            if other in ORDER and ORDER.index(other) > ORDER.index(parts[1]):
                upward.append(f"{importer} imports {target}")
    assert not upward, "\n".join(sorted(upward))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_lazy_name_is_defined_in_its_module(package):
    # A package re-exports its modules' names lazily; each listed name must exist where it is listed.
    module = importlib.import_module(f"boltzflow.{package}")
    names = _lazy_names(f"boltzflow.{package}")
    assert names and sorted(module.__all__) == sorted(names)
    for name, submodule in names.items():
        source = importlib.import_module(f"boltzflow.{package}.{submodule}")
        assert getattr(module, name) is getattr(source, name), f"boltzflow.{package}.{name}"


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(LIBRARY.parent)})
    return set(proc.stdout.split())


@pytest.mark.parametrize("code, absent", [
    # importing a package loads none of its modules
    ("import boltzflow.md, boltzflow.evaluation, boltzflow.flows, boltzflow.training",
     ("torch", "openmm", "scipy", "boltzflow.md.openmm", "boltzflow.evaluation.weights")),
    # the OpenMM jobs (md_replica, md_gather) never load torch
    ("from boltzflow.md import MDSettings, gather_replicas, run_replica", ("torch", "scipy", "ot")),
    # every snakemake call and every script validates a config: its import loads neither
    ("import boltzflow.config", ("torch", "openmm", "scipy")),
    # splitting frames needs neither OpenMM nor torch
    ("from boltzflow.md import block_split", ("torch", "openmm", "scipy")),
    # a plot of tables needs no torch
    ("from boltzflow.plots import ablation_figure, fep_figure", ("torch", "openmm", "scipy", "ot")),
    # nor do the MD data's plots and convergence check, which read dihedral tables
    ("from boltzflow.plots import ramachandran, energy_histogram, populations_vs_time\n"
     "from boltzflow.md import convergence_curves, convergence_report", ("torch", "ot")),
    # the result tables of every stage are pandas and numpy only
    ("from boltzflow.evaluation import flow_table, markdown_flow_table, ebm_table, markdown_ebm_summary, "
     "sgds_table, markdown_sgds_table, seed_summary, bootstrap_ci", ("torch", "openmm", "ot")),
    # reading the Snakefile (every snakemake call, every SLURM job) checks the whole config without torch
    ("\n".join(line for smk in sorted((LIBRARY.parent / "rules").glob("*.smk"))
               for line in smk.read_text().splitlines() if line.startswith(("from boltzflow", "import boltzflow")))
     + "\nimport yaml\nfrom boltzflow.config import DEFAULT_CONFIG, validate_config\n"
     "validate_config(yaml.safe_load(DEFAULT_CONFIG.read_text()))", ("torch", "scipy", "ot")),
])
def test_light_imports_stay_light(code, absent):
    # Each rule job is a fresh Python process: what it imports but does not use is paid once per job.
    loaded = _loaded_after(code)
    heavy = sorted(m for m in absent if m in loaded)
    assert not heavy, f"{code!r} loads {heavy}"


def test_the_suite_schedule_names_existing_files():
    """conftest.py hands out the files it names first (and keeps the SLURM files on one worker): a
    renamed file would silently fall to the back of the queue."""
    from conftest import LONGEST_FIRST, SLURM_FILES

    tests = Path(__file__).parent
    assert [name for name in LONGEST_FIRST + SLURM_FILES if not (tests / name).is_file()] == []
