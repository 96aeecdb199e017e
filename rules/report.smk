# Report: the main table (one row per method: r1, r2_5, c_bar, rho_bar, then
# mu_z / Pos / Sig per channel at K = main_k), K-sweep and spectrum figures.
# The HTML report, summary.json and the figures and tables (PNG / CSV folders) are report items:
# `snakemake --report report.zip` packs them (report_item in common.smk), with the captions in
# rules/captions/.

if SYMBOLIC:

    rule symbolic_report:
        input:
            diagnostics=stage_outputs("diagnostics"),
            homogeneity=stage_outputs("homogeneity"),
            lds=stage_outputs("lds") if LDS_SYMBOLIC else [],
            lds_references=lds_references(EXP, ["symbolic"]) if LDS_SYMBOLIC else [],
            residual=stage_outputs("homogeneity_residual") if ANALYSIS["residual"] else [],
            alignment=stage_outputs("alignment") if ANALYSIS["residual"] else [],
            pool=results("segments/symbolic/pool.json", EXP),
            manifest=corpus_manifest(),
            dropped=symbolic_dropped(),
            segments_csv=results("segments/symbolic/segments.csv", EXP),
            queries=results("queries/symbolic/queries.npz", EXP),
            sensitivity=sweep_outputs(EXP),
            selfinfluence=selfinfluence_outputs(EXP),
            compare=compare_outputs(EXP, "symbolic"),
            cards=results("cards", EXP),
            planted=stage_outputs("planted") if PLANTED else [],
        output:
            html=report_item(results("report.html", EXP), "symbolic", "report"),
            md=results("report.md", EXP),
            summary=report_item(results("summary.json", EXP), "symbolic", "summary"),
            figures=report_item(results("report/figures", EXP), "symbolic", "figures"),
            tables=report_item(results("report/tables", EXP), "symbolic", "tables"),
        log:
            logs("symbolic_report.log", EXP),
        conda:
            ENV
        params:
            args=jparams(
                experiment=config["experiment"],
                main_k=config["homogeneity"]["main_k"],
                rows=SYMBOLIC_ROWS,
                domain="symbolic",
                stages=["symbolic"],
                device=config["device"],
                verdict=ANALYSIS["verdict"],
                reference_seed=config["seeds"]["null_groups"],
                selfinfluence_reason=SELF.get("reason", ""),
                **({"labels": report_labels(SYMBOLIC_ROWS)} if EXTERNAL_SYMBOLIC else {}),
                **({"lds_rows": SYMBOLIC_ROWS} if LDS_SYMBOLIC else {}),
            ),
            lds=lds_report_arg,
            analysis=analysis_report_arg,
            cost=cost_arg(EXP, SYMBOLIC_ROWS),
        shell:
            "aria report --diagnostics {input.diagnostics} --homogeneity {input.homogeneity} "
            "--params {params.args:q} {params.lds} {params.analysis} --cost {params.cost:q} "
            "--pool {input.pool} --manifest {input.manifest} --dropped {input.dropped} "
            "--segments-csv {input.segments_csv} --queries {input.queries} --sensitivity {input.sensitivity} "
            "--selfinfluence {input.selfinfluence} --unlearning-compare {input.compare} --cards {input.cards} "
            "--out-html {output.html} --out-md {output.md} --out-summary {output.summary} "
            "--out-figures {output.figures} --out-tables {output.tables} "
            + ("--planted {input.planted} " if PLANTED else "")
            + "> {log} 2>&1"


rule audio_report:
    input:
        diagnostics=audio_row_outputs("diagnostics"),
        homogeneity=audio_row_outputs("homogeneity"),
        lds=audio_lds_outputs(),
        lds_references=lds_references(AUDIO_EXP, sorted({row_stage(k) for k in LDS_AUDIO_ROWS})),
        residual=audio_row_outputs("homogeneity_residual") if ANALYSIS["residual"] else [],
        alignment=audio_row_outputs("alignment") if ANALYSIS["residual"] else [],
        manifest=audio_manifest(),
        audio=results("queries/audio", AUDIO_EXP),
        pool=results("corpus/pool.json", AUDIO_EXP),
        dropped=results("corpus/dropped.csv", AUDIO_EXP),
        failures=expand(
            results("evidence/audio_features/shard{shard}_skipped.csv", AUDIO_EXP), shard=range(AUDIO_SHARDS)
        ),
        segments_csv=[results(f"segments/{s}/segments.csv", AUDIO_EXP) for s in AUDIO_STAGES],
        queries=[results(f"queries/{s}/queries.npz", AUDIO_EXP) for s in AUDIO_STAGES],
        sensitivity=sweep_outputs(AUDIO_EXP),
        selfinfluence=selfinfluence_outputs(AUDIO_EXP),
        compare=compare_outputs(AUDIO_EXP, "audio") if AUDIO else [],
        cards=results("cards", AUDIO_EXP),
        planted=audio_row_outputs("planted") if PLANTED else [],
    output:
        html=report_item(results("report.html", AUDIO_EXP), "audio", "report"),
        md=results("report.md", AUDIO_EXP),
        summary=report_item(results("summary.json", AUDIO_EXP), "audio", "summary"),
        figures=report_item(results("report/figures", AUDIO_EXP), "audio", "figures"),
        tables=report_item(results("report/tables", AUDIO_EXP), "audio", "tables"),
    log:
        logs("audio_report.log", AUDIO_EXP),
    conda:
        ENV
    params:
        args=jparams(
            experiment=AUDIO.get("experiment"),
            main_k=config["homogeneity"]["main_k"],
            rows=AUDIO_ROWS,
            domain="audio",
            stages=AUDIO_STAGES,
            device=config["device"],
            verdict=ANALYSIS["verdict"],
            reference_seed=config["seeds"]["null_groups"],
            selfinfluence_reason=SELF.get("reason", ""),
            root=audio_root(),
            **({"labels": report_labels(AUDIO_ROWS)} if report_labels(AUDIO_ROWS) else {}),
            **({"lds_rows": LDS_AUDIO_ROWS} if LDS_AUDIO_ROWS else {}),
        ),
        lds=lds_report_arg,
        analysis=analysis_report_arg,
        cost=cost_arg(AUDIO_EXP, AUDIO_ROWS) if AUDIO else "{}",
    shell:
        "aria report --diagnostics {input.diagnostics} --homogeneity {input.homogeneity} "
        "--manifest {input.manifest} --queries-audio {input.audio} --params {params.args:q} {params.lds} "
        "{params.analysis} --cost {params.cost:q} --pool {input.pool} --dropped {input.dropped} "
        "--feature-failures {input.failures} --segments-csv {input.segments_csv} --queries {input.queries} "
        "--sensitivity {input.sensitivity} --selfinfluence {input.selfinfluence} "
        "--unlearning-compare {input.compare} --cards {input.cards} "
        "--out-html {output.html} --out-md {output.md} --out-summary {output.summary} "
        "--out-figures {output.figures} --out-tables {output.tables} "
        + ("--planted {input.planted} " if PLANTED else "")
        + "> {log} 2>&1"


# Per-query evidence cards (docs/evidence.md "Per-query evidence cards"): one HTML page per query with the
# media it plays (the attributed windows, the queries), in results/<exp>/cards/ next to report.html.
if SYMBOLIC:

    rule symbolic_cards:
        input:
            cards_inputs(EXP, SYMBOLIC_ROWS, "symbolic"),
        output:
            cards=directory(results("cards", EXP)),
        log:
            logs("symbolic_cards.log", EXP),
        benchmark:
            benchmarks("symbolic_cards.tsv", EXP)
        conda:
            ENV
        params:
            spec=json.dumps(cards_spec(EXP, SYMBOLIC_ROWS, "symbolic")),
        shell:
            "aria cards --spec {params.spec:q} --out {output.cards} > {log} 2>&1"


if AUDIO:

    rule audio_cards:
        input:
            cards_inputs(AUDIO_EXP, AUDIO_ROWS, "audio"),
        output:
            cards=directory(results("cards", AUDIO_EXP)),
        log:
            logs("audio_cards.log", AUDIO_EXP),
        benchmark:
            benchmarks("audio_cards.tsv", AUDIO_EXP)
        conda:
            ENV
        params:
            spec=json.dumps(cards_spec(AUDIO_EXP, AUDIO_ROWS, "audio")),
        shell:
            "aria cards --spec {params.spec:q} --out {output.cards} > {log} 2>&1"
