"""The job contract: one frozen argument dataclass per job, and the registry the command line is built from.

A job is a library function ``fn(a: SomethingArgs) -> None`` registered with :func:`job`. Its
dataclass declares the command-line options: a field ``out_dir`` is the option ``--out-dir``; a
field without a default is required; :func:`arg` and :func:`opt` carry the argparse details
(``nargs``, ``choices``, ``action``, ``help``). :mod:`aria.cli` generates ``aria <job> --help``
from these fields, so the rules, the CLI and the tests read one declaration.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields

__all__ = [
    "JobArgs",
    "SettingsArgs",
    "ModelJobArgs",
    "EngineArgs",
    "Job",
    "JOBS",
    "job_args",
    "arg",
    "opt",
    "job",
    "options",
    "parse_json_fields",
    "torch_setup",
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
def job_args(cls):
    """Make ``cls`` a job's argument dataclass: frozen and keyword-only.

    A class without a docstring of its own gets one from :func:`job` (``Arguments of aria <job>``):
    the job function's docstring documents the job, the fields' ``help`` its options.
    """
    return dataclass(frozen=True, kw_only=True)(cls)


@job_args
class JobArgs:
    """What every job takes: the torch CPU threads it may use."""

    threads: int = opt(1, help="torch CPU threads")


@job_args
class SettingsArgs(JobArgs):
    """A job that takes its settings as one ``--params`` JSON object (the plan's ``job_settings``)
    and writes one main output ``--out``.
    """

    params: dict = arg(json=True, help="the job's settings: a JSON object, or the path of a .json file")
    out: str


@job_args
class ModelJobArgs(SettingsArgs):
    """A job on one trained model (``--model``, an :mod:`aria.io.checkpoints` file) and its stage's
    training segments (``--segments``).
    """

    model: str
    segments: str


@job_args
class EngineArgs(JobArgs):
    """A matrix job: where its work runs (:mod:`aria.parallel`)."""

    engine: str = opt("numpy", choices=("numpy", "dask"), help="compute.engine")
    scheduler: str = opt("threads", help="compute.scheduler (dask engine only)")


@dataclass(frozen=True)
class Job:
    """A registered job: its command name, function and argument dataclass."""

    name: str
    fn: Callable[[JobArgs], object]
    args: type[JobArgs]


#: Every registered job by command name, in registration order (filled by importing the job modules).
JOBS: dict[str, Job] = {}


def job(name: str):
    """Register ``fn(a: XArgs)`` as the job ``aria <name>``; the dataclass is read from the annotation."""

    def register(fn):
        cls = typing.get_type_hints(fn)["a"]
        if not (isinstance(cls, type) and issubclass(cls, JobArgs)):
            raise TypeError(f"job {name}: its argument must be annotated with a JobArgs dataclass, got {cls!r}")
        if name in JOBS:
            raise ValueError(f"job {name!r} is registered twice ({JOBS[name].fn.__module__} and {fn.__module__})")
        if "__doc__" not in vars(cls) or cls.__doc__.startswith(cls.__name__ + "("):  # dataclass's own
            cls.__doc__ = f"Arguments of ``aria {name}``."
        JOBS[name] = Job(name, fn, cls)
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
