# The diffusion experiment (experiments: [..., diffusion]; docs/methods.md "On a latent diffusion
# transformer"): a latent DiT (diffusers' StableAudioDiTModel) trained on seeded variable-length clips of
# the audio experiment's corpus, its generations from held-out captions as queries, unlearning
# (timestep-averaged Fisher, mask strategies, layer groups) and Grad-Cos on the same v-loss, the
# embedding baselines, the self-influence grid, and the report. Every file lives under
# results/<DIFF_EXP>/diffusion/ (diff()), the report in results/<DIFF_EXP>/.

if DIFFUSION:

    use rule cpu_job as diffusion_latents with:
        input:
            manifest=audio_manifest(),
        output:
            out=diff("data/train.npz"),
            out_prompts=diff("data/prompts.npz"),
            out_codec=diff("data/codec.npz"),
        log:
            logs("diffusion_latents.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_latents.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-latents"),

    use rule gpu_job as diffusion_train with:
        input:
            data=diff("data/train.npz"),
        output:
            out=diff("model.pt"),
        log:
            logs("diffusion_train.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_train.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-train"),

    use rule gpu_job as diffusion_queries with:
        input:
            model=diff("model.pt"),
            prompts=diff("data/prompts.npz"),
            codec=diff("data/codec.npz"),
        output:
            out=diff("queries/queries.npz"),
            out_audio=directory(diff("queries/audio")),
        log:
            logs("diffusion_queries.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_queries.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-queries"),

    use rule gpu_job as diffusion_fisher with:
        input:
            model=diff("model.pt"),
            data=diff("data/train.npz"),
        output:
            out=diff("unlearning/fisher_{side}.pt"),
        log:
            logs("diffusion_fisher/{side}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_fisher/{side}.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-fisher"),

    use rule gpu_job as diffusion_unlearning with:
        input:
            model=diff("model.pt"),
            data=diff("data/train.npz"),
            queries=diff("queries/queries.npz"),
            fisher=diffusion_fisher(DIFFUSION["unlearning"]["mask"]),
        output:
            out=diff("unlearning/chunks/q{chunk}.npz"),
        log:
            logs("diffusion_unlearning/q{chunk}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_unlearning/q{chunk}.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-unlearning"),

    use rule cpu_job as diffusion_unlearning_merge with:
        input:
            parts=diffusion_chunk_files(),
        output:
            out=directory(diff("scores/unlearning.zarr")),
        log:
            logs("diffusion_unlearning_merge.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_unlearning_merge.tsv", DIFF_EXP)
        params:
            **aria_job("unlearning-merge"),

    use rule gpu_job as diffusion_gradients with:
        input:
            model=diff("model.pt"),
            data=diff("data/train.npz"),
            queries=diff("queries/queries.npz"),
        output:
            out=directory(diff("features/gradcos.zarr")),
        log:
            logs("diffusion_gradients.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_gradients.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-gradients"),

    use rule cpu_job as diffusion_gradcos with:
        input:
            features=diff("features/gradcos.zarr"),
        output:
            out=directory(diff("scores/gradcos.zarr")),
        log:
            logs("diffusion_gradcos.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_gradcos.tsv", DIFF_EXP)
        params:
            **aria_job("score", extra={"method": "gradcos"}),

    use rule cpu_job as diffusion_embed with:
        input:
            data=diff("data/train.npz"),
            queries=diff("queries/queries.npz"),
            codec=diff("data/codec.npz"),
        output:
            out=diff(f"embeddings/{DIFF_ENCODER}.pt"),
        log:
            logs("diffusion_embed.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_embed.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-embed"),

    use rule cpu_job as diffusion_baselines with:
        input:
            embeddings=diff(f"embeddings/{DIFF_ENCODER}.pt"),
        output:
            out=directory(diff(f"scores/{DIFF_ENCODER}.zarr")),
            out_aaa=directory(diff(f"scores/{DIFF_ENCODER}_aaa.zarr")),
        log:
            logs("diffusion_baselines.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_baselines.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-baselines"),

    use rule gpu_job as diffusion_selfinfluence with:
        input:
            model=diff("model.pt"),
            data=diff("data/train.npz"),
            fisher=lambda w: diffusion_fisher(diffusion_points()[w.point]["mask"]),
            prompts=diff("data/prompts.npz"),
            codec=diff("data/codec.npz"),
            embeddings=diff(f"embeddings/{DIFF_ENCODER}.pt"),
        output:
            out=diff("selfinfluence/{point}.json"),
        log:
            logs("diffusion_selfinfluence/{point}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_selfinfluence/{point}.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-selfinfluence", extra={"encoder": DIFF_ENCODER}),

    use rule engine_job as diffusion_diagnostics with:
        input:
            scores=lambda w: diff_row_scores(w.row.replace("-", "/")),
            replica=lambda w: diffusion_replica_pair(w.row.replace("-", "/")),
        output:
            out=diff("diagnostics/{row}.json"),
        log:
            logs("diffusion_diagnostics/{row}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_diagnostics/{row}.tsv", DIFF_EXP)
        params:
            **aria_job(
                "diagnostics",
                extra={"engine": COMPUTE["engine"], "replica_note": DIFF_REPLICA_NOTE},
            ),

    # The noise diagnostic (docs/spec.md §7): a second DiT trained with another seed (seeds.train + r)
    # scores the same queries by unlearning and Grad-Cos; the diagnostics compare the two rankings.
    use rule diffusion_train as diffusion_train_replica with:
        output:
            out=diff("replica{r}/model.pt"),
        log:
            logs("diffusion_train_replica{r}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_train_replica{r}.tsv", DIFF_EXP)

    use rule diffusion_fisher as diffusion_fisher_replica with:
        input:
            model=diff("replica{r}/model.pt"),
            data=diff("data/train.npz"),
        output:
            out=diff("replica{r}/unlearning/fisher_{side}.pt"),
        log:
            logs("diffusion_fisher/replica{r}_{side}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_fisher/replica{r}_{side}.tsv", DIFF_EXP)

    use rule diffusion_unlearning as diffusion_unlearning_replica with:
        input:
            model=diff("replica{r}/model.pt"),
            data=diff("data/train.npz"),
            queries=diff("queries/queries.npz"),
            fisher=lambda w: diffusion_fisher(DIFFUSION["unlearning"]["mask"], replica=w.r),
        output:
            out=diff("replica{r}/unlearning/chunks/q{chunk}.npz"),
        log:
            logs("diffusion_unlearning/replica{r}_q{chunk}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_unlearning/replica{r}_q{chunk}.tsv", DIFF_EXP)

    use rule diffusion_unlearning_merge as diffusion_unlearning_merge_replica with:
        input:
            parts=lambda w: diffusion_chunk_files(replica=w.r),
        output:
            out=directory(diff("replica{r}/scores/unlearning.zarr")),
        log:
            logs("diffusion_unlearning_merge_replica{r}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_unlearning_merge_replica{r}.tsv", DIFF_EXP)

    use rule diffusion_gradients as diffusion_gradients_replica with:
        input:
            model=diff("replica{r}/model.pt"),
            data=diff("data/train.npz"),
            queries=diff("queries/queries.npz"),
        output:
            out=directory(diff("replica{r}/features/gradcos.zarr")),
        log:
            logs("diffusion_gradients_replica{r}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_gradients_replica{r}.tsv", DIFF_EXP)

    use rule diffusion_gradcos as diffusion_gradcos_replica with:
        input:
            features=diff("replica{r}/features/gradcos.zarr"),
        output:
            out=directory(diff("replica{r}/scores/gradcos.zarr")),
        log:
            logs("diffusion_gradcos_replica{r}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_gradcos_replica{r}.tsv", DIFF_EXP)

    # Aria on top (docs/spec.md §5-§7): the audio experiment's channel features of the training clips,
    # their null, homogeneity, residual and alignment per report row, evidence cards with the clips'
    # and the generations' players, and the Aria report of these rows (main table, verdicts).
    use rule cpu_job as diffusion_evidence with:
        input:
            data=diff("data/train.npz"),
            codec=diff("data/codec.npz"),
            prompts=diff("data/prompts.npz"),
            manifest=audio_manifest(),
        output:
            out=diff("evidence/features.npz"),
            out_failures=diff("evidence/skipped.csv"),
            out_clips=directory(diff("evidence/clips")),
            out_manifest=diff("evidence/manifest.csv"),
        log:
            logs("diffusion_evidence.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_evidence.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-evidence"),

    use rule cpu_job as diffusion_null with:
        input:
            features=diff("evidence/features.npz"),
            manifest=diff("evidence/manifest.csv"),
        output:
            out=diff("evidence/null.json"),
        log:
            logs("diffusion_null.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_null.tsv", DIFF_EXP)
        params:
            **aria_job("null"),

    use rule cpu_job as diffusion_homogeneity with:
        input:
            **DIFF_EVIDENCE,
            scores=lambda w: diff_row_scores(w.row.replace("-", "/")),
            queries=diff("queries/queries.npz"),
        output:
            out=diff("homogeneity/{row}.json"),
        log:
            logs("diffusion_homogeneity/{row}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_homogeneity/{row}.tsv", DIFF_EXP)
        params:
            **aria_job("homogeneity", settings_of=diffusion_homogeneity_settings),

    use rule cpu_job as diffusion_residual with:
        input:
            **DIFF_EVIDENCE,
            scores=lambda w: diff_row_scores(w.row.replace("-", "/")),
        output:
            out=directory(diff("residual/{row}.zarr")),
            out_homogeneity=diff("homogeneity_residual/{row}.json"),
            out_alignment=diff("alignment/{row}.json"),
        log:
            logs("diffusion_residual/{row}.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_residual/{row}.tsv", DIFF_EXP)
        params:
            **aria_job("residual", settings_of=diffusion_residual_settings),

    use rule cpu_job as diffusion_cards with:
        input:
            card_spec_files(diffusion_cards_spec()),
        output:
            out=directory(diff("cards")),
        log:
            logs("diffusion_cards.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_cards.tsv", DIFF_EXP)
        params:
            **aria_job("cards", extra={"spec": diffusion_cards_spec()}),

    use rule cpu_job as diffusion_aria_report with:
        input:
            diagnostics=[diff_diagnostics(r) for r in DIFF_ROWS],
            homogeneity=[diff_row_file("homogeneity", r) for r in DIFF_ROWS],
            homogeneity_residual=[diff_row_file("homogeneity_residual", r) for r in DIFF_ROWS],
            alignment=[diff_row_file("alignment", r) for r in DIFF_ROWS],
            cards=diff("cards"),
        output:
            out_html=diff("aria/report.html"),
            out_md=diff("aria/report.md"),
            out_summary=diff("aria/summary.json"),
        log:
            logs("diffusion_aria_report.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_aria_report.tsv", DIFF_EXP)
        params:
            **aria_job("report", settings_of=diffusion_report_settings),

    use rule cpu_job as diffusion_compare with:
        input:
            [diff_row_scores(r) for r in DIFF_ROWS],
        output:
            out=diff("compare.json"),
        log:
            logs("diffusion_compare.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_compare.tsv", DIFF_EXP)
        params:
            **aria_job("unlearning-compare", extra={"spec": diffusion_compare_spec()}),

    use rule cpu_job as diffusion_report with:
        input:
            selfinfluence=[diff(f"selfinfluence/{p}.json") for p in diffusion_points()],
            compare=diff("compare.json"),
            diagnostics=[diff_diagnostics(r) for r in DIFF_ROWS],
            scores=diff_row_scores(DIFF_ROWS[0]),
            aria=diff("aria/summary.json"),
            model=diff("model.pt"),
            queries=diff("queries/queries.npz"),
        output:
            out_md=results("report.md", DIFF_EXP),
            out_summary=results("summary.json", DIFF_EXP),
            out_figures=directory(results("report/figures", DIFF_EXP)),
            out_tables=directory(results("report/tables", DIFF_EXP)),
        log:
            logs("diffusion_report.log", DIFF_EXP),
        benchmark:
            benchmarks("diffusion_report.tsv", DIFF_EXP)
        params:
            **aria_job("diffusion-report"),
