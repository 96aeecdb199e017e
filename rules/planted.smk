# The planted-influence benchmark (queries.kind: planted; docs/validation.md "Planted-influence benchmark"):
# every method's retrieval of the planted source segments and the rank of the planted channel by
# homogeneity z; the symbolic report gathers them into its planted tables.

if PLANTED:

    rule planted:
        input:
            scores=results("scores/symbolic/{method}.zarr", EXP),
            queries=results("queries/symbolic/queries.npz", EXP),
            segments=results("segments/symbolic/train.npz", EXP),
            homogeneity=results("homogeneity/symbolic/{method}.json", EXP),
        output:
            json=results("planted/symbolic/{method}.json", EXP),
        log:
            logs("planted/{method}.log", EXP),
        benchmark:
            benchmarks("planted/{method}.tsv", EXP)
        conda:
            ENV
        params:
            args=jparams(ks=PLANTED["ks"], main_k=config["homogeneity"]["main_k"]),
        shell:
            "aria planted --scores {input.scores} --queries {input.queries} --segments {input.segments} "
            "--homogeneity {input.homogeneity} --params {params.args:q} --out {output.json} > {log} 2>&1"


if PLANTED and AUDIO:

    # the audio experiment's plants, per stage and method, on the track-level matrices (docs/spec.md §3,
    # the ones its homogeneity reads; the embedding baselines are track-level already), so that
    # every row ranks the same training tracks and P@K compares across rows
    rule audio_planted:
        input:
            scores=lambda w: (
                results(f"scores/{w.stage}/{w.method}.zarr", AUDIO_EXP)
                if w.stage in ("baseline", "external")
                else results(f"tracklevel/{w.stage}/{w.method}.zarr", AUDIO_EXP)
            ),
            queries=results(f"queries/{AUDIO_STAGES[0]}/queries.npz", AUDIO_EXP),
            homogeneity=results("homogeneity/{stage}/{method}.json", AUDIO_EXP),
        output:
            json=results("planted/{stage}/{method}.json", AUDIO_EXP),
        log:
            logs("planted/{stage}/{method}.log", AUDIO_EXP),
        benchmark:
            benchmarks("planted/{stage}/{method}.tsv", AUDIO_EXP)
        conda:
            ENV
        params:
            args=jparams(ks=PLANTED["ks"], main_k=config["homogeneity"]["main_k"], domain="audio"),
        shell:
            "aria planted --scores {input.scores} --queries {input.queries} "
            "--homogeneity {input.homogeneity} --params {params.args:q} --out {output.json} > {log} 2>&1"
