# Audio experiment (issue 3, in progress): audio corpus and its evidence features.
# Active only when config has an `audio:` section. Attribution of the three-stage
# audio model will reuse the (experiment, stage) rules of rules/attribution.smk.


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
