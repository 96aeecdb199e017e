# Unlearning-based attribution (docs/spec.md §8; the second source paper; docs/methods.md "Unlearning"):
# per stage a diagonal Fisher of model 0 (cached per side: masked or full training losses),
# one job per chunk of queries (GPU jobs, spread by a cluster), merged into the stage's
# score store scores/<stage>/unlearning.zarr, which then goes through diagnostics,
# track level, homogeneity, residual and report like any method. The train-to-train
# self-influence grid (one job per stage and grid point) and the comparison with the
# other methods (one job per experiment) feed the report.


use rule gpu_job as unlearning_fisher with:
    input:
        **stage_inputs("model", "segments", m=0),
    output:
        out=results("unlearning/{stage}/fisher_{side}.pt"),
    log:
        logs("unlearning_fisher/{stage}/{side}.log"),
    benchmark:
        benchmarks("unlearning_fisher/{stage}/{side}.tsv")
    params:
        **aria_job("unlearning-fisher"),


use rule gpu_job as unlearning_chunk with:
    input:
        **stage_inputs("model", "segments", "queries", m=0),
        fisher=lambda w: results(f"unlearning/{w.stage}/fisher_{fisher_side(w)}.pt", w.exp),
    output:
        out=results("unlearning/{stage}/chunks/q{chunk}.npz"),
    log:
        logs("unlearning_chunk/{stage}/q{chunk}.log"),
    benchmark:
        benchmarks("unlearning_chunk/{stage}/q{chunk}.tsv")
    params:
        **aria_job("unlearning-scores"),


use rule cpu_job as unlearning_merge with:
    input:
        parts=unlearning_chunk_files,
    output:
        out=directory(results("scores/{stage}/unlearning.zarr")),
    log:
        logs("unlearning_merge/{stage}.log"),
    benchmark:
        benchmarks("unlearning_merge/{stage}.tsv")
    params:
        **aria_job("unlearning-merge"),


use rule gpu_job as unlearning_selfinfluence with:
    input:
        **stage_inputs("model", "segments", "queries", m=0),
        fisher=selfinfluence_fisher,
    output:
        out=results("unlearning/{stage}/selfinfluence/{point}.json"),
    log:
        logs("unlearning_selfinfluence/{stage}/{point}.log"),
    benchmark:
        benchmarks("unlearning_selfinfluence/{stage}/{point}.tsv")
    params:
        **aria_job("unlearning-selfinfluence"),


# unlearning against the experiment's other methods (docs/methods.md "Unlearning"), when a stage
# runs unlearning and another method
use rule cpu_job as unlearning_compare with:
    input:
        compare_inputs,
    output:
        out=results("unlearning/compare.json"),
    log:
        logs("unlearning_compare.log"),
    benchmark:
        benchmarks("unlearning_compare.tsv")
    params:
        **aria_job("unlearning-compare", extra=lambda w, input: {"spec": compare_spec(w.exp)}),
