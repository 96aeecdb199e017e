# Ground truth by counterfactual retraining (docs/spec.md §9): per (experiment, stage) with `lds`
# enabled, one retraining job per random subset of the training segments, gathered into
# results/<exp>/lds/<stage>/ground_truth.zarr; then one LDS job per method, which reads
# only its score store and the ground truth (changing a method's parameters never
# reruns the retraining).


rule lds_retrain:
    input:
        segments=results("segments/{stage}/train.npz"),
        queries=results("queries/{stage}/queries.npz"),
    output:
        subset=results("lds/{stage}/subsets/s{subset}.npz"),
    log:
        logs("lds_retrain/{stage}/s{subset}.log"),
    benchmark:
        benchmarks("lds_retrain/{stage}/s{subset}.tsv")
    wildcard_constraints:
        stage="|".join(LDS_STAGES) or "^$",
        subset=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        args=lds_retrain_params,
    shell:
        "aria lds-retrain --segments {input.segments} --queries {input.queries} --params {params.args:q} "
        "--out {output.subset} --threads {threads} > {log} 2>&1"


rule lds_ground_truth:
    input:
        unpack(lds_ground_truth_inputs),
    output:
        ground_truth=directory(results("lds/{stage}/ground_truth.zarr")),
    log:
        logs("lds_ground_truth/{stage}.log"),
    wildcard_constraints:
        stage="|".join(LDS_STAGES) or "^$",
    conda:
        ENV
    params:
        args=lambda w: jparams(
            seed=config["seeds"]["lds"],
            stage=w.stage,
            **{k: lds_cfg(w)[k] for k in ("alpha", "runs", "recipe", "init")},
        ),
    shell:
        "aria lds-ground-truth --subsets {input.subsets} --segments {input.segments} --queries {input.queries} "
        "--manifest {input.manifest} --params {params.args:q} --out {output.ground_truth} > {log} 2>&1"


# The seed-noise ceiling of the targets and the LDS of the reference rows (a Gaussian matrix, one
# random ranking for every query, the same-collection indicator, the collection prior), computed
# once per stage from the ground truth alone; the report's validation table reads them (never the
# main table).
rule lds_references:
    input:
        ground_truth=results("lds/{stage}/ground_truth.zarr"),
    output:
        json=results("lds/{stage}/references.json"),
    log:
        logs("lds_references/{stage}.log"),
    wildcard_constraints:
        stage="|".join(LDS_STAGES) or "^$",
    conda:
        ENV
    params:
        args=lambda w: jparams(n_boot=lds_cfg(w)["n_boot"], seed=config["seeds"]["lds"], stage=w.stage),
    shell:
        "aria lds-references --ground-truth {input.ground_truth} --params {params.args:q} "
        "--out {output.json} > {log} 2>&1"


rule lds:
    input:
        scores=results("scores/{stage}/{method}.zarr"),
        ground_truth=results("lds/{stage}/ground_truth.zarr"),
    output:
        json=results("lds/{stage}/{method}.json"),
    log:
        logs("lds/{stage}/{method}.log"),
    wildcard_constraints:
        stage="|".join(LDS_STAGES) or "^$",
    conda:
        ENV
    params:
        args=lambda w: jparams(n_boot=lds_cfg(w)["n_boot"], seed=config["seeds"]["lds"]),
    shell:
        "aria lds --scores {input.scores} --ground-truth {input.ground_truth} --params {params.args:q} "
        "--out {output.json} > {log} 2>&1"
