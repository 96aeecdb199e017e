"""dattri's MAESTRO MusicTransformer benchmark folder, read offline (config ``corpus.kind: dattri_benchmark``).

The folder is the ``download_path`` of ``dattri.benchmark.load.load_benchmark(model="musictransformer",
dataset="maestro", metric="lds", download_path=...)``, which fetches it on a machine with network.
Aria never downloads: it reads this layout (paths relative to ``download_path``)::

    benchmark/maestro_musictransformer/
        models_full/<i>/model_weights_0.pt   state dict of model i (the whole training set; seeds differ)
        models_half/<i>/model_weights_0.pt   (counted, not used)
        lds/target_values_lds.pt              float (S, Q): -loss of each test sample's last token,
                                              model retrained on subset s
        lds/indices_lds.pt                    int64 (S, k): the training indices of subset s
    dataset/maestro-v2.0.0-processed/train/  one pickled list[int] of event ids per piece
    dataset/generated_music/                 the same, one per generated test piece

The training and test samples are dattri's ``EPianoDataset(full_version=True)`` windows, in its
order: files sorted by path, then windows of ``max_seq + 1`` = 257 tokens at offsets 0, 256, 512,
... while ``offset < len - 256`` (so every window is whole), truncated to the benchmark's sampler
sizes (5,000 training, 178 test). **One difference, by design:** dattri's ``process_midi`` tests
``if offset:``, so for each piece's first window (offset 0) it draws a random start every time
the sample is read. The benchmark's models and published targets saw such random windows; Aria
takes offset 0, which the dataset's index names, and marks these samples (``random_window``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

__all__ = [
    "IDENTIFIER",
    "N_TRAIN",
    "N_TEST",
    "MAX_SEQ",
    "benchmark_paths",
    "check_folder",
    "read_pieces",
    "piece_windows",
    "read_lds",
    "read_state_dict",
    "state_dict_sizes",
    "END",
    "PAD",
]

IDENTIFIER = "maestro_musictransformer"
#: dattri's sampler sizes for this benchmark (``SAMPLERSIZE_MAP``).
N_TRAIN, N_TEST = 5000, 178
#: Input tokens per sample (a window holds one more: the last target).
MAX_SEQ = 256
#: dattri's END and PAD ids (after Aria's 388 event ids 0..387).
END, PAD = 388, 389

_HOW = (
    'fetch it on a machine with network with `python -c "from dattri.benchmark.load import load_benchmark; '
    "load_benchmark(model='musictransformer', dataset='maestro', metric='lds', download_path='{path}')\"` "
    "and copy the folder here (Aria reads it offline and never downloads)"
)


def benchmark_paths(download_path) -> dict:
    """The files and folders of the layout above, by name (``Path`` objects; nothing is checked)."""
    root = Path(download_path).expanduser()
    bench = root / "benchmark" / IDENTIFIER
    return {
        "root": root,
        "models_full": bench / "models_full",
        "models_half": bench / "models_half",
        "targets": bench / "lds" / "target_values_lds.pt",
        "indices": bench / "lds" / "indices_lds.pt",
        "train": root / "dataset" / "maestro-v2.0.0-processed" / "train",
        "test": root / "dataset" / "generated_music",
    }


def _count_models(folder: Path) -> int:
    """Models 0..n-1 of ``folder`` (dattri counts the sub-folders and reads ``<i>/model_weights_0.pt``)."""
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.is_dir())


def check_folder(download_path) -> dict:
    """Check the layout; return ``benchmark_paths`` plus ``models`` (model_weights paths of models_full) and
    ``n_half``.

    Raises
    ------
    FileNotFoundError
        Naming every missing file or folder and how to obtain the benchmark.
    """
    p = benchmark_paths(download_path)
    missing = [str(p[k]) for k in ("targets", "indices") if not p[k].is_file()]
    missing += [str(p[k]) + "/" for k in ("train", "test") if not p[k].is_dir()]
    n_full = _count_models(p["models_full"])
    models = [p["models_full"] / str(i) / "model_weights_0.pt" for i in range(n_full)]
    if n_full == 0:
        missing.append(str(p["models_full"] / "0" / "model_weights_0.pt"))
    missing += [str(m) for m in models if not m.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{p['root']}: not a complete dattri '{IDENTIFIER}' benchmark folder; missing:\n  "
            + "\n  ".join(missing)
            + "\nTo obtain it, "
            + _HOW.format(path=p["root"])
        )
    return {**p, "models": models, "n_half": _count_models(p["models_half"])}


def read_pieces(folder) -> list[tuple[str, np.ndarray, Path]]:
    """Every piece of a processed folder, sorted by path as dattri sorts them: ``(stem, int64 ids, path)``.

    Raises
    ------
    ValueError
        Naming a file that is not a pickled list of event ids in 0..389.
    """
    out = []
    for f in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        try:
            with open(f, "rb") as fh:
                ids = np.asarray(pickle.load(fh), dtype=np.int64)  # noqa: S301 - the benchmark's own format
        except Exception as e:  # noqa: BLE001 - any unpickling failure: name the file
            raise ValueError(f"{f}: not a pickled list of event ids ({type(e).__name__}: {e})") from e
        if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() > 389)):
            raise ValueError(f"{f}: expected a flat list of event ids in 0..389")
        out.append((f.stem, ids, f))
    return out


def piece_windows(pieces, *, n: int | None, max_seq: int = MAX_SEQ) -> dict:
    """Dattri's ``full_version`` samples of ``pieces``, in its order, the first ``n`` (None: all).

    Parameters
    ----------
    pieces : list of (stem, int array (L,), path)
        :func:`read_pieces`' output.
    n : int or None, keyword-only
    max_seq : int, keyword-only

    Returns
    -------
    dict
        ``tokens`` int64 (N, max_seq + 1), ``piece`` int (N,) index into ``pieces``, ``window`` int
        (N,) window number within its piece, ``start`` int (N,) token offset, ``random_window``
        bool (N,) (offset 0: dattri draws a random start there, see the module docstring).

    Raises
    ------
    ValueError
        When the pieces give fewer than ``n`` samples.
    """
    rows = []
    for i, (_, ids, _) in enumerate(pieces):
        for w, off in enumerate(range(0, len(ids) - max_seq, max_seq)):
            rows.append((i, w, off))
            if n is not None and len(rows) == n:
                break
        if n is not None and len(rows) == n:
            break
    if n is not None and len(rows) < n:
        raise ValueError(f"the pieces give {len(rows)} samples of {max_seq + 1} tokens, fewer than the {n} asked for")
    tokens = np.stack([pieces[i][1][off : off + max_seq + 1] for i, _, off in rows]) if rows else np.zeros((0, 0))
    piece, window, start = (np.array([r[k] for r in rows], dtype=np.int64) for k in range(3))
    return dict(tokens=tokens.astype(np.int64), piece=piece, window=window, start=start, random_window=start == 0)


def read_lds(paths: dict, *, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """The published LDS ground truth: ``targets`` float64 (S, Q) and ``indices`` int64 (S, k).

    Raises
    ------
    ValueError
        Naming the file whose shape does not fit ``n_train`` training and ``n_test`` test samples.
    """
    import torch

    targets = torch.load(paths["targets"], map_location="cpu", weights_only=True)
    indices = torch.load(paths["indices"], map_location="cpu", weights_only=True)
    targets = np.asarray(targets.double().numpy())
    indices = np.asarray(indices.long().numpy())
    if targets.ndim != 2 or targets.shape[1] != n_test:
        raise ValueError(f"{paths['targets']}: shape {targets.shape}, expected (subsets, {n_test} test samples)")
    if indices.ndim != 2 or indices.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{paths['indices']}: shape {indices.shape}, expected ({targets.shape[0]} subsets, subset size)"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= n_train):
        raise ValueError(f"{paths['indices']}: training indices outside 0..{n_train - 1}")
    return targets, indices


def read_state_dict(path) -> dict:
    """One benchmark model's state dict (``model_weights_0.pt``), on the CPU."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure: name the file
        raise ValueError(f"{path}: cannot load the model weights: {type(e).__name__}: {e}") from e


def state_dict_sizes(state: dict, *, dropout: float = 0.1) -> dict:
    """The constructor keywords of dattri's MusicTransformer that ``state`` was saved from
    (:class:`aria.models.dattri_mt.DattriMusicTransformer`), read from its tensor shapes: layers
    from the layer indices, d from ``embedding.weight``, the feed-forward width from ``linear1``,
    and, with relative attention, the heads and the longest sequence from ``Er`` (er_len, d / heads).
    The benchmark's models give :data:`aria.models.dattri_mt.BENCHMARK_CONFIG`.
    """
    import re

    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.encoder\.layers\.(\d+)\.", k))}
    if "embedding.weight" not in state or not layers:
        raise ValueError("not a state dict of dattri's MusicTransformer (no embedding.weight or encoder layers)")
    d = int(state["embedding.weight"].shape[1])
    er = state.get("transformer.encoder.layers.0.self_attn.Er")
    if er is None:
        raise ValueError("a MusicTransformer without relative attention (rpr=False): the benchmark's models have it")
    return dict(
        n_layers=len(layers),
        num_heads=d // int(er.shape[1]),
        d_model=d,
        dim_feedforward=int(state["transformer.encoder.layers.0.linear1.weight"].shape[0]),
        max_sequence=int(er.shape[0]),
        rpr=True,
        dropout=dropout,
    )
