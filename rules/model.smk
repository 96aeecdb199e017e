# Model: an ensemble of independently seeded models (model 0 also gives TracIn's
# checkpoints) and the generated queries.


rule train_model:
    input:
        segments=f"{RESULTS}/segments/train.npz",
    output:
        model=f"{RESULTS}/models/m{{m}}.pt",
    log:
        f"{LOGS}/train_model/m{{m}}.log",
    benchmark:
        f"{BENCH}/train_model/m{{m}}.tsv"
    params:
        args=lambda w: model_params(w.m),
    threads: 1
    conda:
        ENV
    shell:
        "aria train --segments {input.segments} --params {params.args:q} --out {output.model} "
        "--threads {threads} > {log} 2>&1"


rule queries:
    input:
        model=f"{RESULTS}/models/m0.pt",
        eval=f"{RESULTS}/segments/eval_prompts.npz",
    output:
        queries=f"{RESULTS}/queries/queries.npz",
        midi=directory(f"{RESULTS}/queries/midi"),
    log:
        f"{LOGS}/queries.log",
    params:
        args=jparams(seed=config["seeds"]["queries"], block_tokens=config["segments"]["block_tokens"],
                     **config["queries"]),
    threads: 1
    conda:
        ENV
    shell:
        "aria queries --model {input.model} --eval {input.eval} --params {params.args:q} "
        "--out {output.queries} --out-midi {output.midi} --threads {threads} > {log} 2>&1"
