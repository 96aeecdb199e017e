# The noise diagnostic (aria.evaluation.agreement; docs/evidence.md): every model-based
# method scored again from ensemble member analysis.replicas.member -- an independently trained
# model -- under replicas/<stage>/<method>/m<member>.zarr (TRAK: each member alone, as its
# ensemble averages them). The diagnostics job of the method reads both replicas and records
# how much of the scores survives retraining; the verdict calls a setting noisy when too little does.


use rule score as replica_score with:
    input:
        features=lambda w: member_feature_stores(w, int(w.m)),
    output:
        out=directory(results("replicas/{stage}/{method}/m{m}.zarr")),
    log:
        logs("replica_score/{stage}/{method}/m{m}.log"),
    benchmark:
        benchmarks("replica_score/{stage}/{method}/m{m}.tsv")
    wildcard_constraints:
        method=one_of(m.name for m in registry.gradient_methods()),


use rule unlearning_fisher as replica_unlearning_fisher with:
    input:
        **stage_inputs("model", "segments"),
    output:
        out=results("replicas/{stage}/unlearning/m{m}_fisher_{side}.pt"),
    log:
        logs("replica_unlearning_fisher/{stage}/m{m}_{side}.log"),
    benchmark:
        benchmarks("replica_unlearning_fisher/{stage}/m{m}_{side}.tsv")


# as unlearning_chunk, from member m's model and Fisher, without the round-off check (check: 0,
# unlearning_chunk_settings)
use rule unlearning_chunk as replica_unlearning_chunk with:
    input:
        **stage_inputs("model", "segments", "queries"),
        fisher=lambda w: results(f"replicas/{w.stage}/unlearning/m{w.m}_fisher_{fisher_side(w)}.pt", w.exp),
    output:
        out=results("replicas/{stage}/unlearning/m{m}_chunks/q{chunk}.npz"),
    log:
        logs("replica_unlearning_chunk/{stage}/m{m}_q{chunk}.log"),
    benchmark:
        benchmarks("replica_unlearning_chunk/{stage}/m{m}_q{chunk}.tsv")


use rule unlearning_merge as replica_unlearning_merge with:
    input:
        parts=lambda w: [
            results(f"replicas/{w.stage}/unlearning/m{w.m}_chunks/q{c}.npz", w.exp)
            for c in range(unlearning_chunks(w))
        ],
    output:
        out=directory(results("replicas/{stage}/unlearning/m{m}.zarr")),
    log:
        logs("replica_unlearning_merge/{stage}/m{m}.log"),
    benchmark:
        benchmarks("replica_unlearning_merge/{stage}/m{m}.tsv")
