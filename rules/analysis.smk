# Reading the evidence safely (SPEC §7, README "Reading the evidence"): every report row's
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
