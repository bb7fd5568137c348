"""Write docs/comparison-schema.md's field tables from the pydantic models that define the file.

``python -m tools.schema_doc`` rewrites the part between the two markers; ``--check`` exits 1
when the file differs from what the models say (tests/test_schema_doc.py runs it).
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from cnnvsmlp.report.model import Comparison

DOC = Path(__file__).resolve().parents[1] / "docs" / "comparison-schema.md"
BEGIN, END = "<!-- tables: python -m tools.schema_doc -->", "<!-- end of tables -->"
NAMES = {str: "string", int: "int", float: "float", bool: "bool", type(None): "null"}


def type_name(annotation) -> str:
    """A field's type in words: list of X, X or null, the model's name in backticks."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return "object"
    if origin is typing.Literal:
        return " or ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"`{annotation.__name__}`"
    return NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def models_below(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The model and every model its fields name, depth first, each once."""
    found: list[type[BaseModel]] = []

    def visit(m: type[BaseModel]) -> None:
        if m in found:
            return
        found.append(m)
        for field in m.model_fields.values():
            for inner in _models_in(field.annotation):
                visit(inner)

    visit(model)
    return found


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]


def table(model: type[BaseModel]) -> str:
    """One model's section: its name, its docstring's first paragraph, a row per field."""
    doc = " ".join((model.__doc__ or "").split("\n\n")[0].split())
    rows = [
        f"| `{name}` | {type_name(field.annotation)} | {_words(field.description)} |"
        for name, field in model.model_fields.items()
    ]
    head = f"## `{model.__name__}`\n\n{doc}\n\n| field | type | meaning |\n| --- | --- | --- |"
    return "\n".join([head, *rows])


def _words(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def tables() -> str:
    """Every model of the file, the top level first."""
    return "\n\n".join(table(m) for m in models_below(Comparison))


def rendered(text: str) -> str:
    """The document with its generated part made anew from the models."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return f"{text[:start]}\n\n{tables()}\n\n{text[end:]}"


def main(argv: list[str]) -> int:
    """Rewrite the tables, or with --check only say whether they are current."""
    text = DOC.read_text()
    new = rendered(text)
    if "--check" in argv:
        if new != text:
            print(f"{DOC.name} differs from the models: run python -m tools.schema_doc")
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
