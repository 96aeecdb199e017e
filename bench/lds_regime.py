"""Is an LDS setting testable? The seed-noise ratio of a retraining protocol, without the workflow.

``make validate`` answers this after 48 retrainings; this script answers it for a
few subsets first, so that a user can choose the recipe, init, corpus size and epochs of a
testable ground truth (docs/validation.md, "How the testable regime was found")::

    .venv/bin/python bench/lds_regime.py                                  # the demo's setting, init shared
    .venv/bin/python bench/lds_regime.py --init fresh                     # new initial weights per run
    .venv/bin/python bench/lds_regime.py --pieces 80 --epochs 30          # a smaller corpus, trained longer

It reads a finished run's training segments (``segments/symbolic/train.npz``) and queries
(``queries/symbolic/queries.npz``). With ``--pieces`` (keep that many training pieces, seeded)
or ``--epochs`` it trains that setting's member 0 instead (seed ``seeds.train``) and generates
the queries from the run's eval prompts as the workflow does. Then M subsets x R runs are
retrained with :func:`aria.evaluation.lds.counterfactual_targets` (the workflow's function:
per-subset seeds ``train + 1000 + m R + r``, recipe ``steps``), and after every subset from the
third on it prints :func:`aria.evaluation.lds.seed_noise_ceiling`: seed sd, subset sd, one run's
ratio, the R-run mean targets' ratio (2 or more: testable), run agreement and the LDS ceiling.
The estimates sharpen with M; a ratio within about 0.3 of 2 needs the full ``make validate``.
One retraining of the demo model takes about 45 s on one core; runs write nothing but ``--out``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from aria.evaluation.lds import lds_base_seed, retrain_seeds, seed_noise_ceiling, subset_mask  # noqa: E402

KEYS = ("seed_sd", "subset_sd", "ratio", "target_ratio", "run_agreement", "lds_ceiling", "common_share")


def main(argv=None) -> None:
    import torch

    from aria.evaluation.lds import counterfactual_targets
    from aria.io.tables import read_npz
    from aria.models.training import generate, train_model
    from aria.models.transformer import ModelConfig, MusicTransformer
    from aria.symbolic.tokenize import PAD

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--results", default=None, help="default: results/<experiment of --config>")
    ap.add_argument("--init", choices=("shared", "fresh"), default="shared")
    ap.add_argument("--pieces", type=int, default=0, help="keep this many training pieces (0: all)")
    ap.add_argument("--epochs", type=int, default=0, help="member 0's epochs (0: the config's)")
    ap.add_argument("--subsets", type=int, default=8, help="M")
    ap.add_argument("--runs", type=int, default=2, help="R (at least 2)")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="save the targets (M, R, Q) as .npy")
    a = ap.parse_args(argv)
    if a.runs < 2 or a.subsets < 3:
        ap.error("the ratio needs --runs >= 2 and --subsets >= 3")
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(open(a.config))
    res = a.results or os.path.join("results", cfg["experiment"])
    mc = dict(cfg["model"])
    epochs = a.epochs or mc["epochs"]
    seeds = cfg["seeds"]
    train = read_npz(os.path.join(res, "segments", "symbolic", "train.npz"))
    model_cfg = ModelConfig(
        d_model=mc["d_model"], n_layers=mc["n_layers"], n_heads=mc["n_heads"], d_ff=mc["d_ff"],
        max_len=cfg["segments"]["block_tokens"],
    )  # fmt: skip
    t0 = time.time()
    if a.pieces:
        tracks = np.unique(train["track_ids"])
        keep_t = np.random.default_rng(seeds["lds"]).choice(tracks, min(a.pieces, len(tracks)), replace=False)
        sel = np.isin(train["track_ids"], keep_t)
        train = {k: train[k][sel] for k in ("tokens", "mask", "track_ids")}
    if a.pieces or a.epochs:
        # member 0 of this setting and its queries, as the workflow makes them (fused kernel: faster,
        # the same model up to round-off)
        full = train_model(
            train["tokens"], train["mask"], cfg=model_cfg, epochs=epochs, lr=mc["lr"],
            batch_size=mc["batch_size"], n_checkpoints=1, random_state=seeds["train"], fused=True,
        )  # fmt: skip
        m0 = MusicTransformer(model_cfg)
        m0.load_state_dict(full["final"])
        prompts = read_npz(os.path.join(res, "segments", "symbolic", "eval_prompts.npz"))["prompts"]
        q = generate(
            m0, prompts, length=model_cfg.max_len, temperature=cfg["queries"]["temperature"],
            random_state=seeds["queries"], top_k=cfg["queries"].get("top_k", 0),
        )  # fmt: skip
        lm = np.zeros(q.shape, dtype=bool)
        lm[:, prompts.shape[1] :] = True
        queries = {"tokens": q, "mask": q != PAD, "loss_mask": lm}
        print(f"member 0: {full['steps']} steps, training loss {full['losses'][-1]:.3f} ({time.time() - t0:.0f} s)")
    else:
        queries = read_npz(os.path.join(res, "queries", "symbolic", "queries.npz"))
    N = len(train["tokens"])
    total = epochs * math.ceil(N / mc["batch_size"])
    print(
        f"{res}: N = {N} segments, Q = {len(queries['tokens'])} queries; {epochs} epochs = {total} steps per run; "
        f"init {a.init}; M = {a.subsets} x R = {a.runs}"
    )
    T = np.zeros((a.subsets, a.runs, len(queries["tokens"])))
    for m in range(a.subsets):
        keep = subset_mask(N, m, alpha=a.alpha, random_state=seeds["lds"])
        out = counterfactual_targets(
            train, queries, keep, model_cfg=model_cfg, epochs=epochs, lr=mc["lr"], batch_size=mc["batch_size"],
            seeds=retrain_seeds(lds_base_seed(seeds["train"]), m, a.runs), total_steps=total,
            init_state=seeds["train"] if a.init == "shared" else None,
        )  # fmt: skip
        T[m] = out["target_runs"]
        if m >= 2:
            c = seed_noise_ceiling(T[: m + 1])
            print(f"M = {m + 1:>3d} ({time.time() - t0:>5.0f} s): " + ", ".join(f"{k} {c[k]:.4f}" for k in KEYS))
    if a.out:
        np.save(a.out, T)


if __name__ == "__main__":
    main()
