"""Planted copies for the audio experiment: the symbolic plants (:mod:`aria.symbolic.plant`)
rendered to audio, and turned into one query sequence per stage.

A query is ``window_s`` seconds long (the longest stage window, so that every stage's first
window sees planted material):

``full``
    The source's training recording itself, its first ``window_s`` seconds: the same samples
    the model trained on. With the training track's conditioning codes (``cond_codes`` of
    :func:`query_sequences`), its first window of every stage is the training segment, up to
    the last frames, whose analysis reaches past the query's end.
``melody``, ``rhythm``, ``harmony``
    :func:`aria.symbolic.plant.plant` on the first ``window_s`` seconds of the source's and the
    host's notes, rendered with the host's first instrument (its General MIDI program), so that
    the timbre is the host's too.
"""

from __future__ import annotations

import numpy as np

from aria.symbolic.plant import plant

__all__ = ["planted_audio", "query_sequences"]


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)[:n]
    return np.pad(y, (0, n - len(y)))


def planted_audio(sources: dict, hosts: dict, assignments, *, window_s: float, sr: int, soundfont=None) -> list:
    """Render one waveform per planted query.

    Parameters
    ----------
    sources : dict track_id -> {"audio": float array (n,), "notes": note list}
        Each source's training recording (at ``sr``) and its notes over the same time span.
    hosts : dict track_id -> {"notes": note list, "program": int}
        Held-out pieces: their notes and the General MIDI program (0-based) they lend.
    assignments : sequence of (source, aspect, host, seed)
        :func:`aria.symbolic.plant.plant_assignments`.
    window_s : float, keyword-only
        Length of every query in seconds; notes past it are not rendered, shorter copies are
        padded with silence.
    sr : int, keyword-only
        Sample rate in Hz.
    soundfont : path, optional
        As for :func:`aria.audio.render.render_midi`.

    Returns
    -------
    list of float32 arrays, each (round(window_s * sr),), in the order of ``assignments``.
    """
    from aria.audio.corpus import select_excerpt
    from aria.audio.render import render_midi

    n = int(round(window_s * sr))
    out = []
    for s, aspect, h, seed in assignments:
        if aspect == "full":
            out.append(_fit(sources[s]["audio"], n))
            continue
        try:
            notes = plant(sources[s]["notes"], hosts[h]["notes"], aspect, random_state=seed)
        except ValueError as e:
            raise ValueError(f"planting {aspect} of {s} on {h}: {e}") from e
        notes = select_excerpt(notes, duration_s=window_s)
        y = render_midi(notes, programs={0: int(hosts[h]["program"])}, sr=sr, soundfont=soundfont, duration_s=window_s)
        out.append(_fit(y, n))
    return out


def query_sequences(waveforms, *, vocab, semantic, acoustic, cond, stages, cond_codes=None) -> dict:
    """Tokenize waveforms and build each stage's sequence of their first window (t0 = 0).

    Parameters
    ----------
    waveforms : sequence of float arrays (n_i,)
        At the tokenizers' sample rate.
    vocab : :class:`aria.audio.stages.AudioVocab`
    semantic : :class:`aria.audio.tokenizers.SemanticKMeans`
        Fitted; also gives the track embedding that ``cond`` quantizes
        (:meth:`~aria.audio.tokenizers.SemanticKMeans.encode_and_embed`), as for the training tracks.
    acoustic : :class:`aria.audio.tokenizers.MelRVQ`
        Fitted.
    cond : :class:`aria.audio.stages.ConditioningRVQ`
        Fitted.
    stages : sequence of str
    cond_codes : sequence of (int array (n_cond,) or None), optional
        Conditioning codes to use instead of ``cond``'s encoding of the waveform, per waveform
        (None: encode it). A full copy keeps its training track's codes this way.

    Returns
    -------
    dict stage -> {"tokens": int64 (Q, L), "mask": bool (Q, L), "loss_mask": bool (Q, L)},
    the layout of generated queries (:func:`aria.audio.generation.generate_queries`).
    """
    sems, emb = zip(*(semantic.encode_and_embed(y) for y in waveforms), strict=True)
    codes_c = list(cond.encode(np.stack(emb)))
    for i, c in enumerate(cond_codes or []):
        if c is not None:
            codes_c[i] = np.asarray(c, dtype=np.int64)
    acs = [acoustic.encode(y) for y in waveforms]
    out = {}
    for stage in stages:
        rows = [
            vocab.stage_sequence(stage, cond=c, sem=s, codes=a, t0=0.0)
            for c, s, a in zip(codes_c, sems, acs, strict=True)
        ]
        out[stage] = {k: np.stack([r[i] for r in rows]) for i, k in enumerate(("tokens", "mask", "loss_mask"))}
    return out
