"""etcdbench plot: PNG files that are PNGs, a report.html naming every run, and no made-up series."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import cli_console
import pytest
from paths import DATA, RESULTS

from etcdbench.errors import UsageError
from etcdbench.report.compare import Source
from etcdbench.report.plot import MISSING, html_report, require_matplotlib
from etcdbench.results.io import load
from etcdbench.results.model import ResultsFile, Run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*argv: str) -> tuple[int, str, str]:
    return cli_console.run_cli(*argv, width=200)  # long paths stay on one line


def test_plots_and_report_of_several_files(tmp_path: Path) -> None:
    files = [RESULTS / n for n in ("v3-protobuf-500.json", "v3-json-500.json", "v2-json-poll-1000.json")]
    out_dir = tmp_path / "report"
    code, out, err = run_cli("plot", *map(str, files), "--out", str(out_dir))
    assert (code, err) == (0, ""), err
    names = ["latency.png", "rates.png", "cpu.png"]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([*names, "report.html"])
    for name in names:
        data = (out_dir / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert data[12:16] == b"IHDR"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width == 1000 and height >= 400  # 10 in at 100 dpi
        assert f"wrote {out_dir / name}" in out
    page = (out_dir / "report.html").read_text()
    for f in files:
        for run in load(f)["runs"]:
            assert run["label"] in page
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 3
    assert all(base64.b64decode(b).startswith(PNG_MAGIC) for b in embedded)
    assert 'src="http' not in page and "<link" not in page and "<script" not in page  # self-contained


def test_a_series_the_files_lack_is_not_drawn(tmp_path: Path) -> None:
    doc = load(RESULTS / "v3-protobuf-500.json")
    doc["runs"][0]["timeseries"]["cpu_cores"] = {"interval_s": 0.5}
    path = tmp_path / "no-cpu.json"
    path.write_text(json.dumps(doc))
    code, out, _ = run_cli("plot", str(path), "--out", str(tmp_path / "o"))
    assert code == 0
    assert not (tmp_path / "o" / "cpu.png").exists()
    assert "not drawn: cpu.png: no CPU samples" in out
    assert (tmp_path / "o" / "latency.png").read_bytes().startswith(PNG_MAGIC)


def test_html_summary_table_values() -> None:
    doc = load(RESULTS / "v2-json-poll-1000.json")
    page = html_report([Source("v2", RESULTS / "v2-json-poll-1000.json", ResultsFile.from_dict(doc))], {})
    assert "<td>v2(poll)+json pod @1000/s</td>" in page
    assert "<td>3,013</td>" in page  # missed
    assert "<td>1.07 s</td>" in page  # watch p99
    assert "FAIL: watcher received 688.4 events/s" in page and "(client-bound)" in page
    assert "<img" not in page


def test_missing_matplotlib_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(UsageError) as info:
        require_matplotlib()
    assert str(info.value) == "etcdbench plot needs matplotlib: pip install 'etcdbench[plot]'" == MISSING
    code, out, err = run_cli("plot", str(RESULTS / "v3-json-500.json"), "--out", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert err.strip() == f"error: {MISSING}"
    assert not (tmp_path / "o").exists()


def test_plot_bad_usage(tmp_path: Path) -> None:
    code, _, err = run_cli("plot", str(RESULTS / "v3-json-500.json"))
    assert code == 2 and "--out" in err
    a_file = tmp_path / "f"
    a_file.write_text("")
    code, _, err = run_cli("plot", str(RESULTS / "v3-json-500.json"), "--out", str(a_file))
    assert code == 2 and err.strip() == f"error: --out: {a_file} is not a directory"


def test_injected_faults_are_shaded_on_the_time_series() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from etcdbench.report.plot import PlotRun, _mark_faults

    run = load(DATA / "results-v2.json")["runs"][0]
    run["faults"] = [
        {"fault": "pause@1:1.5", "started_s": 1.0, "ended_s": 2.5},
        {"fault": "compact@2", "started_s": 2.0, "ended_s": 2.0},
    ]
    ax = Figure().subplots()
    assert _mark_faults(ax, [PlotRun("r", Run.from_dict(run), "C0")]) == 2
    spans = []
    for p in ax.patches:
        assert isinstance(p, Rectangle)  # what axvspan draws
        spans.append(p.get_x())
    assert spans == [1.0, 2.0]
    assert [t.get_text() for t in ax.texts] == ["pause@1:1.5", "compact@2"]
