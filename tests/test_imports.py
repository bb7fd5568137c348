"""The library depends on nothing above it: no module of src/cnnvsmlp imports the runners."""

import ast
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "src" / "cnnvsmlp"
# The runners under their installed names, and the bare names they had before.
ABOVE = ("cnnvsmlp_pipelines", "cnnvsmlp_components", "pipelines", "components", "kfp")


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


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
        "import sys, cnnvsmlp.report.status; "
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
