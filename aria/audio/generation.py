"""Hierarchical generation of audio queries: semantic, then coarse, then fine (MusicLM style).

For each held-out track, the semantic stage continues the track's conditioning
tokens and the first ``prompt_s`` seconds of its semantic tokens; the coarse stage
generates acoustic codes (first ``n_coarse`` quantizers) on the generated semantic
tokens; the fine stage generates the remaining quantizers for every fine window
inside the coarse window. One query per stage: its tokens, PAD mask and loss mask
(only the generated target block is scored). Stage s samples with seed
``seed + aria.registry.stage(s).index``.
"""

from __future__ import annotations

import numpy as np

from aria import registry
from aria.audio.stages import AudioVocab
from aria.models.training import generate

__all__ = ["generate_queries"]


def generate_queries(
    models: dict, vocab: AudioVocab, tracks: list[dict], *, prompt_s: float, temperature: float, seed: int
) -> tuple[dict, list[np.ndarray]]:
    """Queries of every stage and the acoustic codes to decode, for each prompt track.

    Parameters
    ----------
    models : dict
        ``{"semantic": model, "coarse": model, "fine": model}`` (torch modules).
    vocab : AudioVocab
    tracks : list of dict
        One per query: ``cond`` (n_cond,), ``sem`` (T_sem,), ``codes`` (T_ac, n_q) of the
        held-out track whose opening is the prompt.
    prompt_s : float, keyword-only
        Prompt length in seconds (of semantic tokens taken from each track's opening).
    temperature : float, keyword-only
        Sampling temperature (logits are divided by it).
    seed : int, keyword-only
        Base seed: stage ``s`` samples with ``random_state = seed + index of s``
        (:func:`aria.models.training.generate`), so the stages draw different streams.

    Returns
    -------
    queries : dict
        ``{stage: {"tokens", "mask", "loss_mask"}}``, each (Q, seq_len(stage)).
    codes : list of ndarray
        Per query, the generated acoustic codes (T, n_q) of the coarse window.
    """

    def run(stage, prefixes):
        out = generate(
            models[stage],
            np.stack(prefixes),
            length=vocab.seq_len(stage),
            temperature=temperature,
            random_state=seed + registry.stage(stage).index,
            pad=vocab.pad,
            allowed=vocab.allowed_tokens(stage),
        )
        return out, [vocab.split_codes(stage, o) for o in out]

    n_prompt = int(round(prompt_s * vocab.sem_rate))
    pre = []
    for tr in tracks:
        t, _, _ = vocab.stage_sequence("semantic", cond=tr["cond"], sem=tr["sem"], codes=tr["codes"], t0=0.0)
        pre.append(t[: vocab.n_cond + n_prompt])
    sem_tok, sem_parts = run("semantic", pre)

    def prefix(stage, tr, sem, coarse=None):
        empty = np.zeros((0, vocab.n_q), dtype=np.int64)
        codes = (
            empty
            if coarse is None
            else np.concatenate([coarse, np.zeros((len(coarse), vocab.n_q - vocab.n_coarse), dtype=np.int64)], axis=1)
        )
        t, _, _ = vocab.stage_sequence(stage, cond=tr["cond"], sem=sem, codes=codes, t0=0.0)
        n_target = dict(vocab.block_lengths(stage))[vocab.target_block(stage)]
        return t[: vocab.seq_len(stage) - n_target]

    co_tok, co_parts = run("coarse", [prefix("coarse", tr, sp["sem"]) for tr, sp in zip(tracks, sem_parts)])
    n_fine = int(round(vocab.window("fine") * vocab.ac_rate))
    n_sem_fine = int(round(vocab.window("fine") * vocab.sem_rate))
    # fine codes for every fine window inside the coarse window; the first is the fine query,
    # all of them together give the decoded audio of the whole coarse window
    fine_windows = max(1, int(round(vocab.window("coarse") / vocab.window("fine"))))
    fi_tok, fine_codes = None, [[] for _ in tracks]
    for j in range(fine_windows):
        tok_j, parts_j = run(
            "fine",
            [
                prefix(
                    "fine",
                    tr,
                    sp["sem"][j * n_sem_fine : (j + 1) * n_sem_fine],
                    cp["coarse"][j * n_fine : (j + 1) * n_fine],
                )
                for tr, sp, cp in zip(tracks, sem_parts, co_parts)
            ],
        )
        fi_tok = tok_j if fi_tok is None else fi_tok
        for q, part in enumerate(parts_j):
            fine_codes[q].append(part["fine"])
    queries = {}
    for stage, tok, n_prefix in (
        ("semantic", sem_tok, vocab.n_cond + n_prompt),
        ("coarse", co_tok, None),
        ("fine", fi_tok, None),
    ):
        mask = tok != vocab.pad
        lm = np.zeros_like(mask)
        if n_prefix is None:
            n_prefix = tok.shape[1] - dict(vocab.block_lengths(stage))[vocab.target_block(stage)]
        lm[:, n_prefix:] = mask[:, n_prefix:]
        queries[stage] = {"tokens": tok, "mask": mask, "loss_mask": lm}
    codes = []
    for cp, fc in zip(co_parts, fine_codes):
        fine = np.concatenate(fc)
        codes.append(np.concatenate([cp["coarse"][: len(fine)], fine[: len(cp["coarse"])]], axis=1))
    return queries, codes
