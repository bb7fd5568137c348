"""A run on synth-emnist's stand-in says so: in its data's source, its reports and its terminal."""

from __future__ import annotations

import numpy as np

from cnnvsmlp.config import Split, StoppingRule, load_config
from cnnvsmlp.data.idx import read_idx_dir
from cnnvsmlp.data.spec import DATASETS
from cnnvsmlp.data.store import read_metadata, write_dataset
from cnnvsmlp.efficiency.analysis import analyze
from cnnvsmlp.efficiency.curves import EfficiencyConfig
from cnnvsmlp.provenance import for_task, stamp
from cnnvsmlp.report import write_comparison
from cnnvsmlp.report.efficiency import write_efficiency_report as write_analysis
from cnnvsmlp.report.render import terminal_table
from cnnvsmlp.synthetic import write_nist_layout
from cnnvsmlp_pipelines import summary

LEAD = "Smoke check, not a result:"
SPEC = DATASETS["emnist-letters"]


def _first_screen(markdown: str) -> str:
    return markdown.split("![", 1)[0]


def test_synth_emnist_files_are_read_as_synthetic_and_nist_layout_files_as_idx(tmp_path):
    from conftest import write_nist_letters

    synthetic = write_nist_layout(tmp_path / "syn", n_train=52, n_test=26)
    raw = read_idx_dir(SPEC, synthetic)
    assert raw.source == f"synthetic:{synthetic}"
    out = tmp_path / "prepared"
    write_dataset(raw, SPEC, Split(validation_fraction=0.5), out, limit=None)
    assert read_metadata(out)["source"] == f"synthetic:{synthetic}"
    assert for_task("", "", read_metadata(out)).synthetic

    real_layout = tmp_path / "nist"
    write_nist_letters(real_layout)
    assert read_idx_dir(SPEC, real_layout).source == f"idx:{real_layout}"


def _stamped(source: str):
    return stamp("20261202-040000-test").model_copy(update={"data_source": source})


def test_a_comparison_of_synthetic_data_is_labelled_first_and_a_real_one_is_not(tmp_path):
    from test_report import LABELS, make_run

    base = load_config("fashion-mnist", ["variants=cnn,mlp"])
    runs = [make_run("mlp", 0, 0.8, [0.8]), make_run("cnn", 0, 0.9, [0.9])]
    for source, labelled in (("synthetic:/data/syn", True), ("idx:/data/fashion", False)):
        out = tmp_path / source.split(":")[0]
        comparison = write_comparison(runs, base, LABELS, out, _stamped(source))
        markdown = (out / "report.md").read_text(encoding="utf-8")
        html = (out / "report.html").read_text(encoding="utf-8")
        assert (f"**{LEAD}**" in _first_screen(markdown)) is labelled
        assert (f"<strong>{LEAD}</strong>" in html) is labelled
        assert (LEAD in terminal_table(comparison)) is labelled
        assert f"**Data:** {source}" in markdown
        if labelled:  # right under the headline, before the one-repeat warning
            assert markdown.index(LEAD) < markdown.index("One repeat.")


def test_a_study_of_synthetic_data_is_labelled_in_its_report_and_its_summary(tmp_path):
    from test_efficiency import _result

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=1000)
    sizes = [375, 750, 1500]
    results = [
        _result(labels, v, n, r, acc + n / 1e5, rng)
        for v, acc in (("mlp", 0.7), ("cnn", 0.8))
        for n in sizes
        for r in range(2)
    ]
    base = load_config("fashion-mnist-data-efficiency", ["epochs=3"])
    study = EfficiencyConfig(sizes=sizes, stopping=StoppingRule(patience=1))
    for source, labelled in (("synthetic:/data/syn", True), ("idx:/data/fashion", False)):
        stamped = _stamped(source)
        analysis = analyze(results, base, study, labels, 20, provenance=stamped)
        out = tmp_path / source.split(":")[0]
        write_analysis(analysis, out)
        markdown = (out / "report.md").read_text(encoding="utf-8")
        assert (f"**{LEAD}**" in _first_screen(markdown)) is labelled
        assert f"**Data:** {source}" in markdown
        printed = summary(out)
        assert (LEAD in printed) is labelled
        assert "points" in printed.splitlines()[0]  # the gap in points, not as a fraction
