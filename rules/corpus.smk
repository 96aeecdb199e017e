# Corpus and segments: MIDI tracks -> manifest -> 256-token training segments and
# eval prompts. The demo corpus is built one music21 collection per job.


rule demo_collection:
    output:
        part=directory(results("corpus/{collection}", EXP)),
    log:
        logs("demo_collection/{collection}.log", EXP),
    benchmark:
        benchmarks("demo_collection/{collection}.tsv", EXP)
    conda:
        ENV
    params:
        args=demo_collection_params,
    shell:
        "aria demo-collection --out-dir {output.part} --params {params.args:q} > {log} 2>&1"


rule demo_corpus:
    input:
        parts=expand(
            results("corpus/{collection}", EXP),
            collection=sorted(demo_collections(config["corpus"].get("demo", {}))),  # name order, not listing order
        ),
    output:
        manifest=results("corpus/manifest.csv", EXP),
        dropped=results("corpus/dropped.csv", EXP),
    log:
        logs("demo_corpus.log", EXP),
    conda:
        ENV
    shell:
        "aria merge-manifests --parts {input.parts} --out {output.manifest} --out-dropped {output.dropped} "
        "> {log} 2>&1"


if SYMBOLIC:

    rule symbolic_segments:
        input:
            manifest=corpus_manifest(),
            midi=corpus_files(),
        output:
            train=results("segments/symbolic/train.npz", EXP),
            eval=results("segments/symbolic/eval_prompts.npz", EXP),
            csv=results("segments/symbolic/segments.csv", EXP),
            dropped=results("segments/symbolic/dropped.csv", EXP),
        log:
            logs("symbolic_segments.log", EXP),
        benchmark:
            benchmarks("symbolic_segments.tsv", EXP)
        conda:
            ENV
        params:
            args=jparams(
                root=corpus_root(),
                block_tokens=config["segments"]["block_tokens"],
                prompt_tokens=config["queries"]["prompt_tokens"],
            ),
        shell:
            "aria symbolic-segments --manifest {input.manifest} --params {params.args:q} "
            "--out-train {output.train} --out-eval {output.eval} --out-csv {output.csv} "
            "--out-dropped {output.dropped} > {log} 2>&1"

    rule symbolic_pool_check:
        input:
            segments=results("segments/symbolic/segments.csv", EXP),
            eval=results("segments/symbolic/eval_prompts.npz", EXP),
        output:
            json=results("segments/symbolic/pool.json", EXP),
        log:
            logs("symbolic_pool_check.log", EXP),
        priority: 100
        conda:
            ENV
        params:
            args=pool_check_params("symbolic"),
        # its warnings (too few queries, a K near the pool's size) reach the console as well as the log
        shell:
            "aria check-pool --segments {input.segments} --queries {input.eval} --params {params.args:q} "
            "--out {output.json} > {log} 2>&1; grep -h ' WARNING ' {log} >&2 || true"
