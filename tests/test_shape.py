"""The size and shape the house keeps: lines in all, per module and per function."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("src", "pipelines", "components")
LINTED = (*SHIPPED, "tools", "tests")
# MAX_LINES only ever goes down.
MAX_LINES, MAX_MODULE, MAX_FUNCTION = 10_000, 400, 60


def python_files(folders):
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path}:{node.lineno} {node.name} {node.end_lineno - node.lineno + 1}"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_the_shipped_code_stays_within_its_line_budget():
    lines = sum(len(p.read_text().splitlines()) for p in python_files(SHIPPED))
    assert lines <= MAX_LINES


def test_no_module_is_over_four_hundred_lines():
    long = [
        f"{p.relative_to(ROOT)} {n}"
        for p in python_files(LINTED)
        if (n := len(p.read_text().splitlines())) > MAX_MODULE
        and p.parent.name != "tests"  # test modules group a behaviour's cases
    ]
    assert long == []


def test_no_function_is_over_sixty_lines():
    assert [f for p in python_files(LINTED) for f in long_functions(p, MAX_FUNCTION)] == []


def test_the_function_scan_counts_a_function_from_def_to_its_last_line(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def short():\n    return 1\n\n\ndef long():\n" + "    x = 1\n" * 60)
    assert [f.split()[1:] for f in long_functions(module, 60)] == [["long", "61"]]
