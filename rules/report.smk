# Report: the main table (one row per method: r1, r2_5, c_bar, rho_bar, then
# mu_z / Pos / Sig per channel at K = main_k), K-sweep and spectrum figures.


if SYMBOLIC:

    rule symbolic_report:
        input:
            diagnostics=stage_outputs("diagnostics"),
            homogeneity=stage_outputs("homogeneity"),
            lds=stage_outputs("lds") if LDS_SYMBOLIC else [],
            residual=stage_outputs("homogeneity_residual") if ANALYSIS["residual"] else [],
            alignment=stage_outputs("alignment") if ANALYSIS["residual"] else [],
        output:
            html=results("report.html", EXP),
            md=results("report.md", EXP),
            summary=results("summary.json", EXP),
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
                verdict=ANALYSIS["verdict"],
                **({"labels": report_labels(SYMBOLIC_ROWS)} if EXTERNAL_SYMBOLIC else {}),
                **({"lds_rows": SYMBOLIC_ROWS} if LDS_SYMBOLIC else {}),
            ),
            lds=lds_report_arg,
            analysis=analysis_report_arg,
        shell:
            "aria report --diagnostics {input.diagnostics} --homogeneity {input.homogeneity} "
            "--params {params.args:q} {params.lds} {params.analysis} "
            "--out-html {output.html} --out-md {output.md} --out-summary {output.summary} > {log} 2>&1"


rule audio_report:
    input:
        diagnostics=audio_row_outputs("diagnostics"),
        homogeneity=audio_row_outputs("homogeneity"),
        lds=audio_lds_outputs(),
        residual=audio_row_outputs("homogeneity_residual") if ANALYSIS["residual"] else [],
        alignment=audio_row_outputs("alignment") if ANALYSIS["residual"] else [],
        manifest=audio_manifest(),
        audio=results("queries/audio", AUDIO_EXP),
    output:
        html=results("report.html", AUDIO_EXP),
        md=results("report.md", AUDIO_EXP),
        summary=results("summary.json", AUDIO_EXP),
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
            verdict=ANALYSIS["verdict"],
            root=audio_root(),
            **({"labels": report_labels(AUDIO_ROWS)} if report_labels(AUDIO_ROWS) else {}),
            **({"lds_rows": LDS_AUDIO_ROWS} if LDS_AUDIO_ROWS else {}),
        ),
        lds=lds_report_arg,
        analysis=analysis_report_arg,
    shell:
        "aria report --diagnostics {input.diagnostics} --homogeneity {input.homogeneity} "
        "--manifest {input.manifest} --queries-audio {input.audio} --params {params.args:q} {params.lds} "
        "{params.analysis} "
        "--out-html {output.html} --out-md {output.md} --out-summary {output.summary} > {log} 2>&1"
