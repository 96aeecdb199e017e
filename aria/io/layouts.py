"""The npz and JSON layouts that pass between workflow jobs, read and written in one place.

Evidence bundle (``evidence/symbolic_features.npz``, ``evidence/audio_features.npz``)
------------------------------------------------------------------------------------
Symbolic: ``segment_ids`` (N,) plus one (N, d) array per docs/spec.md §5 feature.
Audio: ``track_ids`` (T,), one (T, d) array per feature, and the ragged chord-root
sequences as ``chords`` (sum of lengths,) with ``chord_lengths`` (T,).

Null document (``evidence/null.json``)
--------------------------------------
The output of :func:`aria.evaluation.homogeneity.null_distribution`; in JSON the
``by_k`` keys are strings and the per-feature ``scales`` are lists (or null).

Encoder frames of a corpus (``embeddings/{encoder}.npz``)
--------------------------------------------------------
One encoder's frame embeddings of every training track: ``track_ids`` (T,), the
frames as a ragged array (``frames`` (sum of frame counts, D), ``offsets`` (T + 1,)),
``encoder`` (the registry name) and ``sr`` (Hz, the rate the audio was loaded at).

Ragged arrays
-------------
A list of 1-D or 2-D arrays is stored flat (concatenated along axis 0) with
``offsets`` of length n + 1: item i is ``flat[offsets[i]:offsets[i + 1]]``.
"""

from __future__ import annotations

import numpy as np

from aria.io.tables import read_json, read_npz, write_json, write_npz

__all__ = [
    "pack_ragged",
    "ragged_item",
    "read_evidence",
    "write_null",
    "read_null",
    "write_corpus_frames",
    "read_corpus_frames",
    "write_kfac",
    "read_kfac",
]


def pack_ragged(items) -> tuple[np.ndarray, np.ndarray]:
    """``(flat, offsets)`` of a list of arrays (see module docstring)."""
    items = list(items)
    offsets = np.cumsum([0] + [len(x) for x in items])
    flat = np.concatenate(items) if items else np.zeros(0, dtype=np.int64)
    return flat, offsets


def ragged_item(flat, offsets, i) -> np.ndarray:
    """Item ``i`` of a packed ragged array."""
    return flat[offsets[i] : offsets[i + 1]]


def read_evidence(path) -> dict:
    """An evidence bundle as ``{"kind", "ids", "features"}``.

    ``kind`` is ``"symbolic"`` (segment ids) or ``"audio"`` (track ids; the
    feature ``chords`` is then a list of per-track chord-root arrays).
    """
    d = read_npz(path)
    if "segment_ids" in d:
        ids = d.pop("segment_ids")
        return {"kind": "symbolic", "ids": ids, "features": d}
    if "track_ids" not in d:
        raise ValueError(f"{path}: not an evidence bundle (no segment_ids or track_ids)")
    ids = d.pop("track_ids")
    offs = np.concatenate([[0], np.cumsum(d.pop("chord_lengths"))])
    chords = d.pop("chords")
    d["chords"] = [ragged_item(chords, offs, i) for i in range(len(ids))]
    return {"kind": "audio", "ids": ids, "features": d}


def write_evidence(path, track_ids, features: dict) -> None:
    """Write an audio evidence bundle (:func:`read_evidence` reads it back).

    ``features`` is :func:`aria.audio.features.extract_many`'s, without ``paths``: vector features
    with one row per track, and ``chords``, a list of per-track int arrays (stored flat with their
    lengths).
    """
    feats = dict(features)
    chords = feats.pop("chords")
    write_npz(
        path,
        track_ids=np.asarray(track_ids),
        chords=np.concatenate(chords) if chords else np.zeros(0, int),
        chord_lengths=np.array([len(c) for c in chords], dtype=np.int64),
        **feats,
    )


def write_null(path, null: dict) -> None:
    """Write a null document (``by_k`` with int keys, ``scales`` with arrays) as JSON."""
    out = dict(null)
    out["by_k"] = {str(k): v for k, v in null["by_k"].items()}
    out["scales"] = {k: (None if v is None else np.asarray(v).tolist()) for k, v in null["scales"].items()}
    write_json(path, out)


def read_null(path) -> dict:
    """Read a null document back: int ``by_k`` keys, array ``scales``."""
    null = read_json(path)
    null["by_k"] = {int(k): v for k, v in null["by_k"].items()}
    null["scales"] = {k: (None if v is None else np.asarray(v)) for k, v in null["scales"].items()}
    return null


def write_corpus_frames(path, track_ids, frames, *, encoder: str, sr: int) -> None:
    """Write one encoder's per-track frame embeddings (a list of (n_frames, D) arrays)."""
    if len(track_ids) != len(frames):
        raise ValueError(f"{path}: {len(track_ids)} track ids for {len(frames)} frame arrays")
    flat, offsets = pack_ragged(frames)
    write_npz(path, track_ids=np.asarray(track_ids).astype(str), frames=flat, offsets=offsets, encoder=encoder, sr=sr)


def read_corpus_frames(path) -> dict:
    """``{"track_ids", "frames" (list of (n_frames, D) arrays), "encoder", "sr"}``."""
    d = read_npz(path)
    missing = {"track_ids", "frames", "offsets", "encoder", "sr"} - set(d)
    if missing:
        raise ValueError(f"{path}: not an encoder-frames file (missing {sorted(missing)})")
    n = len(d["track_ids"])
    return dict(
        track_ids=d["track_ids"].astype(str),
        frames=[ragged_item(d["frames"], d["offsets"], i) for i in range(n)],
        encoder=str(d["encoder"]),
        sr=int(d["sr"]),
    )


def write_kfac(path, cov: dict) -> None:
    """Write KFAC factors ``{layer: {factor: array}}`` as one npz, keys ``"<layer>|<factor>"``.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file (written atomically).
    cov : dict of str to dict of str to ndarray
        Per layer name (e.g. ``blocks.0.qkv``), its factors (e.g. ``A`` (d_in, d_in), ``G``
        (d_out, d_out)), as :func:`aria.attribution.factored.kfac_covariance` returns them.
    """
    write_npz(path, **{f"{n}|{f}": v for n, c in cov.items() for f, v in c.items()})


def read_kfac(path) -> dict:
    """The KFAC factors written by :func:`write_kfac`: ``{layer: {factor: array}}``."""
    cov = {}
    for key, v in read_npz(path).items():
        name, _, f = key.partition("|")
        cov.setdefault(name, {})[f] = v
    return cov
