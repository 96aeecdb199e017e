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
