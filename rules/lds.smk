# Ground truth by counterfactual retraining (docs/spec.md §9): per (experiment, stage) with `lds`
# enabled, one retraining job per random subset of the training segments, gathered into
# results/<exp>/lds/<stage>/ground_truth.zarr; then one LDS job per method, which reads
# only its score store and the ground truth (changing a method's parameters never
# reruns the retraining).


# only the stages with lds: true; the rest of the chain reads these subsets
use rule cpu_job as lds_retrain with:
    input:
        **stage_inputs("segments", "queries"),
    output:
        out=results("lds/{stage}/subsets/s{subset}.npz"),
    log:
        logs("lds_retrain/{stage}/s{subset}.log"),
    benchmark:
        benchmarks("lds_retrain/{stage}/s{subset}.tsv")
    wildcard_constraints:
        stage=one_of(LDS_RETRAIN_STAGES),
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        **aria_job("lds-retrain"),


use rule cpu_job as lds_ground_truth with:
    input:
        unpack(lds_ground_truth_inputs),
    output:
        out=directory(results("lds/{stage}/ground_truth.zarr")),
    log:
        logs("lds_ground_truth/{stage}.log"),
    benchmark:
        benchmarks("lds_ground_truth/{stage}.tsv")
    wildcard_constraints:
        stage=one_of(LDS_RETRAIN_STAGES),
    params:
        **aria_job("lds-ground-truth"),


# The seed-noise ceiling of the targets and the LDS of the reference rows (a Gaussian matrix, one
# random ranking for every query, the same-collection indicator, the collection prior), computed
# once per stage from the ground truth alone; the report's validation table reads them (never the
# main table).
use rule cpu_job as lds_references with:
    input:
        ground_truth=results("lds/{stage}/ground_truth.zarr"),
    output:
        out=results("lds/{stage}/references.json"),
    log:
        logs("lds_references/{stage}.log"),
    benchmark:
        benchmarks("lds_references/{stage}.tsv")
    params:
        **aria_job("lds-references"),


use rule cpu_job as lds with:
    input:
        scores=results("scores/{stage}/{method}.zarr"),
        ground_truth=results("lds/{stage}/ground_truth.zarr"),
    output:
        out=results("lds/{stage}/{method}.json"),
    log:
        logs("lds/{stage}/{method}.log"),
    benchmark:
        benchmarks("lds/{stage}/{method}.tsv")
    params:
        **aria_job("lds"),
