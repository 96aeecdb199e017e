# Report, per experiment: the main table (one row per method: r1, r2_5, c_bar, rho_bar, then
# mu_z / Pos / Sig per channel at K = main_k), K-sweep and spectrum figures, and the per-query
# evidence cards (docs/evidence.md "Per-query evidence cards": one HTML page per query with the media
# it plays, in results/<exp>/cards/ next to report.html).
# The HTML report, summary.json and the figures and tables (PNG / CSV folders) are report items:
# `snakemake --report report.zip` packs them (report_item in common.smk), with the captions in
# rules/captions/.


use rule cpu_job as report with:
    input:
        unpack(report_inputs),
    output:
        out_html=report_item(results("report.html"), "report"),
        out_md=results("report.md"),
        out_summary=report_item(results("summary.json"), "summary"),
        out_figures=report_item(results("report/figures"), "figures"),
        out_tables=report_item(results("report/tables"), "tables"),
    log:
        logs("report.log"),
    benchmark:
        benchmarks("report.tsv")
    params:
        **aria_job("report", extra=lambda w, input: {"cost": cost_arg(w.exp, ROWS[w.exp])}),


use rule cpu_job as cards with:
    input:
        cards_inputs,
    output:
        out=directory(results("cards")),
    log:
        logs("cards.log"),
    benchmark:
        benchmarks("cards.tsv")
    params:
        **aria_job("cards", extra=lambda w, input: {"spec": cards_spec(w.exp)}),
