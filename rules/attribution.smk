# Attribution: projected gradients per (model, checkpoint) -- the GPU jobs -- then
# one score matrix per method from the shared feature cache, then its
# reliability diagnostics.


rule project_gradients:
    input:
        model=results("models/{stage}/m{m}.pt"),
        segments=results("segments/{stage}/train.npz"),
        queries=results("queries/{stage}/queries.npz"),
    output:
        features=directory(results("features/{stage}/m{m}_c{c}.zarr")),
    log:
        logs("project_gradients/{stage}/m{m}_c{c}.log"),
    benchmark:
        benchmarks("project_gradients/{stage}/m{m}_c{c}.tsv")
    conda:
        ENV
    threads: 1
    resources:
        gpu=GPU,
        proj_cache_mib=projection_cache_mib,
    params:
        args=projection_params,
    shell:
        "aria project --model {input.model} --segments {input.segments} --queries {input.queries} "
        "--params {params.args:q} --out {output.features} --threads {threads} "
        "--cache-mib {resources.proj_cache_mib} > {log} 2>&1"


# the same projection at another k, for a sensitivity grid over k (no training)
use rule project_gradients as project_gradients_k with:
    output:
        features=directory(results("features/{stage}/k{k}/m{m}_c{c}.zarr")),
    log:
        logs("project_gradients/{stage}/k{k}/m{m}_c{c}.log"),
    benchmark:
        benchmarks("project_gradients/{stage}/k{k}/m{m}_c{c}.tsv")
    wildcard_constraints:
        k=r"\d+",
    params:
        args=projection_k_params,


rule kfac_covariance:
    input:
        model=results("models/{stage}/m{m}.pt"),
        segments=results("segments/{stage}/train.npz"),
    output:
        covariance=results("features/{stage}/kfac/m{m}.npz"),
    log:
        logs("kfac_covariance/{stage}/m{m}.log"),
    benchmark:
        benchmarks("kfac_covariance/{stage}/m{m}.tsv")
    conda:
        ENV
    threads: 1
    resources:
        gpu=GPU,
    params:
        args=lambda w: jparams(batch_size=stage_cfg(w)["projection"]["batch_size"], device=config["device"]),
    shell:
        "aria kfac-covariance --model {input.model} --segments {input.segments} --params {params.args:q} "
        "--out {output.covariance} --threads {threads} > {log} 2>&1"


rule project_factored:
    input:
        unpack(factored_inputs),
    output:
        features=directory(results("features/{stage}/{method}/m{m}.zarr")),
    log:
        logs("project_factored/{stage}/{method}/m{m}.log"),
    benchmark:
        benchmarks("project_factored/{stage}/{method}/m{m}.tsv")
    wildcard_constraints:
        method="|".join(m.name for m in registry.gradient_methods() if m.reads == "factored"),
    conda:
        ENV
    threads: 1
    resources:
        gpu=GPU,
    params:
        args=factored_params,
        covariance=covariance_arg,
    shell:
        "aria project-factored --method {wildcards.method} --model {input.model} --segments {input.segments} "
        "--queries {input.queries} {params.covariance} --params {params.args:q} --out {output.features} "
        "--threads {threads} > {log} 2>&1"


rule score:
    input:
        features=method_feature_stores,
    output:
        scores=directory(results("scores/{stage}/{method}.zarr")),
    log:
        logs("score/{stage}/{method}.log"),
    benchmark:
        benchmarks("score/{stage}/{method}.tsv")
    wildcard_constraints:
        stage="|".join(sorted({s for _, s in STAGES})),
        method="|".join(m.name for m in registry.gradient_methods()),
    conda:
        ENV
    threads: ENGINE_THREADS
    resources:
        dask_scheduler=COMPUTE["scheduler"],
    params:
        args=method_params,
        engine=COMPUTE["engine"],
    shell:
        "aria score --method {wildcards.method} --features {input.features} "
        "--params {params.args:q} --engine {params.engine} --scheduler {resources.dask_scheduler:q} "
        "--threads {threads} --out {output.scores} > {log} 2>&1"


rule diagnostics:
    input:
        scores=results("scores/{stage}/{method}.zarr"),
        replica=replica_stores,
    output:
        json=results("diagnostics/{stage}/{method}.json"),
    log:
        logs("diagnostics/{stage}/{method}.log"),
    benchmark:
        benchmarks("diagnostics/{stage}/{method}.tsv")
    conda:
        ENV
    threads: ENGINE_THREADS
    resources:
        dask_scheduler=COMPUTE["scheduler"],
    params:
        engine=COMPUTE["engine"],
        replica=replica_args,
    shell:
        "aria diagnostics --scores {input.scores} --out {output.json} --engine {params.engine} "
        "--scheduler {resources.dask_scheduler:q} --threads {threads} {params.replica} > {log} 2>&1"


if EXTERNAL:

    rule import_scores:
        input:
            unpack(external_inputs),
        output:
            scores=directory(results("scores/{stage}/{method}.zarr")),
        log:
            logs("import_scores/{stage}/{method}.log"),
        wildcard_constraints:
            method="|".join(EXTERNAL),
        conda:
            ENV
        params:
            transpose=lambda w: "--transpose" if EXTERNAL[w.method].get("transpose") else "",
            expect_rows=lambda w, input: f"--expect-rows {input.expect_rows}" if "expect_rows" in input.keys() else "",
        shell:
            "aria import-scores {input.matrix} --rows {input.rows} --cols {input.cols} "
            "--expect-cols {input.expect_cols} {params.expect_rows} {params.transpose} "
            "--name {wildcards.method} --out {output.scores} > {log} 2>&1"
