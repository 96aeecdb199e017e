# Corpora and segments: MIDI tracks -> manifest -> 256-token training segments and eval prompts
# (the demo corpus is built one music21 collection per job); audio tracks -> manifest -> tokens
# -> each stage's segments; then each experiment's pool check.
# Every job's command line is built from the rule's named inputs and outputs (`aria_job` and ARIA in
# aria/workflow/plan.py): a name is the job option of the same name.

if MIDI_CORPUS:

    use rule cpu_job as demo_collection with:
        output:
            out_dir=directory(results("corpus/{collection}", EXP)),
        log:
            logs("demo_collection/{collection}.log", EXP),
        benchmark:
            benchmarks("demo_collection/{collection}.tsv", EXP)
        params:
            **aria_job("demo-collection"),

    use rule cpu_job as demo_corpus with:
        input:
            parts=expand(
                results("corpus/{collection}", EXP),
                collection=sorted(demo_collections(config["corpus"].get("demo", {}))),  # name order, not listing order
            ),
        output:
            out=results("corpus/manifest.csv", EXP),
            out_dropped=results("corpus/dropped.csv", EXP),
        log:
            logs("demo_corpus.log", EXP),
        benchmark:
            benchmarks("demo_corpus.tsv", EXP)
        params:
            **aria_job("merge-manifests"),


if DATTRI:

    # dattri's MAESTRO benchmark folder, read offline: everything the symbolic experiment would
    # otherwise build (corpus, segments, queries, models, LDS ground truth) in the benchmark's order
    use rule cpu_job as dattri_benchmark with:
        output:
            out=results("corpus/manifest.csv", EXP),
            out_train=results("segments/symbolic/train.npz", EXP),
            out_eval=results("segments/symbolic/eval_prompts.npz", EXP),
            out_csv=results("segments/symbolic/segments.csv", EXP),
            out_dropped=results("segments/symbolic/dropped.csv", EXP),
            out_queries=results("queries/symbolic/queries.npz", EXP),
            out_midi=directory(results("queries/midi", EXP)),
            out_ground_truth=directory(results("lds/symbolic/ground_truth.zarr", EXP)),
            out_models=dattri_models(),
        log:
            logs("dattri_benchmark.log", EXP),
        benchmark:
            benchmarks("dattri_benchmark.tsv", EXP)
        params:
            **aria_job("dattri-benchmark"),

elif SYMBOLIC:

    use rule cpu_job as symbolic_segments with:
        input:
            corpus_files(),  # a user corpus's MIDI files: editing one reruns the segments
            tokenizer_files(),  # a miditok tokenizer file, likewise
            manifest=corpus_manifest(),
        output:
            out_train=results("segments/symbolic/train.npz", EXP),
            out_eval=results("segments/symbolic/eval_prompts.npz", EXP),
            out_csv=results("segments/symbolic/segments.csv", EXP),
            out_dropped=results("segments/symbolic/dropped.csv", EXP),
        log:
            logs("symbolic_segments.log", EXP),
        benchmark:
            benchmarks("symbolic_segments.tsv", EXP)
        params:
            **aria_job("symbolic-segments"),


if AUDIO and AUDIO["corpus"]["kind"] == "demo":

    use rule cpu_job as audio_demo_corpus with:
        input:
            midi_manifest=corpus_manifest(),
        output:
            # written into the corpus folder (out_dir)
            results("corpus/manifest.csv", AUDIO_EXP),
            results("corpus/dropped.csv", AUDIO_EXP),
        log:
            logs("audio_demo_corpus.log", AUDIO_EXP),
        benchmark:
            benchmarks("audio_demo_corpus.tsv", AUDIO_EXP)
        params:
            **aria_job("audio-demo-corpus", extra={"out_dir": audio_root()}),

elif AUDIO:

    rule audio_import:
        input:
            audio_import_inputs(),
        output:
            results("corpus/dropped.csv", AUDIO_EXP),  # copied from the log folder's
            out=results("corpus/manifest.csv", AUDIO_EXP),
        log:
            main=logs("audio_import.log", AUDIO_EXP),
            # the dropped-tracks table also lives beside the log: when the import is refused (a split
            # left empty), Snakemake deletes the job's outputs but keeps its logs
            dropped=logs("audio_import_dropped.csv", AUDIO_EXP),
        benchmark:
            benchmarks("audio_import.tsv", AUDIO_EXP)
        conda:
            ENV
        params:
            **aria_job("audio-import"),
        shell:
            "aria {params.job} --out-dropped {log.dropped} > {log.main} 2>&1; cp {log.dropped} {output[0]}"


if AUDIO:

    use rule cpu_job as audio_tokenize with:
        input:
            manifest=audio_manifest(),
        output:
            out=results("tokens/tokens.npz", AUDIO_EXP),
            out_tokenizers=results("tokens/tokenizers.npz", AUDIO_EXP),
        log:
            logs("audio_tokenize.log", AUDIO_EXP),
        benchmark:
            benchmarks("audio_tokenize.tsv", AUDIO_EXP)
        params:
            **aria_job("audio-tokenize"),

    use rule cpu_job as audio_segments with:
        input:
            tokens=results("tokens/tokens.npz", AUDIO_EXP),
        output:
            out=results("segments/{stage}/train.npz", AUDIO_EXP),
            out_csv=results("segments/{stage}/segments.csv", AUDIO_EXP),
        log:
            logs("audio_segments/{stage}.log", AUDIO_EXP),
        benchmark:
            benchmarks("audio_segments/{stage}.tsv", AUDIO_EXP)
        params:
            **aria_job("audio-segments", wildcards=["stage"]),


# How many queries and which K the pool allows. Its output feeds only the report; a job of high
# priority, so that a K larger than the pool stops the run minutes before the null would. Its warnings
# (too few queries, a K near the pool's size) reach the console as well as the log.
rule pool_check:
    input:
        unpack(pool_inputs),
    output:
        out=results("{pool}.json"),
    log:
        logs("{pool}_check.log"),
    benchmark:
        benchmarks("{pool}_check.tsv")
    priority: 100
    conda:
        ENV
    params:
        **aria_job("check-pool"),
    shell:
        ARIA_WARN
