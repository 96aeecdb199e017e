"""Text conditioning for the diffusion experiment: captions from metadata, and text encoders.

The demo's tracks have no captions, so each gets one made from its metadata
(:func:`caption`: genre, instrument, tempo, key), encoded by :class:`HashTextEncoder`, which needs
no weights: every word maps to a fixed pseudo-random vector seeded by the word itself. It knows
no synonyms, but it is deterministic, offline and the same on every machine, and the DiT learns
what the words mean for its data. A user with CLAP's text tower in a local folder uses
:class:`ClapTextEncoder` instead (nothing is downloaded).

Both encoders map a list of B strings to ``(text, text_mask)``: float64 (B, S, D) and bool (B, S).
"""

from __future__ import annotations

import re

import numpy as np

from aria.seeding import stable_seed

__all__ = [
    "caption",
    "instrument_family",
    "estimate_tempo",
    "estimate_key",
    "HashTextEncoder",
    "ClapTextEncoder",
    "get_text_encoder",
]


def caption(meta) -> str:
    """A caption from a track's metadata: ``"genre: <g>, instrument: <i>, tempo: <t> bpm, key: <k>"``
    with the parts whose value is present (``meta`` is a mapping; missing or empty values are left out).
    """
    parts = []
    fields = (
        ("genre", "genre: {}"),
        ("instrument", "instrument: {}"),
        ("tempo", "tempo: {:.0f} bpm"),
        ("key", "key: {}"),
    )
    for key, fmt in fields:
        v = meta.get(key)
        if v is None or (isinstance(v, float) and not np.isfinite(v)) or v == "":
            continue
        parts.append(fmt.format(v))
    return ", ".join(parts)


#: General MIDI's 16 instrument families, by program // 8
GM_FAMILIES = (
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects",
)  # fmt: skip
#: Krumhansl-Kessler key profiles (major, minor), tonic first
_KK = (
    np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
    np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]),
)
_PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def instrument_family(programs) -> str:
    """The General MIDI family names of ``programs`` (ints 0-127, or a string of them separated by
    spaces, commas or semicolons, as in the audio manifest), in order, without repeats: ``"strings and brass"``.
    """
    if isinstance(programs, str):
        programs = [int(x) for x in re.findall(r"\d+", programs)]
    names = list(dict.fromkeys(GM_FAMILIES[int(p) // 8] for p in np.atleast_1d(programs) if 0 <= int(p) < 128))
    return " and ".join(names)


def estimate_tempo(y, sr: int) -> float:
    """Tempo in beats per minute of a mono waveform (librosa's onset-autocorrelation estimate)."""
    import librosa

    return float(np.atleast_1d(librosa.feature.tempo(y=np.asarray(y, dtype=np.float32), sr=sr))[0])


def estimate_key(y, sr: int) -> str:
    """Key of a mono waveform, ``"<tonic> major|minor"``: the Krumhansl-Kessler profile (of 24) that
    correlates best with the clip's mean chroma. An all-silent clip gets ``""``.
    """
    import librosa

    chroma = librosa.feature.chroma_stft(y=np.asarray(y, dtype=np.float32), sr=sr, n_fft=2048).mean(1)
    if not np.any(chroma > 0) or np.ptp(chroma) == 0:
        return ""
    best, name = -np.inf, ""
    for mode, prof in zip(("major", "minor"), _KK):
        for tonic in range(12):
            r = np.corrcoef(chroma, np.roll(prof, tonic))[0, 1]
            if r > best:
                best, name = r, f"{_PITCH_NAMES[tonic]} {mode}"
    return name


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9#]+", text.lower())


class HashTextEncoder:
    """Each word to a fixed unit-scale Gaussian vector seeded by ``(seed, word)``.

    Parameters
    ----------
    dim : int, keyword-only
        D, the vector width.
    max_words : int, keyword-only
        S; longer texts are cut (a message is not raised: captions are short by construction).
    seed : int, keyword-only
    """

    def __init__(self, *, dim: int = 64, max_words: int = 16, seed: int = 0):
        self.dim, self.max_words, self.seed = int(dim), int(max_words), int(seed)

    def vector(self, word: str) -> np.ndarray:
        """The vector (D,) of one word."""
        rng = np.random.default_rng(stable_seed(self.seed, word))
        return rng.standard_normal(self.dim) / np.sqrt(self.dim)

    def __call__(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """``(text, text_mask)`` of B strings: float64 (B, S, D), bool (B, S)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.max_words, self.dim))
        mask = np.zeros((len(texts), self.max_words), bool)
        for i, t in enumerate(texts):
            for j, w in enumerate(_words(t)[: self.max_words]):
                out[i, j] = self.vector(w)
                mask[i, j] = True
        return out, mask


class ClapTextEncoder:
    """CLAP's text tower from a local folder (``ClapTextModelWithProjection`` and its tokenizer,
    saved with ``save_pretrained``), read offline: one projected embedding per text, S = 1.
    """

    def __init__(self, *, path: str, device: str = "cpu"):
        from pathlib import Path

        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: not a CLAP text model folder (no config.json); save ClapTextModelWithProjection "
                "and its tokenizer there with save_pretrained on a machine with network"
            )
        from transformers import AutoTokenizer, ClapTextModelWithProjection

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = ClapTextModelWithProjection.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device
        self.dim = int(self.model.config.projection_dim)

    def __call__(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """``(text, text_mask)`` of B strings: float64 (B, 1, projection_dim), bool (B, 1) all True."""
        import torch

        enc = self.tokenizer(list(texts), padding=True, return_tensors="pt").to(self.device)
        with torch.no_grad():
            emb = self.model(**enc).text_embeds
        emb = emb.double().cpu().numpy()
        return emb[:, None, :], np.ones((len(emb), 1), bool)


def get_text_encoder(kind: str = "hash", **options):
    """The text encoder of a config's ``text_encoder: {kind, ...}``: ``hash`` or ``clap`` (with ``path``)."""
    if kind == "hash":
        return HashTextEncoder(**options)
    if kind == "clap":
        return ClapTextEncoder(**options)
    raise ValueError(f"text_encoder.kind must be 'hash' or 'clap', got {kind!r}")
