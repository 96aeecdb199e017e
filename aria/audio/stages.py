"""Token layouts of the three-stage hierarchical audio model (MusicLM/AudioLM style).

One shared vocabulary holds every token type in its own id block::

    cond   n_cond codebooks x cond_size   quantized track-level conditioning
    sem    sem_size                       semantic tokens (frame rate sem_rate Hz)
    ac_i   code_size each, i = 0..n_q-1   acoustic RVQ quantizer i (frame rate ac_rate Hz);
                                          quantizers 0..n_coarse-1 are "coarse", the rest "fine"
    PAD    one id, last                   never predicted, masked out of every loss

Each stage's sequence for a window starting at time t0 (seconds) of a track::

    semantic:  [cond | sem(t0, w_sem)]                                  target: sem
    coarse:    [cond | sem(t0, w_coarse) | coarse(t0, w_coarse)]        target: coarse
    fine:      [cond | sem(t0, w_fine) | coarse(t0, w_fine) | fine(t0, w_fine)]   target: fine

Acoustic frames are flattened frame-major (frame t: quantizer 0, 1, ...). A
window running past the end of a track is PAD-filled and masked. The loss of a
stage is the mean next-token cross-entropy over its target block
(``aria.models.transformer.per_example_loss`` with ``loss_mask``), so the same model class,
per-example gradients and projections serve every stage and the symbolic model.

Model adapter interface (for bringing your own stage models): a stage model is
anything that maps (B, L) int64 tokens to (B, L, V) logits, whose attributed
parameters are ``aria.attribution.projection.attributed_params(model)``, and whose data
collator is :meth:`AudioVocab.stage_sequence` (tokens, mask, loss_mask).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["STAGES", "AudioVocab"]

STAGES = ("semantic", "coarse", "fine")  # generation order; aria.registry.audio_stages()


@dataclass(frozen=True)
class AudioVocab:
    """Vocabulary sizes, frame rates and stage windows (seconds)."""

    n_cond: int = 4
    cond_size: int = 64
    sem_size: int = 128
    sem_rate: float = 10.0
    n_q: int = 8
    n_coarse: int = 3
    code_size: int = 256
    ac_rate: float = 22050 / 1024
    window_s: tuple = (("semantic", 10.0), ("coarse", 4.0), ("fine", 2.0))

    def to_dict(self) -> dict:
        """The fields as a plain dict (``window_s`` stays a tuple of (stage, seconds) pairs)."""
        return asdict(self)

    @classmethod
    def from_config(cls, tokenizers: dict, *, sr: int, windows: dict) -> AudioVocab:
        """The vocabulary of config ``audio.tokenizers`` at sample rate ``sr`` (Hz) with
        stage windows ``windows`` ({stage: seconds}); the one place it is built from config.
        """
        t = tokenizers
        return cls(
            n_cond=t["cond"]["n_cond"],
            cond_size=t["cond"]["cond_size"],
            sem_size=t["semantic"]["n_codes"],
            sem_rate=1.0 / t["semantic"]["hop_s"],
            n_q=8,
            n_coarse=3,
            code_size=t["acoustic"]["n_codes"],
            ac_rate=sr / t["acoustic"]["hop_length"],
            window_s=tuple(sorted(windows.items())),
        )

    # --------------------------------------------------------------- id blocks
    @property
    def sem_offset(self) -> int:
        """First id of the semantic block (the conditioning blocks come before it)."""
        return self.n_cond * self.cond_size

    def ac_offset(self, i: int) -> int:
        """First id of acoustic quantizer ``i``'s block (``i = n_q`` gives the PAD id)."""
        return self.sem_offset + self.sem_size + i * self.code_size

    @property
    def pad(self) -> int:
        """The PAD id, the last id of the vocabulary."""
        return self.ac_offset(self.n_q)

    @property
    def size(self) -> int:
        """Vocabulary size ``V`` (every block plus PAD)."""
        return self.pad + 1

    def window(self, stage: str) -> float:
        """Window length of ``stage`` in seconds."""
        return dict(self.window_s)[stage]

    def _n_frames(self, rate: float, seconds: float) -> int:
        return int(round(rate * seconds))

    def block_lengths(self, stage: str) -> list[tuple[str, int]]:
        """(block name, length in tokens) of a stage's sequence, in order."""
        w = self.window(stage)
        n_sem = self._n_frames(self.sem_rate, w)
        n_ac = self._n_frames(self.ac_rate, w)
        blocks = [("cond", self.n_cond), ("sem", n_sem)]
        if stage in ("coarse", "fine"):
            blocks.append(("coarse", n_ac * self.n_coarse))
        if stage == "fine":
            blocks.append(("fine", n_ac * (self.n_q - self.n_coarse)))
        return blocks

    def target_block(self, stage: str) -> str:
        """Name of the block a stage predicts: ``"sem"``, ``"coarse"`` or ``"fine"``."""
        return {"semantic": "sem", "coarse": "coarse", "fine": "fine"}[stage]

    def seq_len(self, stage: str) -> int:
        """Length ``L`` in tokens of a stage's sequence (sum of :meth:`block_lengths`)."""
        return sum(n for _, n in self.block_lengths(stage))

    # --------------------------------------------------------------- sequences
    def stage_sequence(self, stage: str, *, cond, sem, codes, t0: float):
        """Build one stage sequence for the window starting at ``t0`` seconds.

        Parameters
        ----------
        stage : {"semantic", "coarse", "fine"}
        cond : int array, shape (n_cond,)
            Codes of the track's conditioning RVQ (:class:`ConditioningRVQ`).
        sem : int array, shape (T_sem,)
            The track's semantic tokens at ``sem_rate`` Hz.
        codes : int array, shape (T_ac, n_q)
            The track's acoustic codes at ``ac_rate`` Hz.
        t0 : float
            Window start in seconds.

        Returns
        -------
        tokens : int64 array, shape (L,)
            Vocabulary ids, ``L = seq_len(stage)``; PAD past the end of the track.
        mask : bool array, shape (L,)
            True at real (non-PAD) tokens.
        loss_mask : bool array, shape (L,)
            True at real tokens of the stage's target block.
        """
        w = self.window(stage)
        parts, masks, targets = [], [], []
        tgt = self.target_block(stage)
        for name, n in self.block_lengths(stage):
            ids = np.full(n, self.pad, dtype=np.int64)
            if name == "cond":
                c = np.asarray(cond, dtype=np.int64)
                ids[:] = c + np.arange(self.n_cond) * self.cond_size
            elif name == "sem":
                a = self._n_frames(self.sem_rate, t0)
                seg = np.asarray(sem, dtype=np.int64)[a : a + n]
                ids[: len(seg)] = seg + self.sem_offset
            else:
                qs = range(self.n_coarse) if name == "coarse" else range(self.n_coarse, self.n_q)
                a = self._n_frames(self.ac_rate, t0)
                nf = self._n_frames(self.ac_rate, w)
                seg = np.asarray(codes, dtype=np.int64)[a : a + nf][:, list(qs)]
                off = np.array([self.ac_offset(i) for i in qs])
                flat = (seg + off).reshape(-1)
                ids[: len(flat)] = flat
            parts.append(ids)
            masks.append(ids != self.pad)
            targets.append(np.full(n, name == tgt))
        tokens = np.concatenate(parts)
        mask = np.concatenate(masks)
        return tokens, mask, mask & np.concatenate(targets)

    def allowed_tokens(self, stage: str) -> np.ndarray:
        """(L, V) bool: which ids may appear at each position of a stage sequence.

        Used to constrain sampling so that generated queries are well-formed.
        """
        L, V = self.seq_len(stage), self.size
        allowed = np.zeros((L, V), dtype=bool)
        pos = 0
        for name, n in self.block_lengths(stage):
            for j in range(n):
                if name == "cond":
                    lo, hi = j * self.cond_size, (j + 1) * self.cond_size
                elif name == "sem":
                    lo, hi = self.sem_offset, self.sem_offset + self.sem_size
                else:
                    qs = list(range(self.n_coarse)) if name == "coarse" else list(range(self.n_coarse, self.n_q))
                    q = qs[j % len(qs)]
                    lo, hi = self.ac_offset(q), self.ac_offset(q) + self.code_size
                allowed[pos + j, lo:hi] = True
            pos += n
        return allowed

    def split_codes(self, stage: str, tokens) -> dict[str, np.ndarray]:
        """Inverse of :meth:`stage_sequence`: token ids back to per-block codes.

        Returns ``{"cond": (n_cond,), "sem": (n,), "coarse": (frames, n_coarse),
        "fine": (frames, n_q - n_coarse)}`` for the blocks the stage has; PAD
        positions are dropped (acoustic blocks keep whole frames only).
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        out, pos = {}, 0
        for name, n in self.block_lengths(stage):
            ids = tokens[pos : pos + n]
            pos += n
            if name == "cond":
                out["cond"] = ids - np.arange(self.n_cond) * self.cond_size
            elif name == "sem":
                out["sem"] = ids[ids != self.pad] - self.sem_offset
            else:
                qs = range(self.n_coarse) if name == "coarse" else range(self.n_coarse, self.n_q)
                off = np.array([self.ac_offset(i) for i in qs])
                frames = ids.reshape(-1, len(off))
                frames = frames[(frames != self.pad).all(1)]
                out[name] = frames - off
        return out


# --------------------------------------------------------------------------- conditioning
class ConditioningRVQ:
    """Residual VQ of track-level embeddings: the quantized conditioning tokens.

    Stands in for the paper's CLAP-RVQ conditioning (12 codebooks of CLAP audio
    embeddings): here ``n_cond`` codebooks of ``cond_size`` codes over the
    time-averaged standardized frame features of a track.
    """

    def __init__(self, *, n_cond: int, cond_size: int):
        self.n_cond, self.cond_size = int(n_cond), int(cond_size)
        self.codebooks: np.ndarray | None = None  # (n_cond, k <= cond_size, d)

    def fit(self, X, *, random_state) -> ConditioningRVQ:
        """Learn the ``n_cond`` codebooks by k-means on successive residuals.

        Parameters
        ----------
        X : float array, shape (n_tracks, d)
            Track embeddings (e.g. :meth:`aria.audio.tokenizers.SemanticKMeans.encode_and_embed`).
        random_state : int, keyword-only
            Seeds codebook ``q``'s k-means with ``SeedSequence([random_state, q])``.

        Returns
        -------
        self
            With ``codebooks`` of shape (n_cond, min(cond_size, n_tracks), d).
        """
        from aria.audio.tokenizers import kmeans, nearest

        X = np.asarray(X, dtype=np.float64)
        k = min(self.cond_size, len(X))  # a small corpus uses fewer codes
        books, resid = [], X.copy()
        for q in range(self.n_cond):
            cb = kmeans(resid, k, random_state=np.random.SeedSequence([int(random_state), q]))
            books.append(cb)
            resid = resid - cb[nearest(resid, cb)[0]]
        self.codebooks = np.stack(books)
        return self

    def encode(self, X) -> np.ndarray:
        """Greedy residual codes: (n, d) float embeddings -> (n, n_cond) int64 codes."""
        from aria.audio.tokenizers import nearest

        X = np.asarray(X, dtype=np.float64)
        out = np.zeros((len(X), self.n_cond), dtype=np.int64)
        resid = X.copy()
        for q, cb in enumerate(self.codebooks):
            out[:, q] = nearest(resid, cb)[0]
            resid = resid - cb[out[:, q]]
        return out
