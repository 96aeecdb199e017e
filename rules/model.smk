# Model: an ensemble of independently seeded models (model 0 also gives TracIn's
# checkpoints) and the generated queries.


rule train_model:
    input:
        segments=results("segments/{stage}/train.npz"),
    output:
        model=results("models/{stage}/m{m}.pt"),
    log:
        logs("train_model/{stage}/m{m}.log"),
    benchmark:
        benchmarks("train_model/{stage}/m{m}.tsv")
    conda:
        ENV
    threads: 1
    params:
        args=model_params,
    shell:
        "aria train --segments {input.segments} --params {params.args:q} --out {output.model} "
        "--threads {threads} > {log} 2>&1"


if SYMBOLIC and PLANTED:

    # the planted-influence benchmark: the queries are planted copies, not generations
    # (docs/validation.md "Planted-influence benchmark"); everything downstream reads the same queries.npz
    rule symbolic_queries:
        input:
            segments=results("segments/symbolic/train.npz", EXP),
            manifest=corpus_manifest(),
        output:
            queries=results("queries/symbolic/queries.npz", EXP),
            midi=directory(results("queries/midi", EXP)),
        log:
            logs("symbolic_queries.log", EXP),
        conda:
            ENV
        params:
            args=jparams(
                seed=config["seeds"]["queries"],
                block_tokens=config["segments"]["block_tokens"],
                root=corpus_root(),
                planted=PLANTED,
            ),
        shell:
            "aria symbolic-planted-queries --segments {input.segments} --manifest {input.manifest} "
            "--params {params.args:q} --out {output.queries} --out-midi {output.midi} > {log} 2>&1"

elif SYMBOLIC:

    rule symbolic_queries:
        input:
            model=results("models/symbolic/m0.pt", EXP),
            eval=results("segments/symbolic/eval_prompts.npz", EXP),
        output:
            queries=results("queries/symbolic/queries.npz", EXP),
            midi=directory(results("queries/midi", EXP)),
        log:
            logs("symbolic_queries.log", EXP),
        conda:
            ENV
        threads: 1
        params:
            args=jparams(
                seed=config["seeds"]["queries"], block_tokens=config["segments"]["block_tokens"], **config["queries"]
            ),
        shell:
            "aria symbolic-queries --model {input.model} --eval {input.eval} --params {params.args:q} "
            "--out {output.queries} --out-midi {output.midi} --threads {threads} > {log} 2>&1"
