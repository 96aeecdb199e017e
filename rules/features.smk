# Musical evidence: symbolic features of every training segment (SPEC §5), the
# random-group null shared by all methods, and per-method homogeneity (SPEC §6).


rule symbolic_features:
    input:
        segments=results("segments/symbolic/train.npz", EXP),
    output:
        features=results("evidence/symbolic_features.npz", EXP),
    log:
        logs("symbolic_features.log", EXP),
    benchmark:
        benchmarks("symbolic_features.tsv", EXP)
    conda:
        ENV
    params:
        args=jparams(block_tokens=config["segments"]["block_tokens"]),
    shell:
        "aria symbolic-features --segments {input.segments} --params {params.args:q} "
        "--out {output.features} > {log} 2>&1"


rule symbolic_null:
    input:
        features=results("evidence/symbolic_features.npz", EXP),
    output:
        null=results("evidence/null.json", EXP),
    log:
        logs("symbolic_null.log", EXP),
    benchmark:
        benchmarks("symbolic_null.tsv", EXP)
    conda:
        ENV
    params:
        args=jparams(
            ks=config["homogeneity"]["ks"],
            n_groups=config["homogeneity"]["n_null_groups"],
            seed=config["seeds"]["null_groups"],
        ),
    shell:
        "aria null --features {input.features} --params {params.args:q} --out {output.null} > {log} 2>&1"


rule symbolic_homogeneity:
    input:
        scores=results("scores/symbolic/{method}.zarr", EXP),
        features=results("evidence/symbolic_features.npz", EXP),
        null=results("evidence/null.json", EXP),
    output:
        json=results("homogeneity/symbolic/{method}.json", EXP),
    log:
        logs("symbolic_homogeneity/{method}.log", EXP),
    conda:
        ENV
    shell:
        "aria homogeneity --scores {input.scores} --features {input.features} --null {input.null} "
        "--out {output.json} > {log} 2>&1"
