"""The one registry of Aria's attribution methods, model stages and embedding encoders.

Rules (``rules/*.smk``), wildcard constraints, config validation
(:mod:`aria.config`), the CLI and the report read this module; nothing else
names a method, a stage or an encoder. Adding a method means one
:func:`register` call plus the method's own module (see :class:`Method`).

Families (:data:`FAMILIES`)
---------------------------
``gradient-dense``
    Scores from cached projected per-example gradients (docs/spec.md §2): the module
    provides ``operators(feats, params) -> (rows, ops)`` so that the N x Q
    score matrix is ``sum_i rows[i] @ ops[i]``, streamed in row blocks
    (:func:`aria.attribution.scoring.score_blocks`).
``gradient-factored``
    Factorized (Kronecker) gradient projections (LoGra, FactGraSS): the module also provides
    ``featurizer`` (:class:`aria.attribution.base.FactoredMethod`), its own per-layer projection.
``unlearning``
    Loss change after unlearning a query (docs/spec.md §8, the second source paper): reads the model
    itself (``reads == "model"``): a cached diagonal Fisher per (stage, model), then one job
    per chunk of queries (``rules/unlearning.smk``).
``embedding``
    Track-level cosine similarity of audio-encoder embeddings; one score store
    per encoder and averaging mode (:data:`ENCODERS`).
``external``
    A matrix the user computed elsewhere (config ``external_scores``).

Which feature stores a gradient method reads (``Method.reads``)
---------------------------------------------------------------
``"final"``        model 0, final checkpoint (GradDot, Grad-Cos)
``"checkpoints"``  model 0, every TracIn checkpoint c = 1..C
``"ensemble"``     final checkpoint of every ensemble model m = 0..M-1 (TRAK)
``"model"``        model 0's final weights and the training segments themselves (unlearning)
``"factored"``     the method's own factored feature store of model 0, final checkpoint
                   (LoGra, FactGraSS: ``features/<stage>/<method>/m0.zarr``), projected with
                   the method's ``projection_params`` (:mod:`aria.attribution.factored`)

Plugins
-------
A method defined outside Aria registers itself when its module is imported.
List such modules in config ``plugins``; the workflow imports them and passes
them to every job through the environment variable :data:`PLUGINS_ENV`, which
:func:`load_plugins` reads.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Random projection types of ``projection.type`` (:mod:`aria.attribution.projection`), and
#: the type a config that names none gets: ``sjlt`` costs O(p) per gradient where the dense
#: Gaussian costs O(p k), equally faithful (bench/README.md, ``bench/bench_projection.py``).
PROJECTION_TYPES = ("gaussian", "sjlt")
DEFAULT_PROJECTION = "sjlt"

__all__ = [
    "FAMILIES",
    "NORMALIZATIONS",
    "Method",
    "Stage",
    "Encoder",
    "METHODS",
    "STAGES",
    "ENCODERS",
    "register",
    "method",
    "methods",
    "gradient_methods",
    "stage_methods",
    "stage",
    "audio_stages",
    "encoder",
    "load_plugins",
    "PLUGINS_ENV",
]

FAMILIES = ("gradient-dense", "gradient-factored", "unlearning", "embedding", "external")
#: docs/spec.md §3 track-level normalization per query before averaging a track's segments
NORMALIZATIONS = ("zscore", "rank", "none")
READS = ("final", "checkpoints", "ensemble", "factored", "model", "audio", "matrix")
PLUGINS_ENV = "ARIA_PLUGINS"


@dataclass(frozen=True)
class Method:
    """One attribution method.

    Attributes
    ----------
    name : str
        Config key, Snakemake wildcard and file stem (``[a-z_]+``).
    label : str
        Row label in the report.
    family : str
        One of :data:`FAMILIES`.
    reads : str
        The artifacts it reads, one of :data:`READS` (see module docstring).
    normalize : str
        Track-level normalization (docs/spec.md §3), one of :data:`NORMALIZATIONS`:
        ``"zscore"`` for roughly Gaussian scores, ``"rank"`` for heavy-tailed ones.
    module : str
        Implementing module; for gradient families it defines ``operators``.
    params : Mapping[str, dict]
        JSON-schema properties of the method's config block (``methods.<name>``).
    required : tuple of str
        Keys of ``params`` that the config block must give.
    run_params : tuple of str
        Keys that the scoring job receives (the rest shape its inputs instead,
        like TRAK's ``ensemble`` or TracIn's ``checkpoints``).
    projection_params : tuple of str
        For ``reads == "factored"``: keys that the method's projection job receives.
    defaults : Mapping[str, Any]
        Values of ``params`` used when the config block leaves them out.
    covariance_when : Mapping[str, Any] or None
        For ``reads == "factored"``: the settings under which the projection reads the
        KFAC covariance pass (all must hold; :meth:`needs_covariance`). None: never.
    """

    name: str
    label: str
    family: str
    reads: str
    normalize: str
    module: str
    params: Mapping[str, dict] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    run_params: tuple[str, ...] = ()
    projection_params: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    covariance_when: Mapping[str, Any] | None = None

    def __post_init__(self):
        import re

        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"method name {self.name!r} must match [a-z][a-z0-9_]*")
        for attr, allowed in (("family", FAMILIES), ("normalize", NORMALIZATIONS), ("reads", READS)):
            if getattr(self, attr) not in allowed:
                raise ValueError(f"method {self.name}: {attr} {getattr(self, attr)!r} not one of {allowed}")

    def config_schema(self) -> dict:
        """JSON schema of ``methods.<name>``."""
        return {
            "type": "object",
            "additionalProperties": False,
            "required": list(self.required),
            "properties": dict(self.params),
        }

    def needs_covariance(self, settings: Mapping[str, Any]) -> bool:
        """Whether the projection with these settings (defaults filled in) reads the KFAC pass."""
        if not self.covariance_when:
            return False
        return all(settings.get(k, self.defaults.get(k)) == v for k, v in self.covariance_when.items())

    def implementation(self):
        """The imported implementing module (its interface: :mod:`aria.attribution.base`)."""
        return importlib.import_module(self.module)


@dataclass(frozen=True)
class Stage:
    """One model stage: the symbolic model, or one of the audio decoder stages.

    ``index`` orders the audio stages (semantic → coarse → fine) and offsets the
    generation seed of each stage.
    """

    name: str
    domain: str  # "symbolic" | "audio"
    label: str
    index: int


@dataclass(frozen=True)
class Encoder:
    """An audio embedding encoder for the embedding baselines.

    ``factory`` is ``"module:callable"``; ``needs_weights`` marks encoders that
    load Hugging Face weights from the local cache only.
    """

    name: str
    label: str
    factory: str
    needs_weights: bool = False


_METHODS: dict[str, Method] = {}
METHODS: Mapping[str, Method] = MappingProxyType(_METHODS)


def register(m: Method, *, replace: bool = False) -> Method:
    """Add a method to the registry (its order is the report's row order)."""
    if m.name in _METHODS and not replace and _METHODS[m.name] != m:
        raise ValueError(f"method {m.name!r} is already registered")
    _METHODS[m.name] = m
    return m


def method(name: str) -> Method:
    """The registered method ``name``; a ``KeyError`` lists the known ones."""
    try:
        return _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(_METHODS)}") from None


def methods(*, family: str | None = None) -> list[Method]:
    """The registered methods in registration (report row) order, optionally only those of ``family``."""
    return [m for m in _METHODS.values() if family is None or m.family == family]


def gradient_methods() -> list[Method]:
    """Methods scored from projected-gradient feature stores (run per model stage)."""
    return [m for m in _METHODS.values() if m.family in ("gradient-dense", "gradient-factored")]


def stage_methods() -> list[Method]:
    """Methods that run per model stage from its model (gradient families and unlearning):
    the names a stage's ``methods.run`` may list.
    """
    return [m for m in _METHODS.values() if m.family in ("gradient-dense", "gradient-factored", "unlearning")]


def _damping(default_alpha: float, matrix: str) -> dict:
    """Schema of ``damping`` (one vocabulary for TRAK, LoGra, FactGraSS: aria.attribution.linalg.damping_lambda)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["rule"],
        "properties": {
            "rule": {"enum": ["relative", "absolute"]},
            "alpha": {"type": "number", "exclusiveMinimum": 0},
            "lambda": {"type": "number", "exclusiveMinimum": 0},
        },
        "oneOf": [
            {"properties": {"rule": {"const": "relative"}}, "required": ["alpha"], "not": {"required": ["lambda"]}},
            {"properties": {"rule": {"const": "absolute"}}, "required": ["lambda"], "not": {"required": ["alpha"]}},
        ],
        "description": f"{{rule: relative, alpha: a}}: lambda = a * mean eigenvalue of {matrix} (default a = "
        f"{default_alpha:g}); {{rule: absolute, lambda: l}}: lambda = l",
    }


#: default damping: TRAK's alpha = 10 keeps 95% of the replica agreement of alpha -> infinity on the
#: demo (docs/evidence.md); LoGra/FactGraSS keep their alpha = 0.1 per layer
TRAK_DAMPING = {"rule": "relative", "alpha": 10.0}
FACTORED_DAMPING = {"rule": "relative", "alpha": 0.1}
register(
    Method(
        "trak",
        "TRAK",
        "gradient-dense",
        reads="ensemble",
        normalize="zscore",
        module="aria.attribution.trak",
        params={
            "damping": _damping(TRAK_DAMPING["alpha"], "Phi^T Phi"),
            "ensemble": {"type": "integer", "minimum": 1, "description": "independently trained models M"},
        },
        required=("ensemble",),
        run_params=("damping",),
        defaults={"damping": TRAK_DAMPING},
    )
)
register(
    Method(
        "gradcos", "Grad-Cos", "gradient-dense", reads="final", normalize="zscore", module="aria.attribution.gradcos"
    )
)
register(
    Method(
        "tracin",
        "TracIn",
        "gradient-dense",
        reads="checkpoints",
        normalize="rank",
        module="aria.attribution.tracin",
        params={
            "checkpoints": {"type": "integer", "minimum": 1, "description": "checkpoints C of model 0 summed over"}
        },
        required=("checkpoints",),
    )
)
register(
    Method("graddot", "GradDot", "gradient-dense", reads="final", normalize="rank", module="aria.attribution.graddot")
)

_LAYERS = {"enum": ["all", "attention", "mlp"], "description": "linear layers (nn.Linear, Conv1D) used"}


def _register_factored(name: str, label: str, *, params: dict, defaults: dict, covariance_when: dict) -> Method:
    """Register a ``gradient-factored`` method of ``aria.attribution.<name>``: per-layer damping (the scoring
    job's one parameter) and the layer choice come with every one; ``params`` are its projection's own settings.
    """
    m = Method(
        name,
        label,
        "gradient-factored",
        reads="factored",
        normalize="rank",
        module=f"aria.attribution.{name}",
        params={"damping": _damping(FACTORED_DAMPING["alpha"], "F_l, per layer"), **params, "layers": _LAYERS},
        run_params=("damping",),
        projection_params=(*params, "layers"),
        defaults={"damping": FACTORED_DAMPING, **defaults, "layers": "all"},
        covariance_when=covariance_when,
    )
    return register(m)


_register_factored(
    "logra",
    "LoGra",
    params={
        "k_in": {"type": "integer", "minimum": 1, "description": "input-side projection per layer"},
        "k_out": {"type": "integer", "minimum": 1, "description": "output-side projection per layer"},
        "init": {"enum": ["kfac", "random"], "description": "KFAC eigenvectors, or Gaussian (the ablation)"},
    },
    defaults={"k_in": 64, "k_out": 64, "init": "kfac"},
    covariance_when={"init": "kfac"},
)
_register_factored(
    "factgrass",
    "FactGraSS",
    params={
        "k": {"type": "integer", "minimum": 1, "description": "SJLT output dimension per layer"},
        "blowup": {
            "type": "integer",
            "minimum": 1,
            "description": "each factor keeps ceil(sqrt(blowup * k)) coords",
        },
        "mask": {"enum": ["random", "magnitude"], "description": "which factor coordinates are kept"},
    },
    defaults={"k": 4096, "blowup": 4, "mask": "random"},
    covariance_when={"mask": "magnitude"},
)

#: target layer groups of the unlearning update (aria.attribution.unlearning.LAYER_GROUPS)
_UNLEARN_GROUPS = ["all", "attention", "mlp", "kv"]
register(
    Method(
        "unlearning",
        "Unlearning",
        "unlearning",
        reads="model",
        normalize="rank",
        module="aria.attribution.unlearning",
        params={
            "lr": {"type": "number", "minimum": 0, "description": "eta of theta' = theta0 + eta F^-1 grad L(z_hat)"},
            "steps": {"type": "integer", "minimum": 1, "maximum": 4, "description": "unlearning steps (paper: 1)"},
            "group": {"enum": _UNLEARN_GROUPS, "description": "target layer group (paper: all)"},
            "floor": {
                "type": "number",
                "minimum": 0,
                "description": "Fisher floor, relative to the mean Fisher entry of the target group",
            },
            "mask": {
                "enum": ["none", "both", "mixed"],
                "description": "padding/silence masks: M_U on the query (mixed, both), M_L on training items (both)",
            },
            "chunks": {"type": "integer", "minimum": 1, "description": "query chunks, one job (GPU) each"},
            "precision": {
                "enum": ["float64", "mixed", "float32"],
                "description": "format of the loss passes (tau is a difference of nearly equal losses): float64, "
                "mixed (float64 output layer and softmax) or float32",
            },
            "check": {
                "type": "integer",
                "minimum": 0,
                "description": "queries per chunk scored again in float64 and float32: tau's round-off estimate",
            },
        },
        run_params=("lr", "steps", "group", "floor", "mask", "precision", "check"),
        defaults={
            "lr": 1e-4,
            "steps": 1,
            "group": "all",
            "floor": 1e-3,
            "mask": "mixed",
            "chunks": 1,
            "precision": "mixed",
            "check": 1,
        },
    )
)

STAGES: Mapping[str, Stage] = MappingProxyType(
    {
        s.name: s
        for s in (
            Stage("symbolic", "symbolic", "symbolic", 0),
            Stage("semantic", "audio", "semantic", 0),
            Stage("coarse", "audio", "coarse", 1),
            Stage("fine", "audio", "fine", 2),
        )
    }
)


def stage(name: str) -> Stage:
    """The model stage ``name``; a ``KeyError`` lists the known ones."""
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(STAGES)}") from None


def audio_stages() -> list[str]:
    """The audio decoder stages in generation order."""
    return [s.name for s in sorted(STAGES.values(), key=lambda s: s.index) if s.domain == "audio"]


ENCODERS: Mapping[str, Encoder] = MappingProxyType(
    {
        e.name: e
        for e in (
            Encoder("basic_pitch", "basic-pitch", "aria.audio.encoders:BasicPitchEncoder"),
            Encoder("aisfx", "aisfx", "aria.audio.encoders:AisfxEncoder"),
            Encoder("clap", "clap", "aria.audio.encoders:clap_encoder", needs_weights=True),
            Encoder("mert", "mert", "aria.audio.encoders:mert_encoder", needs_weights=True),
        )
    }
)

#: the two score stores each embedding baseline writes: time-averaged, all-against-all
EMBEDDING_MODES = {"": "avg", "_aaa": "all-vs-all"}


def encoder(name: str) -> Encoder:
    """The registered embedding encoder ``name``; a ``ValueError`` lists the known ones."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}") from None


def row_label(key: str) -> str:
    """Report label of a row key ``"<method>/<stage>"`` (or a plain method name).

    Embedding baseline rows are ``"<encoder>[_aaa]/baseline"``; external
    matrices are ``"<name>/external"``.
    """
    name, _, where = key.partition("/")
    if where == "baseline":
        base, aaa = (name[:-4], True) if name.endswith("_aaa") else (name, False)
        lab = ENCODERS[base].label if base in ENCODERS else base.replace("_", "-")
        return f"{lab} ({EMBEDDING_MODES['_aaa' if aaa else '']})"
    if where == "external":
        return f"{name} (external)"
    label = _METHODS[name].label if name in _METHODS else name
    return f"{label} · {where}" if where and where != "symbolic" else label


def load_plugins(modules: list[str] | str | None = None) -> list[str]:
    """Import plugin modules that register methods; default: :data:`PLUGINS_ENV`.

    ``modules`` is a list of importable module names, or one string of them
    separated by commas. Returns the names imported.
    """
    if modules is None:
        modules = os.environ.get(PLUGINS_ENV, "")
    if isinstance(modules, str):
        modules = [m.strip() for m in modules.split(",") if m.strip()]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ImportError(
                f"plugin module {name!r} (config 'plugins' / ${PLUGINS_ENV}) cannot be imported: {e}"
            ) from e
    return list(modules)


def describe() -> dict[str, Any]:
    """The registry as plain data (``aria registry`` prints it)."""
    return {
        "methods": {
            m.name: {
                "label": m.label,
                "family": m.family,
                "reads": m.reads,
                "normalize": m.normalize,
                "module": m.module,
            }
            for m in _METHODS.values()
        },
        "stages": {s.name: {"domain": s.domain, "index": s.index} for s in STAGES.values()},
        "encoders": {e.name: {"label": e.label, "needs_weights": e.needs_weights} for e in ENCODERS.values()},
    }
