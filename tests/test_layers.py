"""The architecture, checked from the code: imports only go down the layers, training never meets
Optuna, only the CLI and the report print, Optuna's internals stay in one module, and no module
or function grows past what one person reads at once.

Every import is read with `ast`, the ones inside functions (lazy) and under TYPE_CHECKING too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "sweep"
# From the bottom up; a module may import its own layer and those below it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"sweep", "sweep.errors"}),
    frozenset({"sweep.config", "sweep.study"}),
    frozenset({"sweep.storage", "sweep.search", "sweep.data", "sweep.training"}),
    frozenset({"sweep.runner", "sweep.confirm", "sweep.export", "sweep.launch"}),
    frozenset({"sweep.report"}),
    frozenset({"sweep.cli"}),
)
PRINTING = ("typer", "rich")  # only under sweep.cli and sweep.report
OPTUNA_INTERNALS = re.compile(
    r"^_(storage|study_id|trial_id|backend|thread_local|get_trials|get_stale_trial_ids|"
    r"cached_storage|rdb|CachedStorage|StudyInfo|add_trials_to_cache)$"
)
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# Functions allowed past MAX_FUNCTION_LINES: templates, whose length is the text they write.
LONG_FUNCTIONS = {
    ("sweep/launch/slurm.py", "render_slurm_script"),
    ("sweep/launch/k8s.py", "manifest_object"),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. sweep.runner.session
    target: str  # what it imports, e.g. sweep.storage or optuna.storages._rdb
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> Iterator[Import]:
    """Every import statement of every module under `root` (a package folder)."""
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(name, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield Import(name, node.module, node.lineno)
                for alias in node.names:  # `from sweep import errors` imports sweep.errors
                    yield Import(name, f"{node.module}.{alias.name}", node.lineno)


def layer_of(module: str) -> int | None:
    """The layer of a sweep module (by its subpackage), None outside sweep."""
    if module != "sweep" and not module.startswith("sweep."):
        return None
    parts = module.split(".")
    for size in (2, 1):
        top = ".".join(parts[:size])
        for index, layer in enumerate(LAYERS):
            if top in layer:
                return index
    return None


def upward_imports(root: Path) -> list[str]:
    """`module:line imports target` for each import of a higher layer."""
    found = []
    for imp in imports(root):
        here, there = layer_of(imp.module), layer_of(imp.target)
        if here is not None and there is not None and there > here:
            found.append(f"{imp.module}:{imp.line} imports {package_of(imp.target)}")
    return sorted(set(found))


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_imports_only_go_down_the_layers() -> None:
    assert upward_imports(PACKAGE) == []


def test_every_subpackage_has_its_layer() -> None:
    modules = {package_of(module_name(p, PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert {m for m in modules if layer_of(m) is None} == set()


def test_the_checker_sees_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    fake = tmp_path / "sweep"
    (fake / "training").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "training" / "__init__.py").write_text("")
    (fake / "training" / "loop.py").write_text(
        "import torch\n\ndef run():\n    from sweep.runner import Session  # up a layer\n"
    )
    assert upward_imports(fake) == ["sweep.training.loop:4 imports sweep.runner"]


def test_no_cycle_between_subpackages() -> None:
    graph: dict[str, set[str]] = {}
    for imp in imports(PACKAGE):
        a, b = package_of(imp.module), package_of(imp.target)
        if a.startswith("sweep.") and b.startswith("sweep.") and a != b:
            graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [p for p in graph if reaches(p, p, {p})] == []


def test_training_never_imports_optuna() -> None:
    found = [
        f"{imp.module}:{imp.line}"
        for imp in imports(PACKAGE)
        if imp.module.startswith("sweep.training") and imp.target.split(".")[0] == "optuna"
    ]
    assert found == []


def test_only_the_cli_and_the_report_import_typer_or_rich() -> None:
    found = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in imports(PACKAGE)
        if imp.target.split(".")[0] in PRINTING
        and not imp.module.startswith(("sweep.cli", "sweep.report"))
    ]
    assert found == []


def _optuna_internal_uses(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optuna"):
            private = "._" in node.module or any(a.name.startswith("_") for a in node.names)
            if private:
                lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and OPTUNA_INTERNALS.match(node.attr):
            own = isinstance(node.value, ast.Name) and node.value.id == "self"
            if not own:  # sweep's own objects keep private attributes of the same names
                lines.append(node.lineno)
    return lines


def test_optuna_internals_are_touched_in_one_module() -> None:
    touching = {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if _optuna_internal_uses(p)}
    assert touching == {"sweep/storage/_optuna_compat.py"}


def test_optuna_version_is_within_the_tested_range() -> None:
    import optuna
    from packaging.specifiers import SpecifierSet

    from sweep.storage import SUPPORTED_OPTUNA

    assert optuna.__version__ in SpecifierSet(",".join(SUPPORTED_OPTUNA))
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"optuna{",".join(SUPPORTED_OPTUNA)}"' in pyproject


def test_stored_keys_are_spelled_in_one_place() -> None:
    spelled = [
        str(p.relative_to(REPO))
        for p in PACKAGE.rglob("*.py")
        if '"end_reason"' in p.read_text() or "'end_reason'" in p.read_text()
    ]
    assert spelled == ["sweep/study/attrs.py"]


def _function_lengths(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                len(body) > 1
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
            ):
                body = body[1:]  # the docstring is not code
            yield node.name, (node.end_lineno or body[0].lineno) - body[0].lineno + 1


def test_modules_and_functions_stay_readable() -> None:
    direct = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(direct) <= 10, direct
    long_modules = {
        str(p.relative_to(REPO)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long_modules == {}
    long_functions = {
        (str(p.relative_to(REPO)), name): n
        for p in PACKAGE.rglob("*.py")
        for name, n in _function_lengths(p)
        if n > MAX_FUNCTION_LINES
    }
    unexpected = {k: n for k, n in long_functions.items() if k not in LONG_FUNCTIONS}
    assert len(unexpected) <= 3, unexpected


@pytest.mark.parametrize("command", ["--help", "status --help", "report --help"])
def test_light_commands_never_import_torch(command: str) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from sweep.cli import app; from typer.testing import CliRunner; "
        f"CliRunner().invoke(app, {command.split()!r}); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
