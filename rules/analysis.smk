# Reading the evidence safely (docs/spec.md §7, docs/evidence.md): every report row's
# score matrix without its leading singular axis (the residual), homogeneity again on it
# (audio: made track-level first, as S is), and the axis-channel alignment of the removed
# axis, in one job per row. On unless analysis.residual is false.


rule residual:
    input:
        unpack(residual_inputs),
    output:
        scores=directory(results("residual/{stage}/{method}.zarr")),
        homogeneity=results("homogeneity_residual/{stage}/{method}.json"),
        alignment=results("alignment/{stage}/{method}.json"),
    log:
        logs("residual/{stage}/{method}.log"),
    benchmark:
        benchmarks("residual/{stage}/{method}.tsv")
    conda:
        ENV
    params:
        args=residual_params,
        extra=lambda w, input: " ".join(f"--{k} {input[k]}" for k in ("manifest", "segments") if k in input.keys()),
    shell:
        "aria residual --scores {input.scores} --features {input.features} --null {input.null} {params.extra} "
        "--params {params.args:q} --out {output.scores} --out-homogeneity {output.homogeneity} "
        "--out-alignment {output.alignment} > {log} 2>&1"


# Sensitivity (docs/spec.md §7, paper App. B.5; docs/evidence.md "Sensitivity to hyperparameters"): mu_z of every grid point of
# config sensitivity.grid. A scoring parameter re-solves from the cached feature stores; a
# dense method's k reads stores projected at that k (rule project_gradients_k); nothing trains.
rule sweep_point:
    input:
        unpack(sweep_inputs),
    output:
        json=results("sensitivity/{stage}/{method}/{point}.json"),
    log:
        logs("sensitivity/{stage}/{method}/{point}.log"),
    benchmark:
        benchmarks("sensitivity/{stage}/{method}/{point}.tsv")
    wildcard_constraints:
        point=r"[A-Za-z0-9_.+-]+",
    conda:
        ENV
    params:
        args=sweep_params,
        extra=lambda w, input: " ".join(f"--{k} {input[k]}" for k in ("manifest", "segments") if k in input.keys())
        + "".join(
            f" --{k.replace('_', '-')} {' '.join(input[k])}" for k in ("replica_a", "replica_b") if k in input.keys()
        ),
    shell:
        "aria sweep-point --method {wildcards.method} --features {input.features} --evidence {input.evidence} "
        "--null {input.null} {params.extra} --params {params.args:q} --out {output.json} > {log} 2>&1"
