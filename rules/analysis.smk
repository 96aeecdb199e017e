# Reading the evidence safely (docs/spec.md §7, docs/evidence.md): every report row's
# score matrix without its leading singular axis (the residual), homogeneity again on it
# (audio: made track-level first, as S is), and the axis-channel alignment of the removed
# axis, in one job per row. On unless analysis.residual is false.


use rule cpu_job as residual with:
    input:
        unpack(residual_inputs),
    output:
        out=directory(results("residual/{stage}/{method}.zarr")),
        out_homogeneity=results("homogeneity_residual/{stage}/{method}.json"),
        out_alignment=results("alignment/{stage}/{method}.json"),
    log:
        logs("residual/{stage}/{method}.log"),
    benchmark:
        benchmarks("residual/{stage}/{method}.tsv")
    params:
        **aria_job("residual"),


# Sensitivity (docs/spec.md §7, paper App. B.5; docs/evidence.md "Sensitivity to hyperparameters"): mu_z of every grid point of
# config sensitivity.grid. A scoring parameter re-solves from the cached feature stores; a
# dense method's k reads stores projected at that k (rule project_gradients_k); nothing trains.
use rule cpu_job as sweep_point with:
    input:
        unpack(sweep_inputs),
    output:
        out=results("sensitivity/{stage}/{method}/{point}.json"),
    log:
        logs("sensitivity/{stage}/{method}/{point}.log"),
    benchmark:
        benchmarks("sensitivity/{stage}/{method}/{point}.tsv")
    params:
        **aria_job("sweep-point", wildcards=["method"]),
