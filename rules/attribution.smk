# Attribution: projected gradients per (model, checkpoint) -- the GPU jobs -- then
# one score matrix per method from the shared feature cache, then its
# reliability diagnostics.


rule project_gradients:
    input:
        model=f"{RESULTS}/models/m{{m}}.pt",
        segments=f"{RESULTS}/segments/train.npz",
        queries=f"{RESULTS}/queries/queries.npz",
    output:
        features=directory(f"{RESULTS}/features/m{{m}}_c{{c}}.zarr"),
    log:
        f"{LOGS}/project_gradients/m{{m}}_c{{c}}.log",
    benchmark:
        f"{BENCH}/project_gradients/m{{m}}_c{{c}}.tsv"
    params:
        args=lambda w: jparams(checkpoint=int(w.c), seed=config["seeds"]["projection"],
                               device=config["device"], **config["projection"]),
    threads: 1
    resources:
        gpu=1,
    conda:
        ENV
    shell:
        "aria project --model {input.model} --segments {input.segments} --queries {input.queries} "
        "--params {params.args:q} --out {output.features} --threads {threads} > {log} 2>&1"


rule score:
    input:
        features=lambda w: method_feature_stores(w.method),
    output:
        scores=directory(f"{RESULTS}/scores/{{method}}.zarr"),
    log:
        f"{LOGS}/score/{{method}}.log",
    benchmark:
        f"{BENCH}/score/{{method}}.tsv"
    params:
        args=lambda w: method_params(w.method),
    wildcard_constraints:
        method="|".join(METHODS),
    conda:
        ENV
    shell:
        "aria score --method {wildcards.method} --features {input.features} "
        "--params {params.args:q} --out {output.scores} > {log} 2>&1"


rule diagnostics:
    input:
        scores=f"{RESULTS}/scores/{{method}}.zarr",
    output:
        json=f"{RESULTS}/diagnostics/{{method}}.json",
    log:
        f"{LOGS}/diagnostics/{{method}}.log",
    conda:
        ENV
    shell:
        "aria diagnostics --scores {input.scores} --out {output.json} > {log} 2>&1"
