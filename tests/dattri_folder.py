"""A tiny dattri ``maestro_musictransformer`` benchmark folder, in exactly the layout that
``dattri.benchmark.load.load_benchmark(download_path=...)`` reads (aria/io/dattri_benchmark.py).

Everything is made with dattri's own code: the pieces are random notes written as MIDI files by
pretty_midi and encoded by dattri's MAESTRO processor (``encode_midi``) into pickled event lists;
the models are dattri's ``MusicTransformer`` with small sizes and random weights (state dicts,
``model_weights_0.pt``); the ground truth is synthetic, in dattri's tensor formats (float32
targets (S, Q), int64 indices (S, k)).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

#: The tiny models' sizes (dattri's benchmark: 6 layers, 8 heads, d 512, ff 1024). The sequence stays
#: the benchmark's 256 positions: the samples are its 257-token windows.
TINY = dict(n_layers=1, num_heads=2, d_model=16, dim_feedforward=32, max_sequence=256, rpr=True)


def random_midi(path: Path, *, seconds: float, seed: int, overlap: bool = True) -> None:
    """A piano MIDI file of random notes (pitches 40..90, overlapping, velocities 20..120) and a
    sustain pedal after them. ``overlap=False``: a pitch is never struck again while it sounds."""
    import pretty_midi

    rng = np.random.default_rng(seed)
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    t, sounding = 0.0, {}
    while t < seconds:
        start = round(t, 2)
        dur = float(rng.choice([0.1, 0.2, 0.25, 0.5, 1.0]))
        vel, pitch = int(rng.integers(20, 121)), int(rng.integers(40, 91))
        if overlap or sounding.get(pitch, -1.0) < start:
            piano.notes.append(pretty_midi.Note(velocity=vel, pitch=pitch, start=start, end=start + dur))
            sounding[pitch] = start + dur
        t += float(rng.choice([0.0, 0.05, 0.1, 0.2, 0.3]))
    # dattri's processor keeps only notes it meets while walking the sustain-pedal spans (MAESTRO
    # always has some): one short pedal after the last note keeps every note as it is
    piano.control_changes += [
        pretty_midi.ControlChange(64, 127, seconds + 2.0),
        pretty_midi.ControlChange(64, 0, seconds + 2.5),
    ]
    pm.instruments.append(piano)
    pm.write(str(path))


def encoded_piece(seconds: float, seed: int, tmp: Path, *, overlap: bool = True) -> list[int]:
    """dattri's event ids of a random piece (its MAESTRO preprocessing: ``encode_midi``)."""
    from dattri.benchmark.models.MusicTransformer.midi_processor.processor import encode_midi

    f = tmp / f"piece_{seed}_{int(overlap)}.mid"
    random_midi(f, seconds=seconds, seed=seed, overlap=overlap)
    return list(encode_midi(str(f)))


def make_folder(
    root: Path,
    *,
    n_train_pieces: int = 8,
    n_test_pieces: int = 3,
    seconds: float = 30.0,
    n_models: int = 2,
    n_subsets: int = 10,
    n_train: int,
    n_test: int,
    alpha: float = 0.5,
    seed: int = 0,
) -> dict:
    """Write the folder under ``root`` (the ``download_path``); return its ground-truth tensors and
    the processed pieces, as dattri would load them.
    """
    from dattri.benchmark.models.MusicTransformer.music_transformer import MusicTransformer

    bench = root / "benchmark" / "maestro_musictransformer"
    train_dir = root / "dataset" / "maestro-v2.0.0-processed" / "train"
    test_dir = root / "dataset" / "generated_music"
    midi_tmp = root / "midi_sources"
    for d in (train_dir, test_dir, midi_tmp, root / "dataset" / "maestro-v2.0.0-processed" / "val"):
        d.mkdir(parents=True, exist_ok=True)
    pieces = {}
    for split, folder, n in (("train", train_dir, n_train_pieces), ("test", test_dir, n_test_pieces)):
        pieces[split] = []
        for i in range(n):
            ids = encoded_piece(seconds, seed * 1000 + (0 if split == "train" else 500) + i, midi_tmp)
            name = f"{split}_{i:02d}.midi.pickle"
            with open(folder / name, "wb") as fh:
                pickle.dump(ids, fh)
            pieces[split].append(ids)
    for kind, count in (("models_full", n_models), ("models_half", 1)):
        for m in range(count):
            torch.manual_seed(seed + m + (100 if kind == "models_half" else 0))
            model = MusicTransformer(device="cpu", dropout=0.1, **TINY)
            (bench / kind / str(m)).mkdir(parents=True)
            torch.save(model.state_dict(), bench / kind / str(m) / "model_weights_0.pt")
    g = torch.Generator().manual_seed(seed)
    k = int(alpha * n_train)
    indices = torch.stack([torch.randperm(n_train, generator=g)[:k] for _ in range(n_subsets)]).long()
    targets = -torch.rand(n_subsets, n_test, generator=g).float() * 5.0
    (bench / "lds").mkdir(parents=True)
    torch.save(targets, bench / "lds" / "target_values_lds.pt")
    torch.save(indices, bench / "lds" / "indices_lds.pt")
    return {"targets": targets, "indices": indices, "pieces": pieces}
