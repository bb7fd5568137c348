"""What every report is made of: its blocks, number formats, provenance, Markdown and HTML."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnvsmlp.outputs import write_atomically
from cnnvsmlp.provenance import SYNTHETIC_DATA, SYNTHETIC_LEAD, Provenance
from cnnvsmlp.records import Hardware

# The KFP UI's Markdown viewer shows at most this many characters of an artifact
# (kubeflow/pipelines frontend/src/components/viewers/MarkdownViewer.tsx,
# MAX_MARKDOWN_STR_LENGTH); its renderer, markdown-to-jsx, keeps data:image URIs.
MARKDOWN_LIMIT = 400_000

# File name (without .png) and caption of each plot, in report order.
PLOTS = {
    "test_accuracy": "Test accuracy of each variant",
    "learning_curves": "Learning curves",
    "confusion_matrices": "Confusion matrices",
    "per_class_accuracy": "Per-class accuracy",
    "accuracy_vs_cost": "Accuracy against parameters and training time",
}
SHIFT_PLOT = ("accuracy_vs_shift", "Test accuracy against shift of the test images")
"""The name and caption of the shift plot, drawn when the runs were scored on shifted images."""


@dataclass(frozen=True)
class Text:
    """A paragraph; ``lead`` is printed bold before it; ``style``: headline, note or code."""

    text: str
    lead: str = ""
    style: str = ""


@dataclass(frozen=True)
class Bullets:
    """A list; each entry may start with a bold ``(lead, text)``."""

    entries: list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    """A table of strings."""

    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    """A plot by name; ``caption`` defaults to its caption in the plots' registry."""

    name: str
    caption: str = ""


Block = Text | Bullets | Table | Figure


@dataclass
class Section:
    """A titled part after the first screen; ``folded`` ones are closed in the HTML."""

    title: str
    blocks: list[Block]
    folded: bool = False
    anchor: str = ""


@dataclass
class Report:
    """What a layout makes of a record."""

    title: str
    lead: list[Block]
    sections: list[Section] = field(default_factory=list)


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals, without the sign: ``0.9123`` -> ``91.23``."""
    return f"{100 * x:.2f}"


def points(x: float) -> str:
    """A difference of fractions in signed accuracy points (no -0.00): ``0.0407`` -> ``+4.07``."""
    text = f"{100 * x:+.2f}"
    return "+0.00" if float(text) == 0 else text


def signed(x: float) -> str:
    """:func:`points` as the data-efficiency report prints it (``-0.00`` kept)."""
    return f"{100 * x:+.2f}"


def interval(i: Any, fmt: Callable[[float], str] = pct) -> str:
    """An estimate with its interval: ``91.23 [90.80, 91.66]``."""
    return f"{fmt(i.estimate)} [{fmt(i.low)}, {fmt(i.high)}]"


def p_cell(p: float) -> str:
    """A p-value in a table cell."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def plural(n: int, word: str) -> str:
    """``3 epochs``, ``1 epoch``."""
    return f"{n} {word}{'s' if n != 1 else ''}"


def run_label(p: Provenance) -> str:
    """The run as the reports name it: its id, or that none was recorded."""
    return p.run_id or "(run id not recorded)"


def machine_text(h: Hardware) -> str:
    """A machine in a phrase: name, CPUs, threads, TensorFlow."""
    threads = f", {h.intra_op_threads} threads" if h.intra_op_threads else ""
    return f"{h.name} ({h.cpu_count} CPUs{threads}, TensorFlow {h.tensorflow})"


def when_and_code(p: Provenance) -> str:
    """``2026-12-01 14:24 UTC; cnnvsmlp 0.1.0 at commit c34c87305b``: when and what code."""
    when = p.started.strftime("%Y-%m-%d %H:%M UTC") if p.started else "date not recorded"
    if p.commit:
        state = {True: ", uncommitted changes", False: ""}.get(p.dirty, ", tree state unknown")
        code = f"cnnvsmlp {p.project_version or '?'} at commit {p.commit[:10]}{state}"
    else:
        code = f"cnnvsmlp {p.project_version or '(version not recorded)'}, commit not recorded"
    return f"{when}; {code}"


def provenance_section(p: Provenance, schema: str, own: list[tuple[str, str]]) -> Section:
    """The folded Provenance section: the common lines, a layout's ``own`` before the schema."""
    shape = "x".join(map(str, p.data_shape))
    items = [
        ("Run:", run_label(p)),
        ("Started:", p.started.isoformat() if p.started else "not recorded"),
        ("Runner:", p.runner or "not recorded"),
        ("Project:", f"cnnvsmlp {p.project_version or '(version not recorded)'}"),
        ("Commit:", (p.commit + (" (uncommitted changes)" if p.dirty else "")) or "not recorded"),
        ("Data:", (p.data_source or "not recorded") + (f" ({shape} images)" if shape else "")),
        *own,
        ("Schema:", f"comparison.json {schema}"),
        *[("Note:", p.note)] * bool(p.note),
    ]
    return Section("Provenance", [Bullets(items)], folded=True)


def lead_blocks(headline: str, p: Provenance, *warnings: Text) -> list[Block]:
    """The first screen's words: the headline, the synthetic-data label, then ``warnings``."""
    synthetic = [Text(SYNTHETIC_DATA, lead=SYNTHETIC_LEAD)] * p.synthetic
    return [Text(headline, style="headline"), *synthetic, *(w for w in warnings if w.text)]


def _prepare(block: Block, html: bool, images: dict[str, str]) -> dict | None:
    from tabulate import tabulate

    if isinstance(block, Table):
        rows = block.rows if html else [[x.replace("|", "\\|") for x in r] for r in block.rows]
        fmt = "html" if html else "github"
        text = tabulate(rows, headers=block.headers, tablefmt=fmt, disable_numparse=True)
        return {"kind": "table", "text": text}
    if isinstance(block, Figure):
        if block.name not in images:
            return None
        caption = block.caption or PLOTS.get(block.name, block.name)
        return {"kind": "figure", "caption": caption, "src": images[block.name]}
    return {"kind": type(block).__name__.lower(), **vars(block)}  # bullets or text


def _render(report: Report, images: dict[str, str], html: bool, missing: str = "") -> str:
    from jinja2 import Environment, PackageLoader

    env = Environment(
        loader=PackageLoader("cnnvsmlp", "templates"),
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )

    def prepared(blocks: list[Block]) -> list[dict]:
        return [b for b in (_prepare(x, html, images) for x in blocks) if b is not None]

    sections = [{**vars(s), "blocks": prepared(s.blocks)} for s in report.sections]
    template = env.get_template("report.html.j2" if html else "report.md.j2")
    return template.render(
        title=report.title, lead=prepared(report.lead), sections=sections, missing=missing
    )


def _data_uri(path: Path, compact: bool = False) -> str:
    """A plot as a data URI; ``compact``: as a palette PNG, about a third of the bytes."""
    data = path.read_bytes()
    if compact:
        from PIL import Image

        with Image.open(path) as image, io.BytesIO() as out:
            image.convert("RGB").quantize(colors=128).save(out, format="PNG", optimize=True)
            data = out.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def render_markdown(report: Report, plots: dict[str, Path]) -> str:
    """The Markdown report, its plots embedded in order while it stays under MARKDOWN_LIMIT."""
    budget = MARKDOWN_LIMIT - len(_render(report, {}, html=False)) - 2_000
    images = {}
    for name, path in plots.items():
        uri = _data_uri(path, compact=True)
        if len(uri) <= budget:
            images[name] = uri
            budget -= len(uri)
    if missing := ", ".join(PLOTS.get(n, n) for n in plots if n not in images):
        missing = (
            f"Left out to keep this file under the KFP UI's {MARKDOWN_LIMIT:,} characters: "
            f"{missing}; report.html and plots/ beside comparison.json have them."
        )
    return _render(report, images, html=False, missing=missing)


def write_report(
    record: Any, layout: Callable[[Any], Report], plots: dict[str, Path], out_dir: Path
) -> None:
    """Write ``record`` as ``comparison.json``, by ``layout`` as ``report.md`` and ``.html``."""
    report = layout(record)
    out_dir.mkdir(parents=True, exist_ok=True)
    json = record.model_dump_json(indent=1)
    write_atomically(out_dir / "comparison.json", lambda p: p.write_text(json, encoding="utf-8"))
    (out_dir / "report.md").write_text(render_markdown(report, plots), encoding="utf-8")
    html = _render(report, {n: _data_uri(p) for n, p in plots.items()}, html=True)
    (out_dir / "report.html").write_text(html, encoding="utf-8")
