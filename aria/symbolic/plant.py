"""Planted copies: new pieces that take exactly one musical aspect from a source piece.

The planted-influence benchmark builds its queries from these: a query made from training
piece ``source`` and an unrelated ``host`` (a piece the model never trained on) has a known
right answer (the source's segments) and a known aspect. Every transform works on note lists
(:data:`aria.symbolic.notes.NOTE_DTYPE`, onset order) and returns a new one; times in
seconds. What each keeps from the source, and what it takes from the host instead:

``full``
    The source itself, shifted to start at time 0.
``melody``
    The source's melody (its skyline: the highest pitch at each distinct onset, all tracks
    merged), transposed by a seeded nonzero interval of 1..6 semitones up or down, so its
    pitch contour and melodic intervals are kept and its pitch classes are not; sung
    monophonically on the host's skyline rhythm (onset and duration of the host's i-th skyline
    note) with the host's velocities. Rhythm, harmony and texture change.
``rhythm``
    Every source note's onset and offset (so the note durations, density and polyphony
    profile); pitches and velocities are the host's, taken in the host's onset order and
    cycled. Melody and harmony change.
``harmony``
    The source's sonorities (the notes sharing an onset, with their pitches), in a seeded
    random order, each placed at the host's next onset (cycled) and held for that onset's
    duration in the host, with the host's velocity there. Pitch classes and vertical
    intervals stay the source's; rhythm and the melodic line change.

A copy is as long as the shorter of the two note sequences it combines (``melody``: skyline
notes, ``harmony``: sonorities, ``rhythm``: the source's notes), so it never repeats material.
"""

from __future__ import annotations

import numpy as np

from aria.symbolic.notes import as_notes, make_notes

__all__ = ["ASPECTS", "AUDIO_ASPECTS", "skyline", "onset_groups", "plant", "plant_assignments", "planted_queries"]

#: The planted aspects, and the evidence channel (:data:`aria.symbolic.features.CHANNELS`) each
#: is meant to move; ``full`` copies every channel.
ASPECTS: dict[str, str | None] = {"full": None, "melody": "melody", "rhythm": "rhythm", "harmony": "harmony"}

#: The same aspects against the audio evidence channels (:data:`aria.audio.features.CHANNELS`):
#: audio has no melodic channel (chroma mixes the melody into the harmony), so a melody plant
#: names none there.
AUDIO_ASPECTS: dict[str, str | None] = {"full": None, "melody": None, "rhythm": "rhythmic", "harmony": "harmonic"}


def _ordered(notes) -> np.ndarray:
    notes = as_notes(notes)
    return notes[np.lexsort((notes["pitch"], notes["onset"]))]


def skyline(notes) -> np.ndarray:
    """Indices (into ``notes``) of the highest note at each distinct onset, all tracks merged.

    Parameters
    ----------
    notes : note list, shape (n,)

    Returns
    -------
    int64 array (k,), k = number of distinct onsets, in onset order.
    """
    notes = as_notes(notes)
    order = np.lexsort((notes["pitch"], notes["onset"]))
    onset = notes["onset"][order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = onset[1:] != onset[:-1]
    return order[last].astype(np.int64)


def onset_groups(notes) -> list[np.ndarray]:
    """The notes of each distinct onset (a sonority), as index arrays into ``notes``, in onset order.

    ``notes`` is a note list, shape (n,); each returned int64 array (of shape (n_g,)) lists
    one onset's notes by ascending pitch; an empty note list gives an empty list.
    """
    notes = as_notes(notes)
    order = np.lexsort((notes["pitch"], notes["onset"]))
    onset = notes["onset"][order]
    cuts = np.flatnonzero(onset[1:] != onset[:-1]) + 1
    return [g.astype(np.int64) for g in np.split(order, cuts)] if order.size else []


def _transposition(pitches: np.ndarray, rng: np.random.Generator) -> int:
    """A nonzero shift in -6..6 that keeps every pitch in 0..127 (seeded)."""
    lo, hi = int(pitches.min()), int(pitches.max())
    options = [s for s in range(-6, 7) if s != 0 and lo + s >= 0 and hi + s <= 127]
    if not options:
        raise ValueError("the melody spans the whole MIDI range: no transposition keeps it in 0..127")
    return int(rng.choice(options))


def plant(source, host, aspect: str, *, random_state: int) -> np.ndarray:
    """A new piece that keeps one aspect of ``source`` and takes the rest from ``host``.

    Parameters
    ----------
    source, host : note lists (:data:`~aria.symbolic.notes.NOTE_DTYPE`), shape (n,), (m,)
    aspect : {"full", "melody", "rhythm", "harmony"}
        See the module docstring.
    random_state : int, keyword-only
        Seeds the melody's transposition and the harmony's order.

    Returns
    -------
    note list (NOTE_DTYPE), starting at time 0, all notes on track 0.

    Raises
    ------
    ValueError
        Unknown aspect, or too little material (fewer than 2 notes, skyline notes or
        sonorities where the aspect needs them).
    """
    if aspect not in ASPECTS:
        raise ValueError(f"unknown aspect {aspect!r}; choose one of {sorted(ASPECTS)}")
    src, hst = _ordered(source), _ordered(host)
    if len(src) < 2 or (aspect != "full" and len(hst) < 2):
        raise ValueError(f"{aspect} copy: need at least 2 notes in the source and the host")
    rng = np.random.default_rng(int(random_state))
    if aspect == "full":
        t0 = src["onset"].min()
        out = make_notes(src["onset"] - t0, src["offset"] - t0, src["pitch"], src["velocity"])
    elif aspect == "melody":
        s, h = src[skyline(src)], hst[skyline(hst)]
        n = min(len(s), len(h))
        if n < 2:
            raise ValueError("melody copy: the source or the host has fewer than 2 distinct onsets")
        shift = _transposition(s["pitch"][:n].astype(np.int64), rng)
        h = h[:n]
        # monophonic: each note ends by the next onset, so the melody is its own skyline
        off = np.minimum(h["offset"], np.append(h["onset"][1:], np.inf))
        off = np.maximum(off, h["onset"])
        out = make_notes(h["onset"], off, s["pitch"][:n].astype(np.int64) + shift, h["velocity"])
    elif aspect == "rhythm":
        take = np.arange(len(src)) % len(hst)
        out = make_notes(src["onset"], src["offset"], hst["pitch"][take], hst["velocity"][take])
    else:  # harmony
        sg, hg = onset_groups(src), onset_groups(hst)
        n = min(len(sg), len(hg))
        if n < 2:
            raise ValueError("harmony copy: the source or the host has fewer than 2 sonorities")
        chords = [sg[i] for i in rng.permutation(len(sg))[:n]]
        on, off, pitch, vel = [], [], [], []
        for chord, slot in zip(chords, hg[:n]):
            t = float(hst["onset"][slot[0]])
            dur = float(hst["offset"][slot].max()) - t
            on += [t] * len(chord)
            off += [t + dur] * len(chord)
            pitch += src["pitch"][chord].tolist()
            vel += [int(hst["velocity"][slot].max())] * len(chord)
        out = make_notes(on, off, pitch, vel)
    t0 = out["onset"].min()
    out["onset"] -= t0
    out["offset"] -= t0
    return out


def plant_assignments(candidates, host_ids, n_sources: int, aspects, random_state: int) -> list[tuple]:
    """Which source is planted, with which aspect, on which host, with which seed.

    Parameters
    ----------
    candidates : sequence of str
        Training pieces that may serve as sources (sorted by the caller).
    host_ids : sequence of str
        Held-out pieces (sorted by the caller).
    n_sources : int
        Sources drawn from ``candidates`` without replacement.
    aspects : sequence of str
        Aspects planted from every source, in this order.
    random_state : int
        Seeds the sources, a permutation of the hosts (cycled over, so that one source's
        aspects land on different hosts) and each plant's own seed.

    Returns
    -------
    list of (source, aspect, host, seed), n_sources * len(aspects) of them, sources sorted.
    """
    if len(candidates) < n_sources:
        raise ValueError(f"{n_sources} sources asked, but only {len(candidates)} candidate training pieces")
    if not len(host_ids):
        raise ValueError("planted queries need at least one held-out host piece")
    rng = np.random.default_rng(int(random_state))
    sources = sorted(rng.choice(list(candidates), size=int(n_sources), replace=False).tolist())
    hosts = [host_ids[i] for i in rng.permutation(len(host_ids))]
    out, h = [], 0
    for s in sources:
        for a in aspects:
            out.append((s, a, hosts[h % len(hosts)], int(rng.integers(2**31))))
            h += 1
    return out


def planted_queries(
    train_streams: dict,
    hosts: dict,
    *,
    n_sources: int,
    aspects=tuple(ASPECTS),
    block: int,
    random_state: int,
    min_onsets: int = 4,
) -> dict:
    """The planted-influence benchmark's queries: one per (source, aspect).

    Parameters
    ----------
    train_streams : dict track_id -> int array
        The token stream of every training piece (:func:`aria.symbolic.tokenize.encode`).
    hosts : dict track_id -> note list
        Held-out pieces (the model never trained on them) that lend the other aspects.
    n_sources : int, keyword-only
        Training pieces used as sources, drawn with ``random_state`` among those whose first
        segment has at least ``min_onsets`` distinct onsets.
    aspects : sequence of str, keyword-only
        Aspects planted from each source (:data:`ASPECTS`).
    block : int, keyword-only
        Tokens per query (the segments' block length); longer copies are cut, shorter padded.
    random_state : int, keyword-only
        Seeds the sources, the hosts (a seeded cycle over ``hosts``: a source's aspects get
        different hosts) and each :func:`plant`.

    Returns
    -------
    dict of arrays over the Q = n_sources * len(aspects) queries: ``tokens`` (Q, block) int64,
    ``mask`` and ``loss_mask`` (Q, block) bool (every real token is scored), ``query_ids``
    ("p-<aspect>-<source track>"), ``track_ids`` (the host's), ``source_tracks``, ``aspects``.
    The source material is the source's first segment (its block 0), so a full copy
    reproduces that training segment.
    """
    from aria.symbolic.tokenize import PAD, encode, segment_notes

    bad = [a for a in aspects if a not in ASPECTS]
    if bad:
        raise ValueError(f"unknown aspect(s) {bad}; choose from {sorted(ASPECTS)}")
    if not hosts:
        raise ValueError("planted queries need at least one held-out host piece")
    first = {}
    for t in sorted(train_streams):
        notes = segment_notes(train_streams[t], block=block)[:1]
        if notes and len(np.unique(notes[0][1]["onset"])) >= min_onsets:
            first[t] = notes[0][1]
    if len(first) < n_sources:
        raise ValueError(
            f"{n_sources} sources asked, but only {len(first)} training pieces have a first segment with "
            f"{min_onsets} or more onsets"
        )
    toks, mask, qids, tids, srcs, asps = [], [], [], [], [], []
    for s, a, host, seed in plant_assignments(sorted(first), sorted(hosts), n_sources, aspects, random_state):
        notes = plant(first[s], hosts[host], a, random_state=seed)
        t = encode(notes)[:block]
        row = np.full(block, PAD, dtype=np.int64)
        row[: len(t)] = t
        toks.append(row)
        mask.append(row != PAD)
        qids.append(f"p-{a}-{s}")
        tids.append(host)
        srcs.append(s)
        asps.append(a)
    mask = np.array(mask)
    return {
        "tokens": np.array(toks),
        "mask": mask,
        "loss_mask": mask.copy(),
        "query_ids": np.array(qids),
        "track_ids": np.array(tids),
        "source_tracks": np.array(srcs),
        "aspects": np.array(asps),
    }
