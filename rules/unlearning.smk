# Unlearning-based attribution (docs/spec.md §8; the second source paper; docs/methods.md "Unlearning"):
# per stage a diagonal Fisher of model 0 (cached per side: masked or full training losses),
# one job per chunk of queries (GPU jobs, spread by a cluster), merged into the stage's
# score store scores/<stage>/unlearning.zarr, which then goes through diagnostics,
# track level, homogeneity, residual and report like any method. The train-to-train
# self-influence grid (one job per stage and grid point) and the comparison with the
# other methods (one job per experiment) feed the report.


rule unlearning_fisher:
    input:
        model=results("models/{stage}/m0.pt"),
        segments=results("segments/{stage}/train.npz"),
    output:
        fisher=results("unlearning/{stage}/fisher_{side}.pt"),
    log:
        logs("unlearning_fisher/{stage}/{side}.log"),
    benchmark:
        benchmarks("unlearning_fisher/{stage}/{side}.tsv")
    wildcard_constraints:
        side="masked|full",
    conda:
        ENV
    threads: 1
    resources:
        gpu=GPU,
    params:
        args=unlearning_fisher_params,
    shell:
        "aria unlearning-fisher --model {input.model} --segments {input.segments} --params {params.args:q} "
        "--out {output.fisher} --threads {threads} > {log} 2>&1"


rule unlearning_chunk:
    input:
        model=results("models/{stage}/m0.pt"),
        segments=results("segments/{stage}/train.npz"),
        queries=results("queries/{stage}/queries.npz"),
        fisher=lambda w: results(f"unlearning/{w.stage}/fisher_{fisher_side(w)}.pt", w.exp),
    output:
        chunk=results("unlearning/{stage}/chunks/q{chunk}.npz"),
    log:
        logs("unlearning_chunk/{stage}/q{chunk}.log"),
    benchmark:
        benchmarks("unlearning_chunk/{stage}/q{chunk}.tsv")
    wildcard_constraints:
        chunk=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        gpu=GPU,
    params:
        args=unlearning_chunk_params,
    shell:
        "aria unlearning-scores --model {input.model} --segments {input.segments} --queries {input.queries} "
        "--fisher {input.fisher} --params {params.args:q} --out {output.chunk} --threads {threads} > {log} 2>&1"


rule unlearning_merge:
    input:
        chunks=unlearning_chunk_files,
    output:
        scores=directory(results("scores/{stage}/unlearning.zarr")),
    log:
        logs("unlearning_merge/{stage}.log"),
    conda:
        ENV
    shell:
        "aria unlearning-merge --chunks {input.chunks} --out {output.scores} > {log} 2>&1"


rule unlearning_selfinfluence:
    input:
        model=results("models/{stage}/m0.pt"),
        segments=results("segments/{stage}/train.npz"),
        queries=results("queries/{stage}/queries.npz"),
        fisher=selfinfluence_fisher,
    output:
        json=results("unlearning/{stage}/selfinfluence/{point}.json"),
    log:
        logs("unlearning_selfinfluence/{stage}/{point}.log"),
    benchmark:
        benchmarks("unlearning_selfinfluence/{stage}/{point}.tsv")
    wildcard_constraints:
        point=r"[A-Za-z0-9_.+-]+",
    conda:
        ENV
    threads: 1
    resources:
        gpu=GPU,
    params:
        args=selfinfluence_params,
    shell:
        "aria unlearning-selfinfluence --model {input.model} --segments {input.segments} "
        "--queries {input.queries} --fisher {input.fisher} --params {params.args:q} --out {output.json} "
        "--threads {threads} > {log} 2>&1"


if SYMBOLIC and compare_outputs(EXP, "symbolic"):

    rule symbolic_unlearning_compare:
        input:
            compare_inputs(EXP, "symbolic"),
        output:
            json=results("unlearning/compare.json", EXP),
        log:
            logs("unlearning_compare.log", EXP),
        conda:
            ENV
        params:
            spec=json.dumps(compare_spec(EXP, "symbolic")),
        shell:
            "aria unlearning-compare --spec {params.spec:q} --out {output.json} > {log} 2>&1"


if AUDIO and compare_outputs(AUDIO_EXP, "audio"):

    rule audio_unlearning_compare:
        input:
            compare_inputs(AUDIO_EXP, "audio"),
        output:
            json=results("unlearning/compare.json", AUDIO_EXP),
        log:
            logs("unlearning_compare.log", AUDIO_EXP),
        conda:
            ENV
        params:
            spec=json.dumps(compare_spec(AUDIO_EXP, "audio")),
        shell:
            "aria unlearning-compare --spec {params.spec:q} --out {output.json} > {log} 2>&1"
