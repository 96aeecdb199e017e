"""miditok tokenizers as the symbolic experiment's tokenizer (aria/symbolic/tokenizers.py).

References: miditok's own encode and decode (the round trip through Aria's segments), the source
notes and their features (on miditok's grid the decode gives them back), and Aria's own
vocabulary's segments (the same interface).
"""

import json
from pathlib import Path

import numpy as np
import pytest

miditok = pytest.importorskip("miditok")

from aria.io.midi import write_midi  # noqa: E402
from aria.symbolic.features import extract_many  # noqa: E402
from aria.symbolic.notes import NOTE_DTYPE  # noqa: E402
from aria.symbolic.tokenize import data_tokenizer, split_blocks, track_segment_notes  # noqa: E402
from aria.symbolic.tokenizers import MiditokTokenizer, load_tokenizer  # noqa: E402

KINDS = ["REMI", "TSD", "MIDILike", "Structured"]
STEP = 0.5 / 8  # miditok's default grid at 120 BPM: 8 positions per beat in the first 4 beats


def _tokenizer(tmp_path, kind):
    cfg = miditok.TokenizerConfig(num_velocities=16)
    path = tmp_path / f"{kind}.json"
    getattr(miditok, kind)(cfg).save(path)
    return path


def _piece(seed, *, on_grid=True, n=90):
    """Two tracks of notes at 120 BPM: onsets and durations on miditok's grid (or jittered off it by
    less than half a step), velocities on its 16 bins (or between them)."""
    rng = np.random.default_rng(seed)
    on = np.sort(rng.integers(0, 16 * 8, n)) * STEP
    dur = rng.choice([1, 2, 4, 8], n) * STEP
    notes = np.zeros(n, dtype=NOTE_DTYPE)
    vel_bins = np.linspace(0, 127, 16 + 1, dtype=np.intp)[1:]  # miditok's velocity values
    notes["onset"], notes["offset"] = on, on + dur
    notes["pitch"] = rng.integers(48, 84, n)
    notes["velocity"] = rng.choice(vel_bins, n)
    notes["track"] = rng.integers(0, 2, n)
    if not on_grid:
        jit = rng.uniform(-0.4, 0.4, n) * STEP
        notes["onset"] += jit
        notes["offset"] += jit
        notes["velocity"] = np.clip(notes["velocity"] + rng.integers(-2, 3, n), 1, 127)
    # no pitch struck again while it sounds: a MIDI file cannot hold such overlaps (the first
    # note-off would end both), so the file would not hold the source notes
    keep, until = [], {}
    for i in np.argsort(notes["onset"], kind="stable"):
        p = int(notes["pitch"][i])
        if until.get(p, -1.0) <= notes["onset"][i] - 1e-9:
            keep.append(i)
            until[p] = notes["offset"][i]
    return notes[np.sort(keep)]


def _key(notes):
    return sorted((round(float(a), 6), round(float(b), 6), int(p), int(v)) for a, b, p, v, _ in notes.tolist())


def _segments_file(tok, settings, ids, block):
    blocks, mask, starts = split_blocks(ids, block=block, pad=tok.pad)
    return dict(
        tokens=blocks,
        mask=mask,
        segment_ids=np.array([f"t:{b:03d}" for b in range(len(blocks))]),
        track_ids=np.array(["t"] * len(blocks)),
        streams=ids,
        stream_offsets=np.array([0, len(ids)]),
        stream_tracks=np.array(["t"]),
        tempo_maps=np.array([[0.0, 0.5]]),
        tempo_offsets=np.array([0, 1]),
        tokenizer=np.str_(json.dumps(settings)),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_through_arias_segments_equals_miditoks_decode(tmp_path, kind):
    """miditok encode → Aria's segments → decode to notes, block by block, put back together = miditok's
    own decode of the whole sequence; on the grid that is the source piece itself."""
    settings = {"kind": "miditok", "path": str(_tokenizer(tmp_path, kind))}
    src = _piece(0)
    write_midi(tmp_path / "src.mid", src)
    tok = load_tokenizer(settings)
    ids, _ = tok.encode_file(tmp_path / "src.mid")
    assert ids.max() < tok.vocab_size and tok.pad not in ids
    theirs = tok.tok.decode([ids.tolist()]).to("second")
    theirs = [(n.time, n.time + n.duration, n.pitch, n.velocity, 0) for t in theirs.tracks for n in t.notes]
    theirs = _key(np.array(theirs, dtype=NOTE_DTYPE))
    data = _segments_file(tok, settings, ids, block=48)
    assert data_tokenizer(data).kind == "miditok"
    (_, _, _, segs), *_ = list(track_segment_notes(data, block=48))
    assert len(segs) == len(data["tokens"]) >= 4
    back = []
    for t0, notes in segs:
        shifted = notes.copy()
        shifted["onset"] += t0
        shifted["offset"] += t0
        back.append(shifted)
    assert _key(np.concatenate(back)) == theirs
    assert theirs == _key(src)  # on the grid, nothing is lost (the tracks are merged into one stream)


@pytest.mark.parametrize("kind", ["REMI", "TSD"])
def test_features_of_decoded_notes_equal_the_sources_within_the_grid(tmp_path, kind):
    tok = MiditokTokenizer(_tokenizer(tmp_path, kind))
    for on_grid in (True, False):
        src = _piece(1, on_grid=on_grid)
        write_midi(tmp_path / "src.mid", src)
        ids, tempo = tok.encode_file(tmp_path / "src.mid")
        dec = tok.decode(ids)
        assert len(dec) == len(src)
        src["track"] = 0  # one stream per piece: the tokenizer sees the tracks merged (as Aria's vocabulary does)
        s, d = np.sort(src, order=["onset", "pitch"]), np.sort(dec, order=["onset", "pitch"])
        assert np.abs(s["onset"] - d["onset"]).max() <= STEP / 2 + 1e-9  # within half a grid step
        fs, fd = extract_many([src], tempo_maps=[tempo]), extract_many([dec], tempo_maps=[tempo])
        for name in fs:
            if on_grid:  # the same notes: the same features
                np.testing.assert_allclose(fd[name], fs[name], rtol=1e-9, atol=1e-9, err_msg=name)
            else:  # histograms of quantized values may move a count to a neighbouring bin
                assert np.abs(fd[name] - fs[name]).max() <= 0.25 * max(1.0, np.abs(fs[name]).max()), name


def test_arias_own_vocabulary_answers_the_same_interface(tmp_path):
    from aria.symbolic import tokenize

    src = _piece(2)
    write_midi(tmp_path / "src.mid", src)
    tok = load_tokenizer(None)
    ids, tempo = tok.encode_file(tmp_path / "src.mid")
    assert tok.pad == tokenize.PAD and (tok.vocab_size, tempo.shape) == (tokenize.VOCAB_SIZE, (1, 2))
    assert _key(tok.decode(ids)) == _key(tokenize.decode(ids))
    got = tok.segment_notes(ids, block=32)
    want = tokenize.segment_notes(ids, block=32)
    assert [t for t, _ in got] == [t for t, _ in want]


def test_a_missing_or_foreign_tokenizer_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.json: miditok tokenizer file not found"):
        load_tokenizer({"kind": "miditok", "path": str(tmp_path / "nope.json")})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tokenization": "NoSuchTokenizer"}))
    with pytest.raises(ValueError, match="bad.json: not a miditok tokenizer file"):
        load_tokenizer({"kind": "miditok", "path": str(bad)})
    with pytest.raises(ValueError, match="tokenizer.kind must be one of"):
        load_tokenizer({"kind": "bpe"})
    assert Path(bad).exists()
