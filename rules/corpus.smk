# Corpus and segments: MIDI tracks -> manifest -> 256-token training segments and
# eval prompts. The demo corpus is built one music21 collection per job.


rule demo_collection:
    output:
        part=directory(f"{RESULTS}/corpus/{{collection}}"),
    log:
        f"{LOGS}/demo_collection/{{collection}}.log",
    benchmark:
        f"{BENCH}/demo_collection/{{collection}}.tsv"
    conda:
        ENV
    params:
        args=demo_collection_params,
    shell:
        "aria demo-collection --out-dir {output.part} --params {params.args:q} > {log} 2>&1"


rule demo_corpus:
    input:
        parts=expand(
            f"{RESULTS}/corpus/{{collection}}",
            collection=sorted(
                config["corpus"].get("demo", {}).get("collections", {})
            ),  # name order, not listing order
        ),
    output:
        manifest=f"{RESULTS}/corpus/manifest.csv",
    log:
        f"{LOGS}/demo_corpus.log",
    conda:
        ENV
    shell:
        "aria merge-manifests --parts {input.parts} --out {output.manifest} > {log} 2>&1"


if SYMBOLIC:

    rule segments:
        input:
            manifest=corpus_manifest(),
            midi=corpus_files(),
        output:
            train=f"{RESULTS}/segments/symbolic/train.npz",
            eval=f"{RESULTS}/segments/symbolic/eval_prompts.npz",
            csv=f"{RESULTS}/segments/symbolic/segments.csv",
        log:
            f"{LOGS}/segments.log",
        benchmark:
            f"{BENCH}/segments.tsv"
        conda:
            ENV
        params:
            args=jparams(
                root=corpus_root(),
                block_tokens=config["segments"]["block_tokens"],
                prompt_tokens=config["queries"]["prompt_tokens"],
            ),
        shell:
            "aria segments --manifest {input.manifest} --params {params.args:q} "
            "--out-train {output.train} --out-eval {output.eval} --out-csv {output.csv} > {log} 2>&1"
