"""The library depends on nothing above it: no module of src/cnnvsmlp imports the runners."""

import ast
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "src" / "cnnvsmlp"
# The runners under their installed names, and the bare names they had before.
ABOVE = ("cnnvsmlp_pipelines", "cnnvsmlp_components", "pipelines", "components", "kfp")


def imported_modules(path: Path, with_names: bool = False) -> set[str]:
    """Every module ``path`` imports, inside functions too; with_names, m.n of from m import n."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            if with_names:  # n may be a submodule: from cnnvsmlp.data import store
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """The groups of modules that import each other, directly or around a circle (Tarjan)."""
    graph = {m: (imported_modules(p, True) & modules.keys()) - {m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_the_library_imports_no_pipelines_components_or_kfp():
    arrows = sorted(
        (str(path.relative_to(LIBRARY)), module)
        for path in LIBRARY.rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in ABOVE
    )
    assert arrows == []


def test_the_status_check_loads_no_statistics_or_plotting():
    """check_runs and the local runner read a comparison's status without the heavy libraries."""
    code = (
        "import sys, cnnvsmlp.report.model; "
        "print(sorted({'scipy', 'statsmodels', 'matplotlib', 'tensorflow'} & sys.modules.keys()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_scan_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from pipelines import compile_pipeline\n    import kfp.local\n"
    )
    assert imported_modules(module) == {"pipelines", "kfp.local"}


def test_importing_the_components_runs_no_command():
    """A component names its image when its pipeline is built, not when it is imported."""
    code = (
        "import subprocess\n"
        "def refuse(*a, **k):\n    raise AssertionError(f'ran {a[0]!r}')\n"
        "subprocess.Popen = subprocess.run = refuse\n"
        "import cnnvsmlp_components\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# A new circle fails; one opened must leave this list.
KNOWN_CYCLES: list[list[str]] = []


def test_no_module_of_the_library_imports_itself_around_a_circle():
    """Imports inside functions count: a function-level import does not hide a cycle."""
    modules = {module_name(p): p for p in LIBRARY.rglob("*.py")}
    assert import_cycles(modules) == KNOWN_CYCLES


def test_the_cycle_scan_finds_a_circle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text("def f():\n    from pkg import c\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("import pkg.a\n")
    modules = {f"pkg.{p.stem}": p for p in package.glob("*.py")}
    assert import_cycles(modules) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_every_name_imported_from_the_project_exists():
    """A name the code or its tools import from the project, inside functions too, is there."""
    import importlib

    root = LIBRARY.parents[1]
    folders = ("src", "pipelines", "components", "tools")
    files = [p for folder in folders for p in (root / folder).rglob("*.py")]
    own = ("cnnvsmlp", "cnnvsmlp_pipelines", "cnnvsmlp_components", "tools")
    missing = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] not in own:
                    continue
                module = importlib.import_module(node.module)
                missing += [
                    f"{path.relative_to(root)}:{node.lineno} {node.module}.{alias.name}"
                    for alias in node.names
                    if not hasattr(module, alias.name)
                    and importlib.util.find_spec(f"{node.module}.{alias.name}") is None
                ]
    assert missing == []
