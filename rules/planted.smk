# The planted-influence benchmark (queries.kind: planted; README "Planted-influence benchmark"):
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

    # the audio experiment's plants, per stage and method; embedding baselines are track-level
    # already, so their rows are the tracks themselves
    rule audio_planted:
        input:
            unpack(
                lambda w: (
                    {}
                    if w.stage in ("baseline", "external")
                    else {"segments": results(f"segments/{w.stage}/train.npz", AUDIO_EXP)}
                )
            ),
            scores=results("scores/{stage}/{method}.zarr", AUDIO_EXP),
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
            segments=lambda w, input: f"--segments {input.segments}" if "segments" in input.keys() else "",
        shell:
            "aria planted --scores {input.scores} --queries {input.queries} {params.segments} "
            "--homogeneity {input.homogeneity} --params {params.args:q} --out {output.json} > {log} 2>&1"
