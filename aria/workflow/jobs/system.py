"""Environment jobs: the numba JIT template every job copies (aria.runtime).

The job contract (argument dataclasses, registration, the generated command line): :mod:`.base`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from aria.runtime import progress
from aria.workflow.jobs.base import JobArgs, job, opt

log = logging.getLogger("aria")


class WarmJitCacheArgs(JobArgs):
    template: str | None = opt(None)


@job("warm-jit-cache")
def warm_jit_cache(a: WarmJitCacheArgs) -> None:
    """Compile every numba kernel the workflow uses, once, and install them as the jobs' JIT template.

    Runs each JIT-compiled code path of the audio experiment (file loading with
    resampling, the docs/spec.md §5 features, both tokenizers with Griffin-Lim decoding,
    the offline embedding encoders) on a synthetic 12 s signal, in this one
    process, then publishes the compiled cache as the read-only template that
    every job copies (:mod:`aria.runtime`). ``make venv`` runs it.
    """
    import os
    import tempfile

    from aria.audio.encoders import get_encoder
    from aria.audio.features import extract
    from aria.audio.tokenizers import MelRVQ, SemanticKMeans
    from aria.io.audio import load_audio, write_wav
    from aria.registry import ENCODERS
    from aria.runtime import jit_template_dir, publish_jit_template

    cache = os.environ.get("NUMBA_CACHE_DIR")
    if not cache:
        raise RuntimeError(
            "warm-jit-cache runs under the aria supervisor, which sets NUMBA_CACHE_DIR; "
            "start it as `aria warm-jit-cache`"
        )
    sr, native = 22050, 44100
    t = np.arange(12 * native) / native
    rng = np.random.default_rng(0)
    notes = sum(np.sin(2 * np.pi * f * t) * (np.floor(t * 2) % k == 0) for f, k in ((220, 2), (330, 3), (440, 5)))
    clicks = (np.mod(t, 0.5) < 0.01) * rng.standard_normal(len(t))
    with tempfile.TemporaryDirectory() as d:
        write_wav(Path(d) / "warm.wav", (0.2 * notes + 0.3 * clicks).astype(np.float32), native)
        y = load_audio(Path(d) / "warm.wav", sr=sr)  # the jobs' own path: float32, resampled
    steps = [("features", lambda: extract(y, sr=sr))]
    for cls, kw in ((SemanticKMeans, {"hop_s": 0.1}), (MelRVQ, {"hop_length": 1764})):

        def tokenizer(cls=cls, kw=kw):
            tok = cls(sr=sr, n_codes=4, **kw).fit([y], random_state=0)
            codes = tok.encode(y)
            if cls is MelRVQ:
                tok.decode(codes)

        steps.append((cls.__name__, tokenizer))
    for name in ENCODERS:
        steps.append((f"encoder {name}", lambda name=name: get_encoder(name).frames(y, sr)))
    for label, fn in progress(steps, desc="warm JIT", unit="path", name=lambda s: s[0], mininterval=0.1):
        try:
            fn()
        except (OSError, ImportError, RuntimeError) as e:  # e.g. CLAP/MERT weights absent: nothing to compile
            log.info("skipped %s: %s", label, str(e).split(": ")[1] if ": " in str(e) else e)
    target = publish_jit_template(cache, a.template or jit_template_dir())
    n = sum(1 for f in target.rglob("*") if f.suffix in (".nbi", ".nbc"))
    log.info("JIT template: %d cache files in %s", n, target)
