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
            manifest=f"{ARES}/corpus/manifest.csv",
        log:
            f"{ARES}/logs/audio_demo_corpus.log",
        benchmark:
            f"{ARES}/benchmarks/audio_demo_corpus.tsv"
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
            manifest=f"{ARES}/corpus/manifest.csv",
        log:
            f"{ARES}/logs/audio_import.log",
        conda:
            ENV
        params:
            args=jparams(sr=AUDIO.get("sr"), **{k: v for k, v in AUDIO.get("corpus", {}).items() if k != "demo"}),
        shell:
            "aria audio-import --params {params.args:q} --out {output.manifest} > {log} 2>&1"


rule audio_features:
    input:
        manifest=audio_manifest(),
    output:
        shard=f"{ARES}/evidence/audio_features/shard{{shard}}.npz",
        failures=f"{ARES}/evidence/audio_features/shard{{shard}}_skipped.csv",
    log:
        f"{ARES}/logs/audio_features/shard{{shard}}.log",
    benchmark:
        f"{ARES}/benchmarks/audio_features/shard{{shard}}.tsv"
    conda:
        ENV
    threads: 1
    params:
        args=lambda w: jparams(shard=int(w.shard), n_shards=AUDIO_SHARDS, sr=AUDIO.get("sr"), root=audio_root()),
    shell:
        "OMP_NUM_THREADS={threads} aria audio-features --manifest {input.manifest} --params {params.args:q} "
        "--out {output.shard} --out-failures {output.failures} --threads {threads} > {log} 2>&1"


rule merge_audio_features:
    input:
        shards=expand(f"{ARES}/evidence/audio_features/shard{{shard}}.npz", shard=range(AUDIO_SHARDS)),
    output:
        features=f"{ARES}/evidence/audio_features.npz",
    log:
        f"{ARES}/logs/merge_audio_features.log",
    conda:
        ENV
    shell:
        "aria merge-audio-features --shards {input.shards} --out {output.features} > {log} 2>&1"


rule audio_tokenize:
    input:
        manifest=audio_manifest(),
    output:
        tokens=f"{ARES}/tokens/tokens.npz",
        tokenizers=f"{ARES}/tokens/tokenizers.npz",
    log:
        f"{ARES}/logs/audio_tokenize.log",
    benchmark:
        f"{ARES}/benchmarks/audio_tokenize.tsv"
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
        tokens=f"{ARES}/tokens/tokens.npz",
    output:
        train=f"{ARES}/segments/{{stage}}/train.npz",
        csv=f"{ARES}/segments/{{stage}}/segments.csv",
    log:
        f"{ARES}/logs/audio_segments/{{stage}}.log",
    conda:
        ENV
    params:
        args=jparams(**TOKENIZER_CFG) if AUDIO else "",
    shell:
        "aria audio-segments --tokens {input.tokens} --stage {wildcards.stage} --params {params.args:q} "
        "--out {output.train} --out-csv {output.csv} > {log} 2>&1"


rule audio_queries:
    input:
        tokens=f"{ARES}/tokens/tokens.npz",
        tokenizers=f"{ARES}/tokens/tokenizers.npz",
        models=[f"{ARES}/models/{s}/m0.pt" for s in AUDIO_STAGES],
    output:
        queries=[f"{ARES}/queries/{s}/queries.npz" for s in AUDIO_STAGES],
        audio=directory(f"{ARES}/queries/audio"),
    log:
        f"{ARES}/logs/audio_queries.log",
    benchmark:
        f"{ARES}/benchmarks/audio_queries.tsv"
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
        scores=f"{ARES}/scores/{{stage}}/{{method}}.zarr",
        segments=f"{ARES}/segments/{{stage}}/train.npz",
    output:
        scores=directory(f"{ARES}/tracklevel/{{stage}}/{{method}}.zarr"),
    log:
        f"{ARES}/logs/tracklevel/{{stage}}/{{method}}.log",
    conda:
        ENV
    params:
        args=tracklevel_params,
    shell:
        "aria tracklevel --scores {input.scores} --segments {input.segments} --params {params.args:q} "
        "--out {output.scores} > {log} 2>&1"


rule audio_null:
    input:
        features=f"{ARES}/evidence/audio_features.npz",
        manifest=audio_manifest(),
    output:
        null=f"{ARES}/evidence/null.json",
    log:
        f"{ARES}/logs/audio_null.log",
    benchmark:
        f"{ARES}/benchmarks/audio_null.tsv"
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
        # embedding baselines are track-level already (SPEC §3)
        scores=lambda w: (
            f"{ARES}/scores/{w.stage}/{w.method}.zarr"
            if w.stage in ("baseline", "external")
            else f"{ARES}/tracklevel/{w.stage}/{w.method}.zarr"
        ),
        features=f"{ARES}/evidence/audio_features.npz",
        manifest=audio_manifest(),
        null=f"{ARES}/evidence/null.json",
    output:
        json=f"{ARES}/homogeneity/{{stage}}/{{method}}.json",
    log:
        f"{ARES}/logs/homogeneity/{{stage}}/{{method}}.log",
    conda:
        ENV
    shell:
        "aria homogeneity --scores {input.scores} --features {input.features} --manifest {input.manifest} "
        "--null {input.null} --out {output.json} > {log} 2>&1"


rule embed_baseline:
    input:
        manifest=audio_manifest(),
        queries=f"{ARES}/queries/semantic/queries.npz",
        audio=f"{ARES}/queries/audio",
    output:
        avg=directory(f"{ARES}/scores/baseline/{{encoder}}.zarr"),
        aaa=directory(f"{ARES}/scores/baseline/{{encoder}}_aaa.zarr"),
    log:
        f"{ARES}/logs/embed_baseline/{{encoder}}.log",
    benchmark:
        f"{ARES}/benchmarks/embed_baseline/{{encoder}}.tsv"
    wildcard_constraints:
        encoder="|".join(registry.ENCODERS),
    conda:
        ENV
    threads: 1
    params:
        args=jparams(sr=AUDIO.get("sr"), root=audio_root(), window_s=10.0, hop_s=1.0),
    shell:
        "aria embed-baseline --encoder {wildcards.encoder} --manifest {input.manifest} "
        "--queries {input.queries} --queries-audio {input.audio} --params {params.args:q} "
        "--out {output.avg} --out-aaa {output.aaa} --threads {threads} > {log} 2>&1"
