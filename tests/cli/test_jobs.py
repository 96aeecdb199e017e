"""The job layer's contract: argument dataclasses, the generated command line, no import circle."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from aria.cli import build_parser
from aria.workflow.jobs import all_jobs
from aria.workflow.jobs.base import UNSET, JobArgs, Settings, arg, opt, options

REPO = Path(__file__).resolve().parents[2]


def test_runtime_does_not_import_the_cli():
    """The supervisor (aria.runtime) starts without the CLI or the jobs: the import runs one way only."""
    code = (
        "import sys, aria.runtime; print(sorted(m for m in sys.modules if m.startswith(('aria.cli', 'aria.workflow'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _ToyArgs(JobArgs):
    model: str
    parts: list[str] = arg(nargs="+", help="the parts")
    replica: list[str] | None = opt(None, nargs=2)
    engine: str = opt("numpy", choices=("numpy", "dask"))
    cache_mib: int = opt(1024, help="MiB")
    dry: bool = opt(False, action="store_true")


def test_options_follow_the_fields():
    got = dict(options(_ToyArgs))
    assert list(got) == ["--threads", "--model", "--parts", "--replica", "--engine", "--cache-mib", "--dry"]
    assert got["--model"] == {"required": True}
    assert got["--parts"] == {"nargs": "+", "help": "the parts", "required": True}
    assert got["--replica"] == {"nargs": 2, "required": False, "default": None}
    assert got["--engine"] == {"choices": ("numpy", "dask"), "required": False, "default": "numpy"}
    assert got["--cache-mib"] == {"help": "MiB", "required": False, "default": 1024, "type": int}
    assert got["--threads"]["type"] is int and got["--threads"]["default"] == 1
    assert got["--dry"] == {"action": "store_true", "required": False, "default": False}
    with pytest.raises(FrozenInstanceError):
        _ToyArgs(model="m", parts=["a"]).model = "x"


def test_every_job_parses_into_its_dataclass():
    """Each job's generated options parse back into its own dataclass, field for field."""
    ap = build_parser()
    for name, job in all_jobs().items():
        argv = [name]
        want = {}
        for flag, kw in options(job.args):
            field = flag[2:].replace("-", "_")
            if not kw["required"]:
                want[field] = kw.get("default")
                continue
            n = kw.get("nargs")
            vals = [f"{field}{i}" for i in range(n if isinstance(n, int) else (2 if n else 1))]
            argv += [flag, *vals]
            want[field] = vals if n else vals[0]
        ns = ap.parse_args(argv)
        assert ns.func is job.fn and ns.job is job
        a = job.args(**{k: getattr(ns, k) for k in want})
        assert {k: getattr(a, k) for k in want} == want, name
        assert job.fn.__doc__, f"job {name} has no docstring (its --help)"


def test_every_job_is_run_by_a_rule():
    """Every registered job is run by some rule (``warm-jit-cache`` by ``make venv``): no dead job."""
    from aria.workflow.plan import QUERY_JOBS

    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    called = set(re.findall(r"\baria_job\(\s*\"([a-z][a-z0-9-]+)\"", text)) | {"warm-jit-cache"}
    called |= set(QUERY_JOBS.values())  # aria_job(query_job(exp)): by the experiment and queries.kind
    assert set(all_jobs()) <= called, set(all_jobs()) - called


def test_every_rule_has_a_log_and_a_benchmark():
    """Every rule of rules/*.smk (templates aside) states its own log and benchmark; a rule made
    from a template states no environment, threads or shell of its own (the template's)."""
    rules = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        if path.name == "templates.smk":
            continue
        for block in re.split(r"(?m)^(?=[ ]*(?:rule |use rule ))", path.read_text())[1:]:
            head = block.splitlines()[0].strip()
            rules[head] = block
    assert len(rules) > 30
    for head, block in rules.items():
        assert re.search(r"(?m)^\s+log:$", block) and re.search(r"(?m)^\s+benchmark:$", block), head
        if re.match(r"use rule (cpu|gpu|engine)_job as", head):
            assert not re.search(r"(?m)^\s+(conda|threads|shell):", block), head


def test_every_method_module_follows_its_interface():
    """Gradient methods' modules give operators; factored ones also their own featurizer."""
    from aria import registry
    from aria.attribution.base import FactoredMethod, GradientMethod

    for m in registry.gradient_methods():
        impl = m.implementation()
        assert isinstance(impl, GradientMethod), m.name
        assert isinstance(impl, FactoredMethod) == (m.family == "gradient-factored"), m.name


@pytest.mark.parametrize("given", ["inline", "file"])
def test_json_options_arrive_parsed(tmp_path, given):
    """A JSON option (``--params``) is given inline or as a file; the job receives the dict."""
    from aria.workflow.jobs.base import parse_json_fields

    class WithParams(JobArgs):
        params: dict = arg(json=True)
        extra: dict | None = opt(None, json=True)

    text = '{"k": [1, 2], "seed": 3}'
    value = text
    if given == "file":
        value = str(tmp_path / "p.json")
        Path(value).write_text(text)
    got = parse_json_fields(WithParams, {"threads": 1, "params": value, "extra": None}, job="toy")
    assert got == {"threads": 1, "params": {"k": [1, 2], "seed": 3}, "extra": None}


@pytest.mark.parametrize(
    "value, message",
    [('{"k": ', "aria toy --params: not valid JSON"), ("[1, 2]", "expected a JSON object, got list"),
     ("missing.json", "aria toy --params: neither a JSON object nor a readable JSON file")],
)  # fmt: skip
def test_bad_json_options_name_the_job_and_option(tmp_path, monkeypatch, value, message):
    from aria.workflow.jobs.base import parse_json_fields

    class WithParams(JobArgs):
        params: dict = arg(json=True)

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_json_fields(WithParams, {"params": value}, job="toy")


class _ToySettings(Settings):
    n_boot: int
    alpha: float = 0.5
    unit: str = UNSET


class _OpenSettings(Settings, open=True):
    row_chunk: int


@pytest.mark.parametrize(
    "values, message",
    [({"n_boot": 3, "nboot": 4}, "aria toy --params: unknown setting(s) ['nboot']; _ToySettings takes"),
     ({"alpha": 0.1}, "aria toy --params: missing setting(s) ['n_boot']"),
     ({"n_boot": True}, "aria toy --params: setting 'n_boot' must be"),
     ({"n_boot": 2.5}, "setting 'n_boot' must be"),
     ({"n_boot": 1, "alpha": "x"}, "setting 'alpha' must be")],
)  # fmt: skip
def test_settings_reject_what_the_job_does_not_take(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _ToySettings.from_dict(values, job="toy")


def test_settings_read_as_the_given_mapping():
    """An UNSET setting is absent (``get`` gives the default, JSON leaves it out); a float takes an int;
    an open class keeps the settings it does not declare; equality is the mapping's."""
    p = _ToySettings.from_dict({"n_boot": 3, "alpha": 1}, job="toy")
    assert dict(p) == p.to_dict() == {"n_boot": 3, "alpha": 1} and p.get("unit", "segment") == "segment"
    assert "unit" not in p and p["alpha"] == 1 and {**p} == {"n_boot": 3, "alpha": 1}
    with pytest.raises(KeyError):
        p["unit"]
    with pytest.raises(FrozenInstanceError):
        p.n_boot = 4
    o = _OpenSettings.from_dict({"row_chunk": 8, "damping": {"rule": "absolute"}}, job="toy")
    assert o["damping"] == {"rule": "absolute"} and o != _OpenSettings.from_dict({"row_chunk": 8}, job="toy")
    assert _ToySettings.from_dict(p, job="toy") is p


def test_a_jobs_settings_are_checked_before_it_runs(tmp_path):
    """``aria lds`` with a misspelt setting stops with the job's message before it reads a file."""
    proc = subprocess.run(
        [sys.executable, "-m", "aria", "lds", "--scores", str(tmp_path / "none.zarr"), "--ground-truth",
         str(tmp_path / "none.zarr"), "--out", str(tmp_path / "o.json"), "--params", '{"n_boot": 10, "sed": 1}'],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "aria lds --params: unknown setting(s) ['sed']; LdsSettings takes ['n_boot', 'seed']" in proc.stderr
    assert "none.zarr" not in proc.stderr
    assert not (tmp_path / "o.json").exists()
