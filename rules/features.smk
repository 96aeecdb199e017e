# Musical evidence: symbolic features of every training segment (SPEC §5), the
# random-group null shared by all methods, and per-method homogeneity (SPEC §6).


rule symbolic_features:
    input:
        segments=f"{RESULTS}/segments/symbolic/train.npz",
    output:
        features=f"{RESULTS}/evidence/symbolic_features.npz",
    log:
        f"{LOGS}/symbolic_features.log",
    benchmark:
        f"{BENCH}/symbolic_features.tsv"
    conda:
        ENV
    params:
        args=jparams(block_tokens=config["segments"]["block_tokens"]),
    shell:
        "aria symbolic-features --segments {input.segments} --params {params.args:q} "
        "--out {output.features} > {log} 2>&1"


rule homogeneity_null:
    input:
        features=f"{RESULTS}/evidence/symbolic_features.npz",
    output:
        null=f"{RESULTS}/evidence/null.json",
    log:
        f"{LOGS}/homogeneity_null.log",
    benchmark:
        f"{BENCH}/homogeneity_null.tsv"
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


rule homogeneity:
    input:
        scores=f"{RESULTS}/scores/symbolic/{{method}}.zarr",
        features=f"{RESULTS}/evidence/symbolic_features.npz",
        null=f"{RESULTS}/evidence/null.json",
    output:
        json=f"{RESULTS}/homogeneity/symbolic/{{method}}.json",
    log:
        f"{LOGS}/homogeneity/symbolic/{{method}}.log",
    conda:
        ENV
    shell:
        "aria homogeneity --scores {input.scores} --features {input.features} --null {input.null} "
        "--out {output.json} > {log} 2>&1"
