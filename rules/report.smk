# Report: the main table (one row per method: r1, r2_5, c_bar, rho_bar, then
# mu_z / Pos / Sig per channel at K = main_k), K-sweep and spectrum figures.


if SYMBOLIC:

    rule report:
        input:
            diagnostics=stage_outputs("diagnostics"),
            homogeneity=stage_outputs("homogeneity"),
        output:
            html=f"{RESULTS}/report.html",
            md=f"{RESULTS}/report.md",
            summary=f"{RESULTS}/summary.json",
        log:
            f"{LOGS}/report.log",
        conda:
            ENV
        params:
            args=jparams(
                experiment=config["experiment"],
                main_k=config["homogeneity"]["main_k"],
                rows=SYMBOLIC_ROWS,
                domain="symbolic",
                **({"labels": report_labels(SYMBOLIC_ROWS)} if EXTERNAL_SYMBOLIC else {}),
            ),
        shell:
            "aria report --diagnostics {input.diagnostics} --homogeneity {input.homogeneity} "
            "--params {params.args:q} "
            "--out-html {output.html} --out-md {output.md} --out-summary {output.summary} > {log} 2>&1"


rule audio_report:
    input:
        diagnostics=audio_row_outputs("diagnostics"),
        homogeneity=audio_row_outputs("homogeneity"),
        manifest=audio_manifest(),
        audio=f"{ARES}/queries/audio",
    output:
        html=f"{ARES}/report.html",
        md=f"{ARES}/report.md",
        summary=f"{ARES}/summary.json",
    log:
        f"{ARES}/logs/report.log",
    conda:
        ENV
    params:
        args=jparams(
            experiment=AUDIO.get("experiment"),
            main_k=config["homogeneity"]["main_k"],
            rows=AUDIO_ROWS,
            domain="audio",
            root=audio_root(),
            **({"labels": report_labels(AUDIO_ROWS)} if report_labels(AUDIO_ROWS) else {}),
        ),
    shell:
        "aria report --diagnostics {input.diagnostics} --homogeneity {input.homogeneity} "
        "--manifest {input.manifest} --queries-audio {input.audio} --params {params.args:q} "
        "--out-html {output.html} --out-md {output.md} --out-summary {output.summary} > {log} 2>&1"
