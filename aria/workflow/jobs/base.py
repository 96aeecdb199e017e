"""The job contract: one frozen argument dataclass per job, one frozen settings dataclass per job
that has settings, and the registry the command line is built from.

A job is a library function ``fn(a: SomethingArgs) -> None``, or ``fn(a: SomethingArgs, p:
SomethingSettings) -> None`` when it takes settings, registered with :func:`job`.

- The argument dataclass (a :class:`JobArgs`) declares the command-line options: a field ``out_dir``
  is the option ``--out-dir``; a field without a default is required; :func:`arg` and :func:`opt`
  carry the argparse details (``nargs``, ``choices``, ``action``, ``help``). :mod:`aria.cli`
  generates ``aria <job> --help`` from these fields.
- The settings dataclass (a :class:`~aria.workflow.jobs.settings.Settings`, re-exported here)
  declares the config values the job depends on: the plan (:mod:`aria.workflow.plan`) builds it
  from the validated config, the rule passes it as the ``--params`` JSON object, and the command
  line checks that JSON against the same fields (:meth:`Settings.from_dict`) before the job runs,
  so the plan, the rules, the CLI and the tests read one declaration.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields

from aria.workflow.jobs.settings import UNSET, Settings

__all__ = [
    "JobArgs",
    "Settings",
    "UNSET",
    "SettingsArgs",
    "ModelJobArgs",
    "EngineArgs",
    "SpecArgs",
    "PartsArgs",
    "Job",
    "JOBS",
    "arg",
    "opt",
    "job",
    "options",
    "parse_json_fields",
    "torch_setup",
    "load_job_model",
]


def arg(*, help: str | None = None, json: bool = False, **argparse_kw):
    """A required option: ``argparse_kw`` (``nargs``, ``choices``, ``action``) go to argparse as they are.

    ``json=True``: the option is a JSON object, given inline or as the path of a ``.json`` file; the
    job receives the parsed dict (:func:`parse_json_fields`).
    """
    return field(metadata={"argparse": argparse_kw, "help": help, "json": json})


def opt(default, *, help: str | None = None, json: bool = False, **argparse_kw):
    """An optional option with its ``default`` (immutable: ``None``, a number, a string).

    ``json`` as for :func:`arg`.
    """
    return field(default=default, metadata={"argparse": argparse_kw, "help": help, "json": json})


@typing.dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
@dataclass(frozen=True, kw_only=True)
class JobArgs:
    """What every job takes: the torch CPU threads it may use.

    Subclasses are frozen, keyword-only dataclasses by declaration (``class LdsArgs(SettingsArgs):
    scores: str``). One without a docstring of its own gets one from :func:`job` (``Arguments of
    aria <job>``): the job function's docstring documents the job, the fields' ``help`` its options.
    """

    threads: int = opt(1, help="torch CPU threads")

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        dataclass(frozen=True, kw_only=True)(cls)


class SettingsArgs(JobArgs):
    """A job that takes its settings as one ``--params`` JSON object (the plan's ``job_settings``)
    and writes one main output ``--out``.
    """

    params: Mapping = arg(json=True, help="the job's settings: a JSON object, or the path of a .json file")
    out: str


class ModelJobArgs(SettingsArgs):
    """A job on one trained model (``--model``, an :mod:`aria.io.checkpoints` file) and its stage's
    training segments (``--segments``).
    """

    model: str
    segments: str


class EngineArgs(JobArgs):
    """A matrix job: where its work runs (:mod:`aria.parallel`)."""

    engine: str = opt("numpy", choices=("numpy", "dask"), help="compute.engine")
    scheduler: str = opt("threads", help="compute.scheduler (dask engine only)")


class SpecArgs(JobArgs):
    """A job driven by one JSON specification that the plan builds (``--spec``), writing ``--out``."""

    spec: dict = arg(json=True, help="the job's specification: a JSON object, or the path of a .json file")
    out: str


class PartsArgs(JobArgs):
    """A job that joins what jobs run in parts wrote (``--parts``, in order) into one ``--out``."""

    parts: list[str] = arg(nargs="+", help="the parts, in order")
    out: str


@dataclass(frozen=True)
class Job:
    """A registered job: its command name, function, argument dataclass and settings dataclass (None:
    the job takes no settings).
    """

    name: str
    fn: Callable[..., object]
    args: type[JobArgs]
    settings: type[Settings] | None = None

    def __call__(self, values: Mapping):
        """Run the job on the parsed option ``values`` (JSON options parsed, settings checked)."""
        values = parse_json_fields(self.args, values, job=self.name)
        if self.settings is not None:
            values["params"] = self.settings.from_dict(values["params"], job=self.name)
        a = self.args(**values)
        return self.fn(a) if self.settings is None else self.fn(a, a.params)


#: Every registered job by command name, in registration order (filled by importing the job modules).
JOBS: dict[str, Job] = {}


def job(name: str):
    """Register ``fn(a: XArgs)`` or ``fn(a: XArgs, p: XSettings)`` as the job ``aria <name>``; the
    dataclasses are read from the annotations (``p`` is ``a.params``, checked against ``XSettings``).
    """

    def register(fn):
        hints = typing.get_type_hints(fn)
        cls, settings = hints["a"], hints.get("p")
        if not (isinstance(cls, type) and issubclass(cls, JobArgs)):
            raise TypeError(f"job {name}: its argument must be annotated with a JobArgs dataclass, got {cls!r}")
        if settings is not None and not (
            isinstance(settings, type) and issubclass(settings, Settings) and "params" in cls.__dataclass_fields__
        ):
            raise TypeError(f"job {name}: annotate p with a Settings dataclass and give {cls.__name__} params")
        if name in JOBS:
            raise ValueError(f"job {name!r} is registered twice ({JOBS[name].fn.__module__} and {fn.__module__})")
        for c, what in ((cls, "Arguments"), (settings, "Settings")):
            if c is not None and (c.__doc__ or "").startswith(c.__name__ + "("):  # the dataclass's own
                c.__doc__ = f"{what} of ``aria {name}``."
        JOBS[name] = Job(name, fn, cls, settings)
        return fn

    return register


def options(cls: type[JobArgs]) -> list[tuple[str, dict]]:
    """The argparse options of an argument dataclass: ``[(flag, kwargs), ...]`` in field order.

    A field without a default is ``required``; an ``int`` field gets ``type=int`` (a ``bool`` is a
    ``store_true`` flag by its ``action``).
    """
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        meta = f.metadata
        kw = dict(meta.get("argparse", {}))
        if meta.get("help"):
            kw["help"] = meta["help"]
        kw["required"] = f.default is MISSING
        if f.default is not MISSING:
            kw["default"] = f.default
        base = typing.get_args(hints[f.name]) or (hints[f.name],)
        if int in base and bool not in base and "action" not in kw:
            kw["type"] = int
        out.append(("--" + f.name.replace("_", "-"), kw))
    return out


def parse_json_fields(cls: type[JobArgs], values: dict, *, job: str) -> dict:
    """``values`` with every JSON option of ``cls`` parsed: inline JSON, or the path of a JSON file.

    Raises
    ------
    ValueError
        Naming the job and the option when the value is neither a JSON object nor a readable JSON
        file holding one.
    """
    out = dict(values)
    for f in fields(cls):
        v = out.get(f.name)
        if not f.metadata.get("json") or v is None or isinstance(v, dict):
            continue
        flag = "--" + f.name.replace("_", "-")
        text = v
        if v.lstrip()[:1] not in ("{", "["):  # not inline JSON: the path of a JSON file
            try:
                with open(v, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as e:
                raise ValueError(f"aria {job} {flag}: neither a JSON object nor a readable JSON file: {e}") from None
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"aria {job} {flag}: not valid JSON ({e})") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"aria {job} {flag}: expected a JSON object, got {type(parsed).__name__}")
        out[f.name] = parsed
    return out


def torch_setup(threads: int, device: str | None = None):
    """Give torch the job's CPU ``threads``; with a ``device``, check that a CUDA one exists when asked for.

    Returns the ``torch`` module (imported here, so that jobs without torch never import it).
    """
    import torch

    torch.set_num_threads(threads)
    if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"config device is {device!r} but torch sees no CUDA device")
    return torch


def load_job_model(a: JobArgs, device: str | None = None, checkpoint: int | None = None):
    """``(model, lr)`` of a job on a model: torch given the job's threads (a CUDA ``device`` checked),
    then the model of ``a.model`` with its final weights, or those of TracIn checkpoint ``checkpoint``
    (:func:`aria.io.checkpoints.load_model`; on the CPU).
    """
    from aria.io.checkpoints import load_model

    torch_setup(a.threads, device)
    return load_model(a.model, checkpoint)
