# Attribution: projected gradients per (model, checkpoint) -- the GPU jobs -- then one score matrix
# per method from the shared feature cache, its reliability diagnostics and (audio) its track-level
# form; the embedding baselines; and the score matrices a user computed elsewhere.


rule project_gradients:
    input:
        **stage_inputs("model", "segments", "queries"),
    output:
        out=directory(results("features/{stage}/m{m}_c{c}.zarr")),
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
        **aria_job("project"),
    shell:
        "aria {params.job} --cache-mib {resources.proj_cache_mib} --threads {threads} > {log} 2>&1"


# the same projection at another k, for a sensitivity grid over k (no training)
use rule project_gradients as project_gradients_k with:
    output:
        out=directory(results("features/{stage}/k{k}/m{m}_c{c}.zarr")),
    log:
        logs("project_gradients/{stage}/k{k}/m{m}_c{c}.log"),
    benchmark:
        benchmarks("project_gradients/{stage}/k{k}/m{m}_c{c}.tsv")


use rule gpu_job as kfac_covariance with:
    input:
        **stage_inputs("model", "segments"),
    output:
        out=results("features/{stage}/kfac/m{m}.npz"),
    log:
        logs("kfac_covariance/{stage}/m{m}.log"),
    benchmark:
        benchmarks("kfac_covariance/{stage}/m{m}.tsv")
    params:
        **aria_job("kfac-covariance"),


use rule gpu_job as project_factored with:
    input:
        unpack(factored_inputs),
    output:
        out=directory(results("features/{stage}/{method}/m{m}.zarr")),
    log:
        logs("project_factored/{stage}/{method}/m{m}.log"),
    benchmark:
        benchmarks("project_factored/{stage}/{method}/m{m}.tsv")
    wildcard_constraints:
        method=one_of(m.name for m in registry.gradient_methods() if m.reads == "factored"),
    params:
        **aria_job("project-factored", wildcards=["method"]),


use rule engine_job as score with:
    input:
        features=method_feature_stores,
    output:
        out=directory(results("scores/{stage}/{method}.zarr")),
    log:
        logs("score/{stage}/{method}.log"),
    benchmark:
        benchmarks("score/{stage}/{method}.tsv")
    wildcard_constraints:
        stage=one_of(sorted({s for _, s in STAGES})),
        method=one_of(m.name for m in registry.gradient_methods()),
    params:
        **aria_job("score", wildcards=["method"], extra={"engine": COMPUTE["engine"]}),


use rule engine_job as diagnostics with:
    input:
        scores=results("scores/{stage}/{method}.zarr"),
        replica=replica_stores,
    output:
        out=results("diagnostics/{stage}/{method}.json"),
    log:
        logs("diagnostics/{stage}/{method}.log"),
    benchmark:
        benchmarks("diagnostics/{stage}/{method}.tsv")
    params:
        **aria_job("diagnostics", extra=lambda w, input: dict(replica_options(w, input), engine=COMPUTE["engine"])),


# an audio stage's segment-level matrix as a track-level one (docs/spec.md §3): what its
# homogeneity, cards and planted retrieval read
use rule engine_job as tracklevel with:
    input:
        scores=results("scores/{stage}/{method}.zarr", AUDIO_EXP),
        segments=results("segments/{stage}/train.npz", AUDIO_EXP),
    output:
        out=directory(results("tracklevel/{stage}/{method}.zarr", AUDIO_EXP)),
    log:
        logs("tracklevel/{stage}/{method}.log", AUDIO_EXP),
    benchmark:
        benchmarks("tracklevel/{stage}/{method}.tsv", AUDIO_EXP)
    params:
        **aria_job("tracklevel", extra={"engine": COMPUTE["engine"]}),


# The embedding baselines (docs/methods.md): each encoder's frames of the whole corpus, then per
# query the time-averaged and the all-against-all (10 s windows, 1 s hop, maximum) similarities.
use rule cpu_job as embed_corpus with:
    input:
        manifest=audio_manifest(),
    output:
        out=results("embeddings/{encoder}.npz", AUDIO_EXP),
    log:
        logs("embed_corpus/{encoder}.log", AUDIO_EXP),
    benchmark:
        benchmarks("embed_corpus/{encoder}.tsv", AUDIO_EXP)
    # long and needing only the corpus: started first, it runs beside the training instead of
    # alone at the end of the run
    priority: 10
    params:
        **aria_job("embed-corpus", wildcards=["encoder"]),


use rule cpu_job as embed_baseline with:
    input:
        corpus=results("embeddings/{encoder}.npz", AUDIO_EXP),
        queries=results("queries/semantic/queries.npz", AUDIO_EXP),
        queries_audio=results("queries/audio", AUDIO_EXP),
    output:
        out=directory(results("scores/baseline/{encoder}.zarr", AUDIO_EXP)),
        out_aaa=directory(results("scores/baseline/{encoder}_aaa.zarr", AUDIO_EXP)),
    log:
        logs("embed_baseline/{encoder}.log", AUDIO_EXP),
    benchmark:
        benchmarks("embed_baseline/{encoder}.tsv", AUDIO_EXP)
    params:
        **aria_job("embed-baseline", wildcards=["encoder"]),


if EXTERNAL:

    rule import_scores:
        input:
            unpack(external_inputs),
        output:
            scores=directory(results("scores/{stage}/{method}.zarr")),
        log:
            logs("import_scores/{stage}/{method}.log"),
        benchmark:
            benchmarks("import_scores/{stage}/{method}.tsv")
        wildcard_constraints:
            method=one_of(EXTERNAL),
        conda:
            ENV
        params:
            transpose=lambda w: "--transpose" if EXTERNAL[w.method].get("transpose") else "",
            expect_rows=lambda w, input: f"--expect-rows {input.expect_rows}" if "expect_rows" in input.keys() else "",
        shell:
            "aria import-scores {input.matrix} --rows {input.rows} --cols {input.cols} "
            "--expect-cols {input.expect_cols} {params.expect_rows} {params.transpose} "
            "--name {wildcards.method} --out {output.scores} > {log} 2>&1"
