# Model: an ensemble of independently seeded models (model 0 also gives TracIn's
# checkpoints) and the generated queries.


rule train_model:
    input:
        segments="results/{exp}/segments/{stage}/train.npz",
    output:
        model="results/{exp}/models/{stage}/m{m}.pt",
    log:
        "results/{exp}/logs/train_model/{stage}/m{m}.log",
    benchmark:
        "results/{exp}/benchmarks/train_model/{stage}/m{m}.tsv"
    conda:
        ENV
    threads: 1
    params:
        args=model_params,
    shell:
        "aria train --segments {input.segments} --params {params.args:q} --out {output.model} "
        "--threads {threads} > {log} 2>&1"


if SYMBOLIC:

    rule queries:
        input:
            model=f"{RESULTS}/models/symbolic/m0.pt",
            eval=f"{RESULTS}/segments/symbolic/eval_prompts.npz",
        output:
            queries=f"{RESULTS}/queries/symbolic/queries.npz",
            midi=directory(f"{RESULTS}/queries/midi"),
        log:
            f"{LOGS}/queries.log",
        conda:
            ENV
        threads: 1
        params:
            args=jparams(
                seed=config["seeds"]["queries"], block_tokens=config["segments"]["block_tokens"], **config["queries"]
            ),
        shell:
            "aria queries --model {input.model} --eval {input.eval} --params {params.args:q} "
            "--out {output.queries} --out-midi {output.midi} --threads {threads} > {log} 2>&1"
