# The plan (aria/workflow/plan.py) and what only Snakemake can do: config validation with the
# files this run read, wildcard constraints, report items. Every other name the rules use
# (results(), logs(), benchmarks(), EXP, STAGES, AUDIO_ROWS, aria_job(...), ...) is defined,
# documented and unit-tested in aria/workflow/plan.py and made visible here.
import os

from aria import registry
from aria.config import validate_config
from aria.symbolic.corpus import demo_collections
from aria.workflow.plan import aria_on_path, make_plan
from snakemake.exceptions import WorkflowError

# methods defined outside Aria register themselves on import; jobs import them too
PLUGINS = registry.load_plugins(config.get("plugins", []))
if PLUGINS:
    os.environ[registry.PLUGINS_ENV] = ",".join(PLUGINS)


def config_source():
    """The config files this run read (``--configfile`` replaces config.yaml) and the ``--config`` keys."""
    files = [os.path.relpath(f) for f in workflow.configfiles]
    source = " + ".join(str(f) if r.startswith("..") else r for f, r in zip(workflow.configfiles, files))
    source = source or "(no config file)"
    if workflow.config_settings.config:
        source += f" with --config {', '.join(sorted(workflow.config_settings.config))}"
    return source


validate_config(config, source=f"config {config_source()}")
if (_missing := aria_on_path()) is not None:  # the jobs run `aria`: the one next to this Python first
    raise WorkflowError(_missing)

PLAN = make_plan(config)
globals().update(PLAN)


wildcard_constraints:
    exp=one_of(sorted({e for e, _ in STAGES})),
    stage=one_of(sorted({s for _, s in STAGES} | ({"baseline", "external"} if AUDIO else set()))),
    method="[a-z_]+",
    m=r"\d+",
    c=r"\d+",
    shard=r"\d+",
    k=r"\d+",
    chunk=r"\d+",
    subset=r"\d+",
    side="masked|full",
    point=r"[A-Za-z0-9_.+-]+",
    encoder=one_of(registry.ENCODERS),
    pool="segments/symbolic/pool|corpus/pool",


def report_item(path, kind):
    """A report rule's output as a `snakemake --report` item: kind report or summary (a file), or
    figures or tables (a folder of PNG / CSV files), captioned from captions/<kind>.rst and filed under
    its experiment."""
    opts = dict(caption=f"captions/{kind}.rst", category=lambda w: REPORT_CATEGORY[DOMAIN[w.exp]])
    if kind in ("figures", "tables"):
        ext = "png" if kind == "figures" else "csv"
        return report(directory(path), patterns=[f"{{name}}.{ext}"], subcategory=kind.capitalize(), **opts)
    return report(path, **opts)
