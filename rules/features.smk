# Musical evidence: symbolic features of every training segment (docs/spec.md §5), the
# random-group null shared by all methods, and per-method homogeneity (docs/spec.md §6).


rule symbolic_features:
    input:
        segments=results("segments/symbolic/train.npz", EXP),
    output:
        features=results("evidence/symbolic_features.npz", EXP),
        tracks=[results("evidence/symbolic_track_features.npz", EXP)] if HOM_UNIT == "track" else [],
    log:
        logs("symbolic_features.log", EXP),
    benchmark:
        benchmarks("symbolic_features.tsv", EXP)
    conda:
        ENV
    params:
        args=jparams(block_tokens=config["segments"]["block_tokens"]),
        tracks=lambda w, output: f"--out-tracks {output.tracks[0]}" if output.tracks else "",
    shell:
        "aria symbolic-features --segments {input.segments} --params {params.args:q} "
        "--out {output.features} {params.tracks} > {log} 2>&1"


rule symbolic_null:
    input:
        features=symbolic_evidence(),
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
        unpack(homogeneity_inputs),
    output:
        json=results("homogeneity/symbolic/{method}.json", EXP),
    log:
        logs("symbolic_homogeneity/{method}.log", EXP),
    benchmark:
        benchmarks("symbolic_homogeneity/{method}.tsv", EXP)
    conda:
        ENV
    params:
        args=homogeneity_params("symbolic"),
    shell:
        "aria homogeneity --scores {input.scores} --features {input.features} --null {input.null} "
        "--manifest {input.manifest} --segments {input.segments} --queries {input.queries} "
        "--params {params.args:q} --out {output.json} > {log} 2>&1"
