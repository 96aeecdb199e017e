# Audio experiment: audio corpus, tokenizers, stage sequences, hierarchical queries,
# track-level matrices and evidence features. Active only when config has an
# `audio:` section. Training, gradient projection, scoring and diagnostics of the
# three stages go through the shared (experiment, stage) rules of
# rules/model.smk and rules/attribution.smk.


rule audio_demo_corpus:
    input:
        midi_manifest=corpus_manifest(),
    output:
        manifest=f"{ARES}/corpus/manifest.csv",
    log:
        f"{ARES}/logs/audio_demo_corpus.log",
    benchmark:
        f"{ARES}/benchmarks/audio_demo_corpus.tsv"
    params:
        out_dir=lambda w, output: os.path.dirname(output.manifest),
        args=jparams(seed=config["seeds"]["corpus"], sr=AUDIO.get("sr"),
                     **AUDIO.get("corpus", {}).get("demo", {})),
    conda:
        ENV
    shell:
        "aria audio-demo-corpus --midi-manifest {input.midi_manifest} --params {params.args:q} "
        "--out-dir {params.out_dir} > {log} 2>&1"


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
    params:
        args=lambda w: jparams(shard=int(w.shard), n_shards=AUDIO_SHARDS, sr=AUDIO.get("sr"),
                               root=audio_root()),
    threads: 1
    conda:
        ENV
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
    params:
        args=jparams(seed=config["seeds"]["train"], root=audio_root(), sr=AUDIO.get("sr"),
                     **AUDIO.get("tokenizers", {})),
    conda:
        ENV
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
    params:
        args=jparams(**TOKENIZER_CFG) if AUDIO else "",
    conda:
        ENV
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
    params:
        out_dir=lambda w, output: os.path.dirname(os.path.dirname(output.queries[0])),
        args=jparams(seed=config["seeds"]["queries"], **TOKENIZER_CFG, **AUDIO.get("queries", {}))
        if AUDIO else "",
    threads: 1
    conda:
        ENV
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
    params:
        # SPEC §3: z-score for TRAK and Grad-Cos, rank for heavy-tailed methods
        args=lambda w: jparams(normalize="zscore" if w.method in ("trak", "gradcos") else "rank"),
    conda:
        ENV
    shell:
        "aria tracklevel --scores {input.scores} --segments {input.segments} --params {params.args:q} "
        "--out {output.scores} > {log} 2>&1"
