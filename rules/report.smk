# Report: the main table (one row per method: r1, r2_5, c_bar, rho_bar, then
# mu_z / Pos / Sig per channel at K = main_k), K-sweep and spectrum figures.


rule report:
    input:
        diagnostics=stage_outputs("diagnostics"),
        homogeneity=stage_outputs("homogeneity"),
        segments=f"{RESULTS}/segments/symbolic/segments.csv",
    output:
        html=f"{RESULTS}/report.html",
        md=f"{RESULTS}/report.md",
        summary=f"{RESULTS}/summary.json",
    log:
        f"{LOGS}/report.log",
    params:
        args=jparams(experiment=config["experiment"], main_k=config["homogeneity"]["main_k"],
                     methods=METHODS),
    conda:
        ENV
    shell:
        "aria report --diagnostics {input.diagnostics} --homogeneity {input.homogeneity} "
        "--segments {input.segments} --params {params.args:q} "
        "--out-html {output.html} --out-md {output.md} --out-summary {output.summary} > {log} 2>&1"
