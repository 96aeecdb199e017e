"""``snakemake --report report.zip`` packs the rules' report items: the HTML report, summary.json,
and the figure (PNG) and table (CSV) folders, with their captions."""

import base64
import csv
import io
import json
import re
import zipfile

from conftest import run_snakemake


def _by_name(read, name):
    return [data for n, data in read.items() if n.rsplit("/", 1)[-1] == name]


def test_snakemake_report_zip_holds_the_report_items(tiny_run, tmp_path):
    out = tmp_path / "report.zip"
    run_snakemake(tiny_run, "--report", str(out))
    with zipfile.ZipFile(out) as z:
        read = {n: z.read(n) for n in z.namelist()}
    # Snakemake stores each item under data/raw/<hash>/<file name>, beside its own report.html
    page = next(data for n, data in read.items() if n.count("/") == 1 and n.endswith("/report.html")).decode()
    items = {n: d for n, d in read.items() if "/data/raw/" in n}
    pngs = [d for n, d in items.items() if n.endswith(".png")]
    main_tables = _by_name(items, "01_main_table.csv")

    embedded_all = []
    for exp in ("tiny", "tiny_audio"):
        res = tiny_run / "results" / exp
        assert (res / "report.html").read_bytes() in _by_name(items, "report.html")
        summary = json.loads((res / "summary.json").read_text())
        assert summary in [json.loads(d) for d in _by_name(items, "summary.json")]
        embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", (res / "report.html").read_text())
        assert len(set(embedded)) >= 2
        embedded_all += [base64.b64decode(e) for e in embedded]
        # the main table as CSV: its title line, then one row per method in the report's order
        labels = [m["label"] for m in summary["methods"].values()]
        parsed = []
        for d in main_tables:
            lines = d.decode().splitlines()
            assert lines[0] == "# Main table"
            parsed.append([r[0] for r in list(csv.reader(io.StringIO("\n".join(lines[1:]))))[1:]])
        assert labels in parsed, (exp, labels, parsed)
    # every figure either HTML report embeds is a PNG item, byte for byte, and nothing else is
    assert sorted(pngs) == sorted(set(embedded_all)) or set(pngs) == set(embedded_all)
    assert len(pngs) == len(set(embedded_all))
    assert len(main_tables) == 2

    # categories and captions travel with the items
    for phrase in (
        "Symbolic: tiny",
        "Audio: tiny_audio",
        "Self-contained HTML",
        "The report&#39;s figures, as PNG",
        "The report&#39;s tables as CSV",
    ):
        assert phrase in page or phrase.replace("&#39;", "'") in page, phrase
