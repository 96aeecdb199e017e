# Musical evidence (docs/spec.md §5, §6): the features of every training segment (symbolic) or track
# (audio, in shards), the random-group null each experiment's methods share, and per report row the
# homogeneity of its top-K groups against that null.

if SYMBOLIC:

    use rule cpu_job as symbolic_features with:
        input:
            segments=results("segments/symbolic/train.npz", EXP),
        output:
            out=results("evidence/symbolic_features.npz", EXP),
            out_tracks=[results("evidence/symbolic_track_features.npz", EXP)] if HOM_UNIT == "track" else [],
        log:
            logs("symbolic_features.log", EXP),
        benchmark:
            benchmarks("symbolic_features.tsv", EXP)
        params:
            **aria_job("symbolic-features"),


if AUDIO:

    rule audio_features:
        input:
            manifest=audio_manifest(),
        output:
            out=results("evidence/audio_features/shard{shard}.npz", AUDIO_EXP),
            out_failures=results("evidence/audio_features/shard{shard}_skipped.csv", AUDIO_EXP),
        log:
            logs("audio_features/shard{shard}.log", AUDIO_EXP),
        benchmark:
            benchmarks("audio_features/shard{shard}.tsv", AUDIO_EXP)
        conda:
            ENV
        threads: 1
        params:
            **aria_job("audio-features"),
        shell:
            ARIA_OMP

    use rule cpu_job as merge_audio_features with:
        input:
            parts=expand(results("evidence/audio_features/shard{shard}.npz", AUDIO_EXP), shard=range(AUDIO_SHARDS)),
        output:
            out=results("evidence/audio_features.npz", AUDIO_EXP),
        log:
            logs("merge_audio_features.log", AUDIO_EXP),
        benchmark:
            benchmarks("merge_audio_features.tsv", AUDIO_EXP)
        params:
            **aria_job("merge-audio-features"),


use rule cpu_job as null with:
    input:
        unpack(evidence_inputs),
    output:
        out=results("evidence/null.json"),
    log:
        logs("null.log"),
    benchmark:
        benchmarks("null.tsv")
    params:
        **aria_job("null"),


use rule cpu_job as homogeneity with:
    input:
        unpack(homogeneity_inputs),
    output:
        out=results("homogeneity/{stage}/{method}.json"),
    log:
        logs("homogeneity/{stage}/{method}.log"),
    benchmark:
        benchmarks("homogeneity/{stage}/{method}.tsv")
    params:
        **aria_job("homogeneity"),
