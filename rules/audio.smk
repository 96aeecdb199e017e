# Audio experiment: audio corpus, tokenizers, stage sequences, hierarchical queries,
# track-level matrices and evidence features. Active only when config has an
# `audio:` section. Training, gradient projection, scoring and diagnostics of the
# three stages go through the shared (experiment, stage) rules of
# rules/model.smk and rules/attribution.smk.


if AUDIO.get("corpus", {}).get("kind", "demo") == "demo":

    rule audio_demo_corpus:
        input:
            midi_manifest=corpus_manifest(),
        output:
            manifest=results("corpus/manifest.csv", AUDIO_EXP),
            dropped=results("corpus/dropped.csv", AUDIO_EXP),
        log:
            logs("audio_demo_corpus.log", AUDIO_EXP),
        benchmark:
            benchmarks("audio_demo_corpus.tsv", AUDIO_EXP)
        conda:
            ENV
        params:
            out_dir=lambda w, output: os.path.dirname(output.manifest),
            args=jparams(seed=config["seeds"]["corpus"], sr=AUDIO.get("sr"), **AUDIO.get("corpus", {}).get("demo", {})),
        shell:
            "aria audio-demo-corpus --midi-manifest {input.midi_manifest} --params {params.args:q} "
            "--out-dir {params.out_dir} > {log} 2>&1"

else:

    rule audio_import:
        input:
            audio_import_inputs(),
        output:
            manifest=results("corpus/manifest.csv", AUDIO_EXP),
            dropped=results("corpus/dropped.csv", AUDIO_EXP),
        log:
            main=logs("audio_import.log", AUDIO_EXP),
            # the dropped-tracks table also lives beside the log: when the import is refused (a split
            # left empty), Snakemake deletes the job's outputs but keeps its logs
            dropped=logs("audio_import_dropped.csv", AUDIO_EXP),
        conda:
            ENV
        params:
            args=jparams(sr=AUDIO.get("sr"), **{k: v for k, v in AUDIO.get("corpus", {}).items() if k != "demo"}),
        shell:
            "aria audio-import --params {params.args:q} --out {output.manifest} --out-dropped {log.dropped} "
            "> {log.main} 2>&1; cp {log.dropped} {output.dropped}"


rule audio_pool_check:
    input:
        manifest=audio_manifest(),
    output:
        json=results("corpus/pool.json", AUDIO_EXP),
    log:
        logs("audio_pool_check.log", AUDIO_EXP),
    priority: 100
    conda:
        ENV
    params:
        args=pool_check_params("audio"),
    # its warnings (too few queries, a K near the pool's size) reach the console as well as the log
    shell:
        "aria check-pool --manifest {input.manifest} --params {params.args:q} --out {output.json} > {log} 2>&1; "
        "grep -h ' WARNING ' {log} >&2 || true"


rule audio_features:
    input:
        manifest=audio_manifest(),
    output:
        shard=results("evidence/audio_features/shard{shard}.npz", AUDIO_EXP),
        failures=results("evidence/audio_features/shard{shard}_skipped.csv", AUDIO_EXP),
    log:
        logs("audio_features/shard{shard}.log", AUDIO_EXP),
    benchmark:
        benchmarks("audio_features/shard{shard}.tsv", AUDIO_EXP)
    conda:
        ENV
    threads: 1
    params:
        args=audio_feature_params,
    shell:
        "OMP_NUM_THREADS={threads} aria audio-features --manifest {input.manifest} --params {params.args:q} "
        "--out {output.shard} --out-failures {output.failures} --threads {threads} > {log} 2>&1"


rule merge_audio_features:
    input:
        shards=expand(results("evidence/audio_features/shard{shard}.npz", AUDIO_EXP), shard=range(AUDIO_SHARDS)),
    output:
        features=results("evidence/audio_features.npz", AUDIO_EXP),
    log:
        logs("merge_audio_features.log", AUDIO_EXP),
    conda:
        ENV
    shell:
        "aria merge-audio-features --shards {input.shards} --out {output.features} > {log} 2>&1"


rule audio_tokenize:
    input:
        manifest=audio_manifest(),
    output:
        tokens=results("tokens/tokens.npz", AUDIO_EXP),
        tokenizers=results("tokens/tokenizers.npz", AUDIO_EXP),
    log:
        logs("audio_tokenize.log", AUDIO_EXP),
    benchmark:
        benchmarks("audio_tokenize.tsv", AUDIO_EXP)
    conda:
        ENV
    params:
        args=jparams(
            seed=config["seeds"]["train"], root=audio_root(), sr=AUDIO.get("sr"), **AUDIO.get("tokenizers", {})
        ),
    shell:
        "aria audio-tokenize --manifest {input.manifest} --params {params.args:q} "
        "--out {output.tokens} --out-tokenizers {output.tokenizers} > {log} 2>&1"


rule audio_segments:
    input:
        tokens=results("tokens/tokens.npz", AUDIO_EXP),
    output:
        train=results("segments/{stage}/train.npz", AUDIO_EXP),
        csv=results("segments/{stage}/segments.csv", AUDIO_EXP),
    log:
        logs("audio_segments/{stage}.log", AUDIO_EXP),
    conda:
        ENV
    params:
        args=jparams(**TOKENIZER_CFG) if AUDIO else "",
    shell:
        "aria audio-segments --tokens {input.tokens} --stage {wildcards.stage} --params {params.args:q} "
        "--out {output.train} --out-csv {output.csv} > {log} 2>&1"


if PLANTED:

    # the planted-influence benchmark: the symbolic plants rendered to audio and tokenized
    # (docs/validation.md "Planted-influence benchmark"); everything downstream reads the same queries
    rule audio_queries:
        input:
            manifest=audio_manifest(),
            midi_manifest=corpus_manifest(),
            tokens=results("tokens/tokens.npz", AUDIO_EXP),
            tokenizers=results("tokens/tokenizers.npz", AUDIO_EXP),
        output:
            queries=[results(f"queries/{s}/queries.npz", AUDIO_EXP) for s in AUDIO_STAGES],
            audio=directory(results("queries/audio", AUDIO_EXP)),
        log:
            logs("audio_queries.log", AUDIO_EXP),
        benchmark:
            benchmarks("audio_queries.tsv", AUDIO_EXP)
        conda:
            ENV
        params:
            out_dir=lambda w, output: os.path.dirname(os.path.dirname(output.queries[0])),
            args=(
                jparams(
                    seed=config["seeds"]["queries"],
                    root=audio_root(),
                    midi_root=corpus_root(),
                    planted=PLANTED,
                    **TOKENIZER_CFG,
                )
                if AUDIO
                else ""
            ),
        shell:
            "aria audio-planted-queries --manifest {input.manifest} --midi-manifest {input.midi_manifest} "
            "--tokens {input.tokens} --tokenizers {input.tokenizers} --params {params.args:q} "
            "--out-dir {params.out_dir} --out-audio {output.audio} > {log} 2>&1"

else:

    rule audio_queries:
        input:
            tokens=results("tokens/tokens.npz", AUDIO_EXP),
            tokenizers=results("tokens/tokenizers.npz", AUDIO_EXP),
            models=[results(f"models/{s}/m0.pt", AUDIO_EXP) for s in AUDIO_STAGES],
        output:
            queries=[results(f"queries/{s}/queries.npz", AUDIO_EXP) for s in AUDIO_STAGES],
            audio=directory(results("queries/audio", AUDIO_EXP)),
        log:
            logs("audio_queries.log", AUDIO_EXP),
        benchmark:
            benchmarks("audio_queries.tsv", AUDIO_EXP)
        conda:
            ENV
        threads: 1
        params:
            out_dir=lambda w, output: os.path.dirname(os.path.dirname(output.queries[0])),
            args=jparams(seed=config["seeds"]["queries"], **TOKENIZER_CFG, **AUDIO.get("queries", {})) if AUDIO else "",
        shell:
            "aria audio-queries --tokens {input.tokens} --tokenizers {input.tokenizers} --models {input.models} "
            "--params {params.args:q} --out-dir {params.out_dir} --out-audio {output.audio} "
            "--threads {threads} > {log} 2>&1"


rule tracklevel:
    input:
        scores=results("scores/{stage}/{method}.zarr", AUDIO_EXP),
        segments=results("segments/{stage}/train.npz", AUDIO_EXP),
    output:
        scores=directory(results("tracklevel/{stage}/{method}.zarr", AUDIO_EXP)),
    log:
        logs("tracklevel/{stage}/{method}.log", AUDIO_EXP),
    benchmark:
        benchmarks("tracklevel/{stage}/{method}.tsv", AUDIO_EXP)
    conda:
        ENV
    threads: ENGINE_THREADS
    resources:
        dask_scheduler=COMPUTE["scheduler"],
    params:
        args=tracklevel_params,
        engine=COMPUTE["engine"],
    shell:
        "aria tracklevel --scores {input.scores} --segments {input.segments} --params {params.args:q} "
        "--out {output.scores} --engine {params.engine} --scheduler {resources.dask_scheduler:q} "
        "--threads {threads} > {log} 2>&1"


rule audio_null:
    input:
        features=results("evidence/audio_features.npz", AUDIO_EXP),
        manifest=audio_manifest(),
    output:
        null=results("evidence/null.json", AUDIO_EXP),
    log:
        logs("audio_null.log", AUDIO_EXP),
    benchmark:
        benchmarks("audio_null.tsv", AUDIO_EXP)
    conda:
        ENV
    params:
        args=jparams(
            ks=config["homogeneity"]["ks"],
            n_groups=config["homogeneity"]["n_null_groups"],
            seed=config["seeds"]["null_groups"],
        ),
    shell:
        "aria null --features {input.features} --manifest {input.manifest} --params {params.args:q} "
        "--out {output.null} > {log} 2>&1"


rule audio_homogeneity:
    input:
        # embedding baselines are track-level already (docs/spec.md §3)
        scores=lambda w: (
            results(f"scores/{w.stage}/{w.method}.zarr", AUDIO_EXP)
            if w.stage in ("baseline", "external")
            else results(f"tracklevel/{w.stage}/{w.method}.zarr", AUDIO_EXP)
        ),
        features=results("evidence/audio_features.npz", AUDIO_EXP),
        manifest=audio_manifest(),
        null=results("evidence/null.json", AUDIO_EXP),
        queries=results(f"queries/{AUDIO_STAGES[0]}/queries.npz", AUDIO_EXP),
    output:
        json=results("homogeneity/{stage}/{method}.json", AUDIO_EXP),
    log:
        logs("audio_homogeneity/{stage}/{method}.log", AUDIO_EXP),
    benchmark:
        benchmarks("audio_homogeneity/{stage}/{method}.tsv", AUDIO_EXP)
    conda:
        ENV
    params:
        args=homogeneity_params("audio"),
    shell:
        "aria homogeneity --scores {input.scores} --features {input.features} --manifest {input.manifest} "
        "--null {input.null} --queries {input.queries} --params {params.args:q} --out {output.json} > {log} 2>&1"


rule embed_corpus:
    input:
        manifest=audio_manifest(),
    output:
        frames=results("embeddings/{encoder}.npz", AUDIO_EXP),
    log:
        logs("embed_corpus/{encoder}.log", AUDIO_EXP),
    benchmark:
        benchmarks("embed_corpus/{encoder}.tsv", AUDIO_EXP)
    wildcard_constraints:
        encoder="|".join(registry.ENCODERS),
    # long and needing only the corpus: started first, it runs beside the training instead of
    # alone at the end of the run
    priority: 10
    conda:
        ENV
    threads: 1
    params:
        args=jparams(sr=AUDIO.get("sr"), root=audio_root()),
    shell:
        "aria embed-corpus --encoder {wildcards.encoder} --manifest {input.manifest} "
        "--params {params.args:q} --out {output.frames} --threads {threads} > {log} 2>&1"


rule embed_baseline:
    input:
        corpus=results("embeddings/{encoder}.npz", AUDIO_EXP),
        queries=results("queries/semantic/queries.npz", AUDIO_EXP),
        audio=results("queries/audio", AUDIO_EXP),
    output:
        avg=directory(results("scores/baseline/{encoder}.zarr", AUDIO_EXP)),
        aaa=directory(results("scores/baseline/{encoder}_aaa.zarr", AUDIO_EXP)),
    log:
        logs("embed_baseline/{encoder}.log", AUDIO_EXP),
    benchmark:
        benchmarks("embed_baseline/{encoder}.tsv", AUDIO_EXP)
    wildcard_constraints:
        encoder="|".join(registry.ENCODERS),
    conda:
        ENV
    threads: 1
    params:
        args=jparams(sr=AUDIO.get("sr"), window_s=10.0, hop_s=1.0),
    shell:
        "aria embed-baseline --encoder {wildcards.encoder} --corpus {input.corpus} "
        "--queries {input.queries} --queries-audio {input.audio} --params {params.args:q} "
        "--out {output.avg} --out-aaa {output.aaa} --threads {threads} > {log} 2>&1"
