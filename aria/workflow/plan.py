"""The workflow's plan: experiments, stages, report rows, sweep grids and every job's parameters,
computed from the validated config in plain Python (no Snakemake needed), so that it can be tested
in milliseconds.

``rules/common.smk`` builds one plan, ``PLAN = make_plan(config)``, and makes its names visible to
the rules (``globals().update(PLAN)``): the rules call getters with their wildcards ``w``
(``method_feature_stores(w)``) and build their command lines with ``aria_job``. Conventions:

- every path comes from ``results()``, ``logs()`` or ``benchmarks()``: one experiment's files live in
  ``results/<experiment>/``, its logs in ``results/<experiment>/logs/`` and the benchmarks of its
  expensive rules in ``results/<experiment>/benchmarks/``;
- each job's parameters are its settings dataclass (``JOB_SETTINGS`` builds them, ``job_settings``
  checks them against the job's :class:`~aria.workflow.jobs.base.Settings`) holding only the config
  values that job depends on, passed as ``--params`` JSON and compared by Snakemake's params trigger,
  so that changing one method's parameter reruns that method's jobs and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from types import SimpleNamespace

from aria import registry
from aria.config import analysis_settings, diffusion_settings, experiments, lds_settings, planted_settings
from aria.io import dattri_benchmark as dattri_io
from aria.symbolic.corpus import demo_collections, eval_quotas

__all__ = ["Plan", "make_plan", "aria_on_path"]


class Plan(dict):
    """The names of one plan (constants in upper case, getters in lower case), also as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def aria_on_path() -> str | None:
    """Put the ``aria`` next to this Python first on ``PATH`` (jobs inherit it); an error message if none.

    So README's ``.venv/bin/snakemake ...`` works without ``.venv/bin`` on PATH, and so do cluster
    jobs (each job's Snakemake runs this again, with the same interpreter). With ``--use-conda`` a
    job's conda environment is activated in the job, in front of this.
    """
    here = os.path.dirname(sys.executable)
    if os.access(os.path.join(here, "aria"), os.X_OK):
        path = os.environ.get("PATH", "")
        if path.split(os.pathsep)[0] != here:
            os.environ.update(PATH=here + os.pathsep + path)  # the jobs inherit this process's environment
    elif shutil.which("aria") is None:
        return (
            f"the jobs run the command 'aria', but it is neither next to {sys.executable} (the Python that "
            "runs Snakemake) nor on PATH: install Aria into that environment (make venv, or pip install -e .)"
        )
    return None


#: The job that makes an experiment's queries, by (domain, planted).
QUERY_JOBS = {
    ("symbolic", False): "symbolic-queries",
    ("symbolic", True): "symbolic-planted-queries",
    ("audio", False): "audio-queries",
    ("audio", True): "audio-planted-queries",
}

#: The shell command of a rule whose ``params.job`` is the plan's ``aria_job(...)``.
ARIA = "aria {params.job} --threads {threads} > {log} 2>&1"
#: The same for the matrix jobs: the dask scheduler is a resource (it changes no number, reruns nothing).
ARIA_DASK = "aria {params.job} --scheduler {resources.dask_scheduler:q} --threads {threads} > {log} 2>&1"
#: The same with BLAS limited to the job's threads (the audio features).
ARIA_OMP = "OMP_NUM_THREADS={threads} " + ARIA
#: The same, with the job's warnings on the console as well as in its log (the pool check).
ARIA_WARN = ARIA + "; grep -h ' WARNING ' {log} >&2 || true"


def one_of(names) -> str:
    """A wildcard constraint matching exactly ``names`` (regular-expression escaped); none: matches nothing."""
    return "|".join(re.escape(str(n)) for n in names) or "^$"


def template_params(template: str) -> dict:
    """The params of job template ``template`` (rules/templates.smk), which every rule made from it
    replaces with its own (``**aria_job(...)``): run as a target, the template stops with this error.
    """

    def job(w):
        raise ValueError(
            f"rule {template} is a job template, not a target: rules are made from it with "
            f"`use rule {template} as <name> with:` (rules/templates.smk)"
        )

    return {"job": job}


def command_line(name: str, options: dict) -> str:
    """``<name> --option value ...``: job ``name``'s command line, shell-quoted, in ``options`` order.

    ``options`` maps the job's argument fields (:mod:`aria.workflow.jobs`) to values: a path or
    string, a list (``nargs``; an empty list is left out, or given bare where ``nargs="*"``), a dict
    or a job's :class:`~aria.workflow.jobs.base.Settings` (JSON), a bool (a flag) or None (left out).

    Raises
    ------
    ValueError
        Naming the job, when an option is no field of its argument dataclass.
    """
    from dataclasses import fields

    from aria.workflow.jobs import all_jobs

    spec = {f.name: f for f in fields(all_jobs()[name].args)}
    unknown = sorted(set(options) - set(spec))
    if unknown:
        raise ValueError(f"aria {name}: the rule names {unknown}, which are not options of the job ({sorted(spec)})")
    parts = [name]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, Mapping):  # a dict or a job's Settings
            parts += [flag, shlex.quote(json.dumps(dict(value), sort_keys=True))]
        elif isinstance(value, str):
            parts += [flag, shlex.quote(value)]
        else:
            values = [shlex.quote(str(v)) for v in value]
            if values or spec[key].metadata.get("argparse", {}).get("nargs") == "*":
                parts += [flag, *values]
    return " ".join(parts)


def symbolic_model(model: dict) -> dict:
    """The training settings of config ``model``: its sizes and recipe; ``kind: hf`` trains a
    Hugging Face causal LM (``architecture`` gpt2 unless given). Your own models
    (``checkpoints``, ``path``) are :func:`symbolic_pretrained`'s.
    """
    out = {k: v for k, v in model.items() if k not in ("checkpoints", "path", "kind")}
    if model.get("kind") == "hf":
        out.setdefault("architecture", "gpt2")
    return out


def symbolic_pretrained(model: dict) -> list[str]:
    """Your own models of the ensemble, member by member: Aria checkpoints (``model.checkpoints``)
    or, with ``model.kind: hf``, ``save_pretrained`` folders (``model.path``).
    """
    path = model.get("path", [])
    return list(model.get("checkpoints", [])) + ([path] if isinstance(path, str) else list(path))


def make_plan(config: dict) -> Plan:  # noqa: C901 -- one closure per getter, by design
    """The plan of a validated ``config`` (:func:`aria.config.validate_config`).

    Returns
    -------
    Plan
        Upper-case names are constants (``EXP``, ``STAGES``, ``AUDIO_ROWS``, ``METHODS``, ...);
        lower-case names are getters of a rule's wildcards ``w`` (``method_params(w)``) or of an
        experiment (``sweep_jobs(exp)``). Every name is documented where it is defined below.
    """
    EXPERIMENTS = experiments(config)
    SYMBOLIC = "symbolic" in EXPERIMENTS
    # the symbolic experiment's name; an audio-only run on the user's audio has none (no rule writes there)
    EXP = config.get("experiment")
    # dattri's MAESTRO benchmark (corpus.kind dattri_benchmark, aria/io/dattri_benchmark.py): one import
    # job writes the symbolic experiment's corpus, segments, queries, models and published LDS ground truth
    DATTRI = (
        config["corpus"]["dattri_benchmark"] if SYMBOLIC and config["corpus"]["kind"] == "dattri_benchmark" else None
    )

    def results(path, exp="{exp}"):
        """``results/<exp>/<path>``: every file an experiment writes.

        ``path`` may hold wildcards (``{stage}``, ``{method}``, ...). ``exp`` is an experiment's
        name (``EXP`` or ``AUDIO_EXP``) or, by default, the ``{exp}`` wildcard of the rules that
        every stage shares (model, projection, scoring, diagnostics).
        """
        return f"results/{exp}/{path}"

    def logs(path, exp="{exp}"):
        """``results/<exp>/logs/<path>``: one log per job."""
        return results(f"logs/{path}", exp)

    def benchmarks(path, exp="{exp}"):
        """``results/<exp>/benchmarks/<path>``: Snakemake's time and memory record of a job."""
        return results(f"benchmarks/{path}", exp)

    ENV = "../envs/aria.yaml"

    #: What the jobs of a stage share, by the job option that reads it: a model of the ensemble
    #: (``{m}``), the training segments and the queries.
    STAGE_FILES = {
        "model": "models/{stage}/m{m}.pt",
        "segments": "segments/{stage}/train.npz",
        "queries": "queries/{stage}/queries.npz",
    }

    def stage_inputs(*names, m="{m}"):
        """A rule's named inputs ``names`` of :data:`STAGE_FILES` (``input: **stage_inputs("model",
        "segments")``); ``m``: the model's ensemble member, its wildcard by default.
        """
        return {n: results(STAGE_FILES[n].replace("{m}", str(m))) for n in names}

    # Attribution runs per (experiment, stage): the symbolic experiment has one stage,
    # "symbolic"; the model, projection and scoring rules are shared by every stage
    # and take their settings from STAGES[(exp, stage)].
    STAGES = {}
    if SYMBOLIC:
        STAGES[(EXP, "symbolic")] = {
            "methods": config["methods"],
            "projection": config["projection"],
            "model": symbolic_model(config["model"]),
            "seq_len": config["segments"]["block_tokens"],
            "pretrained": symbolic_pretrained(config["model"]),
            "lds": lds_settings(config.get("lds")),
        }
    METHODS = list(config["methods"]["run"]) if SYMBOLIC else []

    # docs/spec.md §7 readings of every report row (rules/analysis.smk)
    ANALYSIS = analysis_settings(config.get("analysis"))

    # Score matrices the user computed elsewhere (config external_scores): imported into the
    # score folder of their stage, then diagnosed, made track-level and scored for homogeneity
    # like a built-in method.
    EXTERNAL = config.get("external_scores", {})
    EXTERNAL_SYMBOLIC = [n for n, e in EXTERNAL.items() if e.get("experiment", "symbolic") == "symbolic"]

    AUDIO = config.get("audio", {}) if "audio" in EXPERIMENTS else {}
    AUDIO_EXP = AUDIO.get("experiment", "audio")
    AUDIO_SHARDS = AUDIO.get("features", {}).get("n_shards", 1)
    AUDIO_STAGES = registry.audio_stages()
    if AUDIO:
        from aria.audio.stages import AudioVocab

        TOKENIZER_CFG = dict(
            sr=AUDIO["sr"], **AUDIO["tokenizers"], windows={s: AUDIO["stages"][s]["window_s"] for s in AUDIO_STAGES}
        )
        AUDIO_VOCAB = AudioVocab.from_config(AUDIO["tokenizers"], sr=AUDIO["sr"], windows=TOKENIZER_CFG["windows"])
        for _s in AUDIO_STAGES:
            STAGES[(AUDIO["experiment"], _s)] = {
                "methods": AUDIO["stages"][_s]["methods"],
                "projection": AUDIO["stages"][_s]["projection"],
                "model": dict(AUDIO["model"], vocab_size=AUDIO_VOCAB.size),
                "seq_len": AUDIO_VOCAB.seq_len(_s),
                "pretrained": AUDIO["stages"][_s].get("checkpoints", []),
                "lds": lds_settings(AUDIO.get("lds"))
                if _s in AUDIO.get("lds", {}).get("stages", AUDIO_STAGES)
                else None,
            }
    # rows of the audio report ("method/stage"): every (method, stage) in registry order, then the
    # embedding baselines (one row per encoder and averaging mode)
    AUDIO_ROWS = [
        f"{m.name}/{s}"
        for m in registry.stage_methods()
        for s in AUDIO_STAGES
        if AUDIO and m.name in AUDIO["stages"][s]["methods"]["run"]
    ]
    AUDIO_ROWS += [
        f"{n}/{e.get('stage')}"
        for n, e in EXTERNAL.items()
        if AUDIO and e.get("experiment") == "audio" and e.get("stage") != "track"
    ]
    AUDIO_ROWS += [f"{e}{v}/baseline" for e in AUDIO.get("baselines", []) for v in registry.EMBEDDING_MODES]
    AUDIO_ROWS += [
        f"{n}/external"
        for n, e in EXTERNAL.items()
        if AUDIO and e.get("experiment") == "audio" and e.get("stage") == "track"
    ]
    # the MIDI demo corpus is built when the symbolic experiment runs or the audio demo renders it
    MIDI_CORPUS = (SYMBOLIC and not DATTRI) or (AUDIO and AUDIO["corpus"]["kind"] == "demo")
    AUDIO_TARGETS = [results("report.html", AUDIO_EXP), results("summary.json", AUDIO_EXP)] if AUDIO else []
    SYMBOLIC_TARGETS = [results("report.html", EXP), results("summary.json", EXP)] if SYMBOLIC else []

    def audio_manifest():
        """Every audio corpus kind ends in this manifest (user corpora: absolute paths, filtered)."""
        return results("corpus/manifest.csv", AUDIO_EXP)

    def audio_root():
        return results("corpus", AUDIO_EXP)

    def row_stage(key):
        """The stage of an audio report row key "method/stage"."""
        return key.partition("/")[2]

    def audio_row_outputs(kind):
        """Per-row JSONs of the audio report, in AUDIO_ROWS order ("method/stage")."""
        out = []
        for key in AUDIO_ROWS:
            method, stage = key.split("/")
            out.append(results(f"{kind}/{stage}/{method}.json", AUDIO_EXP))
        return out

    def audio_import_inputs():
        c = AUDIO.get("corpus", {})
        if c.get("kind") == "audio_folder":
            return [c["audio_folder"]["manifest"]]
        if c.get("kind") == "fma":
            return [c["fma"]["tracks_csv"]]
        return []

    def audio_features_settings(w):
        feats = AUDIO.get("features", {})
        chords = {k: feats[k] for k in ("chords", "omnizart_checkpoint") if k in feats}
        return dict(shard=int(w.shard), n_shards=AUDIO_SHARDS, sr=AUDIO.get("sr"), root=audio_root(), **chords)

    def stage_cfg(w):
        return STAGES[(w.exp, w.stage)]

    def n_checkpoints(cfg):
        """Checkpoints C of model 0: the most any running method reads (``reads == "checkpoints"``)."""
        return max(
            [
                cfg["methods"][m]["checkpoints"]
                for m in cfg["methods"]["run"]
                if registry.method(m).reads == "checkpoints"
            ]
            or [1]
        )

    def ensemble_size(cfg):
        """Models M of the ensemble: the most any running method reads (``reads == "ensemble"``)."""
        return max(
            [cfg["methods"][m]["ensemble"] for m in cfg["methods"]["run"] if registry.method(m).reads == "ensemble"]
            or [1]
        )

    def demo_collection_settings(w):
        """One collection's job: its seed comes from its name, its eval quota from the sorted names
        (results do not depend on the order the collections are listed in).
        """
        d = config["corpus"]["demo"]
        cols = demo_collections(d)
        return dict(
            seed=config["seeds"]["corpus"],
            collection=w.collection,
            n_pieces=cols[w.collection],
            n_eval=eval_quotas(cols, d["n_eval"])[w.collection],
            max_duration_s=d["max_duration_s"],
        )

    def corpus_manifest():
        if config["corpus"]["kind"] in ("demo", "dattri_benchmark"):
            return results("corpus/manifest.csv", EXP)
        return config["corpus"]["midi_folder"]["manifest"]

    def corpus_files():
        """MIDI files of a user corpus, so editing one reruns what depends on it."""
        if config["corpus"]["kind"] != "midi_folder":
            return []
        from aria.io.tables import read_manifest

        mf = config["corpus"]["midi_folder"]
        return list(read_manifest(mf["manifest"], root=mf["root"])["abspath"])

    def tokenizer_files():
        """The miditok tokenizer file, so editing it reruns the segments and what depends on them."""
        t = config.get("tokenizer") or {}
        return [t["path"]] if t.get("kind") == "miditok" else []

    def corpus_root():
        if config["corpus"]["kind"] == "demo":
            return results("corpus", EXP)
        if config["corpus"]["kind"] == "dattri_benchmark":
            return os.path.expanduser(config["corpus"]["dattri_benchmark"]["download_path"])
        return config["corpus"]["midi_folder"]["root"]

    def method_feature_stores(w):
        """The projected-feature stores a scoring method reads (docs/spec.md §2; registry ``Method.reads``)."""
        cfg = stage_cfg(w)
        n_c = n_checkpoints(cfg)
        store = results("features/{stage}/m{m}_c{c}.zarr", w.exp)
        reads = registry.method(w.method).reads
        if reads == "ensemble":
            return [store.format(stage=w.stage, m=m, c=n_c) for m in range(ensemble_size(cfg))]
        if reads == "checkpoints":
            return [store.format(stage=w.stage, m=0, c=c) for c in range(1, n_c + 1)]
        if reads == "factored":  # the method's own store (model 0, final weights)
            return [results(f"features/{w.stage}/{w.method}/m0.zarr", w.exp)]
        if reads == "model":  # unlearning reads the model itself (rules/unlearning.smk)
            return []
        return [store.format(stage=w.stage, m=0, c=n_c)]

    # The noise diagnostic (aria.evaluation.agreement, rules/replicas.smk): each model-based method's
    # scores again from ensemble member analysis.replicas.member (another seed), and the agreement of
    # the two replicas in the method's diagnostics JSON.
    REPLICA = ANALYSIS["replicas"]

    def replica_reason(w):
        """Why a report row has no replica (None: it has one)."""
        if w.method in EXTERNAL:
            return "a matrix computed outside Aria: give its replica to `aria diagnose --replica`"
        if (w.exp, w.stage) not in STAGES:
            return "an embedding baseline: no trained model, so nothing to retrain with another seed"
        m = registry.METHODS.get(w.method)
        if m is None or m.family not in ("gradient-dense", "gradient-factored", "unlearning"):
            return "no model to retrain"
        if f"{w.stage}/{w.method}" in REPLICA["skip"]:
            return f"skipped by config analysis.replicas.skip ({w.stage}/{w.method})"
        if stage_cfg(w).get("pretrained") and len(stage_cfg(w)["pretrained"]) <= REPLICA["member"]:
            return f"no checkpoint of ensemble member {REPLICA['member']} among the stage's pretrained models"
        return None

    def member_feature_stores(w, m):
        """The feature stores a gradient method reads when it scores from ensemble member ``m`` alone."""
        cfg = stage_cfg(w)
        n_c = n_checkpoints(cfg)
        reads = registry.method(w.method).reads
        if reads == "checkpoints":
            return [results(f"features/{w.stage}/m{m}_c{c}.zarr", w.exp) for c in range(1, n_c + 1)]
        if reads == "factored":
            return [results(f"features/{w.stage}/{w.method}/m{m}.zarr", w.exp)]
        return [results(f"features/{w.stage}/m{m}_c{n_c}.zarr", w.exp)]  # final; ensemble: one member

    def replica_stores(w):
        """``[A, B]``: the method's scores (TRAK: member 0 alone, as its ensemble averages members) and
        the replica from member ``analysis.replicas.member``; [] when the row has no replica.
        """
        if replica_reason(w):
            return []
        member = REPLICA["member"]
        b = results(f"replicas/{w.stage}/{w.method}/m{member}.zarr", w.exp)
        if registry.method(w.method).reads == "ensemble":
            return [results(f"replicas/{w.stage}/{w.method}/m0.zarr", w.exp), b]
        return [results(f"scores/{w.stage}/{w.method}.zarr", w.exp), b]

    def replica_options(w, input):
        """The diagnostics job's replica options: the replica's members, or why the row has none."""
        if input.replica:
            ens = method_settings(w).get("ensemble", 1) if registry.method(w.method).reads == "ensemble" else 1
            return {"replica_params": dict(members=[0, REPLICA["member"]], ensemble=ens)}
        return {"replica_note": replica_reason(w) or "no replica"}

    def method_settings(w):
        """A method's config block of this stage over the registry's defaults."""
        m = registry.method(w.method)
        return {**m.defaults, **stage_cfg(w)["methods"].get(w.method, {})}

    def method_run_settings(w):
        """The scoring job's parameters: the method's ``run_params`` (the rest shape its inputs)."""
        m = registry.method(w.method)
        p = {k: v for k, v in method_settings(w).items() if k in m.run_params}
        return dict(row_chunk=config.get("score_row_chunk", 4096), **p)

    def factored_settings(w):
        """A factored method's projection job: its ``projection_params`` (never its damping)."""
        m = registry.method(w.method)
        s = method_settings(w)
        return dict(
            seed=config["seeds"]["projection"],
            device=config["device"],
            batch_size=stage_cfg(w)["projection"]["batch_size"],
            **{k: s[k] for k in m.projection_params},
        )

    def factored_inputs(w):
        out = dict(
            model=results(f"models/{w.stage}/m{w.m}.pt", w.exp),
            segments=results(f"segments/{w.stage}/train.npz", w.exp),
            queries=results(f"queries/{w.stage}/queries.npz", w.exp),
        )
        if registry.method(w.method).needs_covariance(method_settings(w)):
            out["covariance"] = results(f"features/{w.stage}/kfac/m{w.m}.npz", w.exp)
        return out

    def tracklevel_settings(w):
        """docs/spec.md §3 normalization of a method's scores before averaging a track's segments."""
        if w.method in EXTERNAL:
            return dict(normalize=EXTERNAL[w.method].get("normalize", "rank"))
        return dict(normalize=registry.method(w.method).normalize)

    HOM_UNIT = config["homogeneity"].get("unit", "segment")  # symbolic pool unit (audio: always tracks)

    def symbolic_evidence():
        """The symbolic evidence pool's features: every training segment, or every piece (unit: track)."""
        name = "symbolic_track_features.npz" if HOM_UNIT == "track" else "symbolic_features.npz"
        return results(f"evidence/{name}", EXP)

    def row_scores(w):
        """The score matrix a row's homogeneity reads: an audio stage's track-level one (docs/spec.md §3;
        the embedding baselines and track-level external matrices are track-level already).
        """
        if DOMAIN[w.exp] == "audio" and w.stage not in ("baseline", "external"):
            return results(f"tracklevel/{w.stage}/{w.method}.zarr", w.exp)
        return results(f"scores/{w.stage}/{w.method}.zarr", w.exp)

    def evidence_inputs(w):
        """An experiment's evidence pool (features) and its null; the audio pool also names its tracks."""
        if DOMAIN[w.exp] == "audio":
            return dict(features=results("evidence/audio_features.npz", w.exp), manifest=audio_manifest())
        return dict(features=symbolic_evidence())

    def homogeneity_inputs(w):
        """A homogeneity job's score matrix, pool, null, and what the confounds need: the manifest
        (genres), the queries (query genres) and, symbolic, the segments (pieces).
        """
        out = dict(scores=row_scores(w), **evidence_inputs(w), null=results("evidence/null.json", w.exp))
        if DOMAIN[w.exp] == "audio":
            return dict(out, queries=results(f"queries/{AUDIO_STAGES[0]}/queries.npz", w.exp))
        return dict(
            out,
            manifest=corpus_manifest(),
            segments=results("segments/symbolic/train.npz", EXP),
            queries=results("queries/symbolic/queries.npz", EXP),
        )

    def null_settings(w):
        """The random-group null: every K, the number of groups and their seed."""
        return dict(
            ks=config["homogeneity"]["ks"],
            n_groups=config["homogeneity"]["n_null_groups"],
            seed=config["seeds"]["null_groups"],
        )

    def homogeneity_settings(w):
        """The confound checks' group size, null size and seed; the symbolic pool unit and the
        normalization that makes a matrix track-level for it.
        """
        domain = DOMAIN[w.exp]
        extra = {}
        if domain == "symbolic" and HOM_UNIT == "track":
            extra = dict(unit="track", **tracklevel_settings(w))
        return dict(
            domain=domain,
            main_k=config["homogeneity"]["main_k"],
            n_groups=config["homogeneity"]["n_null_groups"],
            seed=config["seeds"]["null_groups"],
            **extra,
        )

    def row_cost_files(exp, key):
        """Benchmark files and stores behind one report row (docs/spec.md §7 cost): its scoring, the projection
        and covariance jobs whose stores it reads, the training of those models, and its score and
        feature stores. Jobs shared by several rows (a feature store, a model) count in full for each.
        """
        method, _, stage = key.partition("/")
        stage = stage or "symbolic"
        if method in EXTERNAL:
            return {}
        if stage == "baseline":
            enc = method.removesuffix("_aaa")
            return {
                "attribution": [
                    benchmarks(f"embed_corpus/{enc}.tsv", exp),
                    benchmarks(f"embed_baseline/{enc}.tsv", exp),
                ],
                "stores": [results(f"scores/baseline/{method}.zarr", exp)],
            }
        w = SimpleNamespace(exp=exp, stage=stage, method=method)
        if registry.method(method).reads == "model":  # unlearning: its Fisher, query chunks and merge
            return {
                "attribution": [benchmarks(f"unlearning_fisher/{stage}/{fisher_side(w)}.tsv", exp)]
                + [benchmarks(f"unlearning_chunk/{stage}/q{c}.tsv", exp) for c in range(unlearning_chunks(w))],
                "training": [benchmarks(f"train_model/{stage}/m0.tsv", exp)],
                "stores": [results(f"scores/{stage}/{method}.zarr", exp)],
            }
        stores = method_feature_stores(w)
        bench = [benchmarks(f"score/{stage}/{method}.tsv", exp)]
        models = set()
        base = results(f"features/{stage}", exp)
        for f in stores:
            rel = os.path.relpath(f, base).removesuffix(".zarr")
            if os.path.dirname(rel) == method:  # factored: features/<stage>/<method>/m<m>.zarr
                m = os.path.basename(rel)[1:]
                bench.append(benchmarks(f"project_factored/{stage}/{rel}.tsv", exp))
                if factored_inputs(SimpleNamespace(exp=exp, stage=stage, method=method, m=m)).get("covariance"):
                    bench.append(benchmarks(f"kfac_covariance/{stage}/m{m}.tsv", exp))
            else:  # dense: features/<stage>/m<m>_c<c>.zarr
                m = rel[1:].split("_c", 1)[0]
                bench.append(benchmarks(f"project_gradients/{stage}/{rel}.tsv", exp))
            models.add(m)
        return {
            "attribution": bench,
            "training": [benchmarks(f"train_model/{stage}/m{m}.tsv", exp) for m in sorted(models)],
            "stores": [results(f"scores/{stage}/{method}.zarr", exp)] + stores,
        }

    def cost_arg(exp, keys):
        """``--cost JSON`` of a report job: each row's benchmark files and stores (read when the report runs)."""
        return json.dumps({k: row_cost_files(exp, k) for k in keys})

    def symbolic_dropped():
        """Dropped-items tables of the symbolic experiment: the demo corpus's (if built) and the segments'."""
        out = [results("segments/symbolic/dropped.csv", EXP)]
        if config["corpus"]["kind"] == "demo":
            out.insert(0, results("corpus/dropped.csv", EXP))
        return out

    def pool_check_settings(w):
        """What the pool check compares against: every K, the symbolic pool unit, and the verdict's
        query minimum. Its output feeds only the report (a job of high priority, so that a K larger
        than the pool stops the run minutes before the null would).
        """
        domain = DOMAIN[w.exp]
        unit = {"unit": HOM_UNIT} if domain == "symbolic" else {}
        if domain == "audio" and PLANTED:  # planted queries, not one per eval track
            unit["n_queries"] = PLANTED["n_sources"] * len(PLANTED["aspects"])
        return dict(ks=config["homogeneity"]["ks"], min_queries=ANALYSIS["verdict"]["min_queries"], **unit)

    # Sensitivity sweep (docs/spec.md §7, rules/analysis.smk): one job per (stage, method, grid point)
    SENS = config.get("sensitivity") or {}
    SENS = SENS if SENS.get("enabled", True) else {}

    def _point_name(point):
        """A grid point as a path component: ``lambda0.001_k256`` (parameters in grid order)."""
        return "_".join(f"{p}{v:g}" for p, v in point.items())

    def sweep_points(method):
        """The method's grid points ``{name: {param: value}}`` (aria.config.damping_points: the product of
        the value lists, a damping's alpha and lambda lists being alternatives).
        """
        from aria.config import damping_points

        grid = (SENS.get("grid") or {}).get(method, {})
        if not grid:
            return {}
        return {_point_name(p): p for p in damping_points(grid)}

    def sweep_jobs(exp):
        """``(stage, method, point name)`` of every sweep job of one experiment."""
        out = []
        for (e, stage), cfg in STAGES.items():
            if e != exp or (SENS.get("stages") and stage not in SENS["stages"]):
                continue
            for method in SENS.get("grid") or {}:
                if method in cfg["methods"]["run"]:
                    out += [(stage, method, name) for name in sweep_points(method)]
        return out

    def sweep_outputs(exp):
        return [results(f"sensitivity/{s}/{m}/{p}.json", exp) for s, m, p in sweep_jobs(exp)]

    def sweep_inputs(w):
        """A grid point's feature stores (projected again at its k when k is swept), the experiment's
        evidence pool and null, and what the track-level reduction needs.
        """
        point = sweep_points(w.method)[w.point]
        k = point.get("k")
        stores = method_feature_stores(w)
        if k is not None and int(k) == stage_cfg(w)["projection"]["k"]:
            k = None  # the stage's own k: its main stores
        if k is not None:
            base = results(f"features/{w.stage}", w.exp)
            stores = [os.path.join(base, f"k{int(k)}", os.path.relpath(f, base)) for f in stores]
        out = {"features": stores}
        reads = registry.method(w.method).reads
        if not replica_reason(w) and (k is None or reads == "ensemble"):  # the point's noise diagnostic
            base = results(f"features/{w.stage}", w.exp)

            def at_k(fs):
                return fs if k is None else [os.path.join(base, f"k{int(k)}", os.path.relpath(f, base)) for f in fs]

            out["replica_a"] = at_k(member_feature_stores(w, 0)) if reads == "ensemble" else stores
            out["replica_b"] = at_k(member_feature_stores(w, REPLICA["member"]))
        if SYMBOLIC and w.exp == EXP:
            out.update(evidence=symbolic_evidence(), null=results("evidence/null.json", EXP))
            if HOM_UNIT == "track":
                out["segments"] = results("segments/symbolic/train.npz", EXP)
        else:
            out.update(
                evidence=results("evidence/audio_features.npz", AUDIO_EXP),
                null=results("evidence/null.json", AUDIO_EXP),
                manifest=audio_manifest(),
                segments=results(f"segments/{w.stage}/train.npz", AUDIO_EXP),
            )
        return out

    def sweep_settings(w):
        """The method's scoring parameters with the grid point's values, and the track-level normalization."""
        from aria.config import point_damping

        point = {p: v for p, v in sweep_points(w.method)[w.point].items() if p not in ("k", "alpha", "lambda")}
        damping = point_damping(sweep_points(w.method)[w.point])
        if damping:
            point["damping"] = damping
        base = method_run_settings(w)
        norm = {}
        if not (SYMBOLIC and w.exp == EXP) or HOM_UNIT == "track":
            norm = tracklevel_settings(w)
        return dict(**{**base, **point}, point=sweep_points(w.method)[w.point], stage=w.stage, **norm)

    def projection_settings(w):
        """The stage's projection block as the job reads it: cache_mib left out (memory only, never a
        rerun trigger), the type filled in (registry.DEFAULT_PROJECTION), so that a change of the
        default reruns the projections that relied on it.
        """
        proj = {k: v for k, v in stage_cfg(w)["projection"].items() if k != "cache_mib"}
        return {"type": registry.DEFAULT_PROJECTION, **proj}

    def projection_run_settings(w):
        """One projection job: checkpoint c of model m with the stage's projection settings (at the
        swept k of a sensitivity grid when the job has a ``k`` wildcard).
        """
        # (no line may start with the word checkpoint here: Snakemake would parse it as a keyword)
        proj = projection_settings(w)
        if hasattr(w, "k"):
            proj = {**proj, "k": int(w.k)}
        return dict(checkpoint=int(w.c), seed=config["seeds"]["projection"], device=config["device"], **proj)

    def cards_spec(exp):
        """Everything ``aria cards`` reads, as one JSON (the rule lists the same files as inputs)."""
        domain = DOMAIN[exp]
        rows = []
        for k in ROWS[exp]:
            method, _, stage = k.partition("/")
            stage = stage or "symbolic"
            row = {
                "key": k,
                "label": report_labels([k]).get(k) or registry.row_label(k),
                "homogeneity": results(f"homogeneity/{stage}/{method}.json", exp),
                "diagnostics": results(f"diagnostics/{stage}/{method}.json", exp),
            }
            if domain == "audio" and stage not in ("baseline", "external"):
                row.update(
                    scores=results(f"tracklevel/{stage}/{method}.zarr", exp),
                    segment_scores=results(f"scores/{stage}/{method}.zarr", exp),
                    segments_csv=results(f"segments/{stage}/segments.csv", exp),
                    stage=stage,
                    window_s=AUDIO["stages"][stage]["window_s"],
                )
            else:
                row["scores"] = results(f"scores/{stage}/{method}.zarr", exp)
                if domain == "symbolic" and HOM_UNIT == "track":  # pieces: track-level scores, best segment
                    row.update(
                        segment_scores=row["scores"],
                        segments_csv=results("segments/symbolic/segments.csv", exp),
                        normalize=tracklevel_settings(SimpleNamespace(method=method))["normalize"],
                    )
            rows.append(row)
        spec = dict(
            domain=domain,
            title=f"Aria report: {exp}",
            main_k=config["homogeneity"]["main_k"],
            rows=rows,
            verdict=ANALYSIS["verdict"],
            null=results("evidence/null.json", exp),
            sr=AUDIO.get("sr", 22050),
        )
        if domain == "audio":
            spec.update(
                evidence=results("evidence/audio_features.npz", exp),
                manifest=audio_manifest(),
                root=audio_root(),
                queries=results(f"queries/{AUDIO_STAGES[0]}/queries.npz", exp),
                query_audio=results("queries/audio", exp),
            )
        else:
            spec.update(
                evidence=symbolic_evidence(),
                manifest=corpus_manifest(),
                root=corpus_root(),
                queries=results("queries/symbolic/queries.npz", exp),
                query_midi=results("queries/midi", exp),
                segments=results("segments/symbolic/train.npz", exp),
                block_tokens=config["segments"]["block_tokens"],
            )
        return spec

    CARD_ROW_FILES = ("homogeneity", "diagnostics", "scores", "segment_scores", "segments_csv")
    CARD_FILES = ("evidence", "null", "manifest", "queries", "query_audio", "query_midi", "segments")

    def card_spec_files(spec):
        """The files a cards spec names (the rule's inputs, so that the cards rerun when any changes)."""
        files = [v for r in spec["rows"] for f, v in r.items() if f in CARD_ROW_FILES]
        return files + [spec[f] for f in CARD_FILES if f in spec]

    def cards_inputs(w):
        """The files of :func:`cards_spec`."""
        return card_spec_files(cards_spec(w.exp))

    def residual_inputs(w):
        """A row's score matrix and its experiment's evidence pool and null; an audio segment-level
        matrix also needs its segments (track level) and the manifest names the audio pool.
        """
        scores = results(f"scores/{w.stage}/{w.method}.zarr")
        if SYMBOLIC and w.exp == EXP:
            out = {"scores": scores, "features": symbolic_evidence(), "null": results("evidence/null.json", EXP)}
            if HOM_UNIT == "track":
                out["segments"] = results("segments/symbolic/train.npz", EXP)
            return out
        out = {
            "scores": scores,
            "features": results("evidence/audio_features.npz", AUDIO_EXP),
            "null": results("evidence/null.json", AUDIO_EXP),
            "manifest": audio_manifest(),
        }
        if w.stage not in ("baseline", "external"):
            out["segments"] = results(f"segments/{w.stage}/train.npz", AUDIO_EXP)
        return out

    def residual_settings(w):
        """The row's track-level normalization (audio segment-level rows) and the alignment fit cap."""
        if SYMBOLIC and w.exp == EXP:
            norm = tracklevel_settings(w) if HOM_UNIT == "track" else {}
        else:
            norm = {} if w.stage in ("baseline", "external") else tracklevel_settings(w)
        return dict(max_dims_fraction=ANALYSIS["max_dims_fraction"], **norm)

    def external_stage_dir(name):
        """Score folder of an external matrix: its stage's (segment rows) or 'external' (track rows)."""
        e = EXTERNAL[name]
        if e.get("experiment", "symbolic") == "symbolic":
            return "symbolic"
        return "external" if e["stage"] == "track" else e["stage"]

    def external_inputs(w):
        """The user's matrix and id lists, plus the workflow's ids its rows/columns must match."""
        e = EXTERNAL[w.method]
        exp = EXP if e.get("experiment", "symbolic") == "symbolic" else AUDIO_EXP
        stage = external_stage_dir(w.method)
        q_stage = "symbolic" if stage == "symbolic" else AUDIO_STAGES[0]
        out = dict(
            matrix=e["path"], rows=e["rows"], cols=e["cols"], expect_cols=results(f"queries/{q_stage}/queries.npz", exp)
        )
        if stage != "external":
            out["expect_rows"] = results(f"segments/{stage}/train.npz", exp)
        return out

    def report_labels(keys):
        """Report labels the report job cannot derive itself (external matrices)."""
        out = {}
        for k in keys:
            name = k.partition("/")[0]
            if name in EXTERNAL:
                out[k] = EXTERNAL[name].get("label", f"{name} (external)")
        return out

    def model_settings(w):
        """Ensemble member m's training: its seed and the stage's model, or the user's checkpoint."""
        cfg = stage_cfg(w)
        pretrained = cfg.get("pretrained", [])
        if int(w.m) < len(pretrained):  # the user's own checkpoint for this ensemble member
            return dict(pretrained=pretrained[int(w.m)])
        return dict(
            seed=config["seeds"]["train"] + int(w.m),
            n_checkpoints=n_checkpoints(cfg),
            block_tokens=cfg["seq_len"],
            **cfg["model"],
        )

    # where the matrix work runs (aria/parallel.py): the engine is a parameter (it may change
    # scores by round-off), the scheduler a resource (it changes nothing, reruns nothing)
    COMPUTE = {"engine": "numpy", "scheduler": "threads", "threads": 1, **config.get("compute", {})}
    # threads of a matrix job (score, diagnostics, tracklevel): compute.threads on the dask engine, else 1
    ENGINE_THREADS = COMPUTE["threads"] if COMPUTE["engine"] == "dask" else 1

    # The GPU request of the projection and unlearning rules: one GPU when the config runs on one
    # (device: cuda), none on a CPU run. Locally `--resources gpu=N` caps how many run at once; the
    # SLURM executor plugin turns gpu=1 into `sbatch --gpus=1` (docs/cluster.md).
    GPU = 0 if str(config["device"]).startswith("cpu") else 1

    def projection_cache_mib(w):
        """Memory for a Gaussian P's generated blocks (a resource: the numbers do not depend on it)."""
        return int(stage_cfg(w)["projection"].get("cache_mib", 1024))

    SYMBOLIC_ROWS = METHODS + EXTERNAL_SYMBOLIC

    def stage_outputs(kind, exp=EXP, stage="symbolic"):
        """Per-row outputs of the symbolic report: diagnostics or homogeneity JSONs."""
        return [results(f"{kind}/{stage}/{m}.json", exp) for m in SYMBOLIC_ROWS]

    # LDS ground truth (docs/spec.md §9, rules/lds.smk): the (experiment, stage) pairs whose config turns it on
    LDS_STAGES = sorted(s for (_, s), cfg in STAGES.items() if cfg["lds"])
    # the stages whose ground truth Aria retrains (dattri's benchmark brings its published one)
    LDS_RETRAIN_STAGES = [s for s in LDS_STAGES if not (DATTRI and s == "symbolic")]
    # the stages whose models Aria trains or adopts (dattri's benchmark: the import job writes them)
    TRAINED_STAGES = sorted({s for _, s in STAGES} - ({"symbolic"} if DATTRI else set()))

    def dattri_models():
        """The benchmark models the import job writes: every ensemble member a method or the replicas read."""
        cfg = STAGES[(EXP, "symbolic")]
        return [results(f"models/symbolic/m{m}.pt", EXP) for m in range(max(ensemble_size(cfg), REPLICA["member"] + 1))]

    LDS_SYMBOLIC = SYMBOLIC and bool(STAGES[(EXP, "symbolic")]["lds"])
    # the planted-influence benchmark (queries.kind: planted; rules/planted.smk): its settings, or None
    PLANTED = planted_settings(config.get("queries"))
    LDS_AUDIO_ROWS = [k for k in AUDIO_ROWS if AUDIO and STAGES.get((AUDIO_EXP, row_stage(k)), {}).get("lds")]

    def audio_lds_outputs():
        """LDS JSONs of the audio report's rows that have ground truth, in LDS_AUDIO_ROWS order."""
        return [results(f"lds/{row_stage(k)}/{k.partition('/')[0]}.json", AUDIO_EXP) for k in LDS_AUDIO_ROWS]

    def lds_cfg(w):
        return stage_cfg(w)["lds"]

    def lds_retrain_settings(w):
        """One subset's retraining: the subset, ensemble member 0's model and training recipe, the
        LDS recipe (steps | epochs), the runs R and the base seed (run r of subset m trains with
        seed base + m * R + r; base = seeds.train + 1000, above every ensemble member's seed), and
        the init (shared: every run starts from member 0's initial weights, seed seeds.train).
        """
        from aria.evaluation.lds import lds_base_seed

        cfg = stage_cfg(w)
        lds = cfg["lds"]
        return dict(
            subset=int(w.subset),
            alpha=lds["alpha"],
            seed=config["seeds"]["lds"],
            runs=lds["runs"],
            recipe=lds["recipe"],
            init=lds["init"],
            base_seed=lds_base_seed(config["seeds"]["train"]),
            member_seed=config["seeds"]["train"],
            model=dict(block_tokens=cfg["seq_len"], **cfg["model"]),
        )

    def lds_subset_files(w):
        return [results(f"lds/{w.stage}/subsets/s{s}.npz", w.exp) for s in range(lds_cfg(w)["n_subsets"])]

    def lds_ground_truth_inputs(w):
        """The retrained subsets, and what the reference rows need: the stage's segments and queries
        (their source tracks) and the manifest (the tracks' genre).
        """
        return {
            "subsets": lds_subset_files(w),
            "segments": results(f"segments/{w.stage}/train.npz", w.exp),
            "queries": results(f"queries/{w.stage}/queries.npz", w.exp),
            "manifest": corpus_manifest() if SYMBOLIC and w.exp == EXP else audio_manifest(),
        }

    def lds_references(exp, stages):
        """The references.json (seed-noise ceiling, reference rows' LDS) of each stage with ground truth."""
        return [results(f"lds/{s}/references.json", exp) for s in stages]

    # Unlearning (docs/spec.md §8, rules/unlearning.smk): a Fisher per (stage, side), query chunks, a merge;
    # the self-influence grid per stage; the comparison with the other methods per experiment.
    SELF = config.get("selfinfluence") or {}
    SELF = SELF if SELF.get("enabled", True) else {}

    def unlearning_settings(w):
        return method_settings(SimpleNamespace(exp=w.exp, stage=w.stage, method="unlearning"))

    def fisher_side(w, mask=None):
        """Which Fisher a mask strategy needs: of masked training losses (M_L: ``both``) or full ones."""
        mask = unlearning_settings(w)["mask"] if mask is None else mask
        return "masked" if mask == "both" else "full"

    def unlearning_chunks(w):
        """Query chunks, one job each (a chunk beyond the queries is empty and costs one model load)."""
        return unlearning_settings(w)["chunks"]

    def unlearning_fisher_settings(w):
        return dict(
            mask="both" if w.side == "masked" else "none",
            seed=config["seeds"]["unlearning"],
            device=config["device"],
        )

    def unlearning_chunk_settings(w):
        """One query chunk's unlearning; a replica's (wildcard ``m``) skips the round-off check."""
        s = unlearning_settings(w)
        out = dict(
            **{k: s[k] for k in registry.method("unlearning").run_params},
            seed=config["seeds"]["unlearning"],
            device=config["device"],
            n_chunks=s["chunks"],
            chunk=int(w.chunk),
        )
        return dict(out, check=0) if hasattr(w, "m") else out

    def unlearning_chunk_files(w):
        return [results(f"unlearning/{w.stage}/chunks/q{c}.npz", w.exp) for c in range(unlearning_chunks(w))]

    def unlearning_stages(exp):
        """Stages of one experiment that run unlearning."""
        return [s for (e, s), cfg in STAGES.items() if e == exp and "unlearning" in cfg["methods"]["run"]]

    GRID_KEYS = ("lr", "steps", "group", "mask")

    def selfinfluence_points(exp, stage):
        """``{name: {"lr", "steps", "group", "mask", "chosen"}}``: the grid (the product of config
        selfinfluence.grid's lists, a missing key taking the stage's setting) plus the chosen setting.
        """
        from itertools import product

        w = SimpleNamespace(exp=exp, stage=stage)
        s = unlearning_settings(w)
        grid = SELF.get("grid") or {}
        lists = [grid.get(k, [s[k]]) for k in GRID_KEYS]
        chosen = {k: s[k] for k in GRID_KEYS}
        points = [dict(zip(GRID_KEYS, v)) for v in product(*lists)]
        if chosen not in points:
            points.append(chosen)

        def name(p):
            return f"lr{p['lr']:g}_steps{p['steps']}_{p['group']}_{p['mask']}"

        return {name(p): dict(p, chosen=p == chosen) for p in points}

    def selfinfluence_jobs(exp):
        """``(stage, point name)`` of every self-influence job of one experiment."""
        if not SELF:
            return []
        stages = [s for s in unlearning_stages(exp) if not SELF.get("stages") or s in SELF["stages"]]
        return [(s, p) for s in stages for p in selfinfluence_points(exp, s)]

    def selfinfluence_outputs(exp):
        return [results(f"unlearning/{s}/selfinfluence/{p}.json", exp) for s, p in selfinfluence_jobs(exp)]

    def selfinfluence_fisher(w):
        mask = selfinfluence_points(w.exp, w.stage)[w.point]["mask"]
        return results(f"unlearning/{w.stage}/fisher_{fisher_side(w, mask)}.pt", w.exp)

    def selfinfluence_settings(w):
        p = selfinfluence_points(w.exp, w.stage)[w.point]
        return dict(
            **p,
            floor=unlearning_settings(w)["floor"],
            precision=unlearning_settings(w)["precision"],
            stage=w.stage,
            n_targets=SELF.get("n_targets", 8),
            top_k=SELF.get("top_k", 100),
            n_generations=SELF.get("n_generations", 4),
            seed=config["seeds"]["unlearning"],
            device=config["device"],
        )

    def compare_spec(exp):
        """What ``aria unlearning-compare`` reads: per stage running unlearning, its scores and the
        other methods' (audio: the raw τ averaged over each track's segments, against the embedding
        baselines, or the stage's other methods' track-level matrices when there are none; symbolic:
        the other methods' segment-level matrices).
        """
        domain = DOMAIN[exp]
        stages = []
        for st in unlearning_stages(exp):
            run = [m for m in STAGES[(exp, st)]["methods"]["run"] if m != "unlearning"]
            extra = {}
            if domain == "audio":  # raw τ, averaged over each track's segments in the job (the paper's whole items)
                unl = results(f"scores/{st}/unlearning.zarr", exp)
                extra = {"segments": results(f"segments/{st}/train.npz", exp)}
                keys = [k for k in AUDIO_ROWS if row_stage(k) == "baseline"] or [f"{m}/{st}" for m in run]
                others = [
                    dict(
                        key=k,
                        label=registry.row_label(k),
                        scores=results(
                            (
                                f"scores/baseline/{k.partition('/')[0]}.zarr"
                                if row_stage(k) == "baseline"
                                else f"tracklevel/{st}/{k.partition('/')[0]}.zarr"
                            ),
                            exp,
                        ),
                    )
                    for k in keys
                ]
            else:
                unl = results(f"scores/{st}/unlearning.zarr", exp)
                others = [
                    dict(key=m, label=registry.row_label(m), scores=results(f"scores/{st}/{m}.zarr", exp)) for m in run
                ]
            if others:
                stages.append(dict(stage=st, unlearning=unl, others=others, **extra))
        return {"stages": stages}

    def compare_inputs(w):
        """The files of :func:`compare_spec` (so that the comparison reruns when any of them changes)."""
        spec = compare_spec(w.exp)
        return (
            [st["unlearning"] for st in spec["stages"]]
            + [st["segments"] for st in spec["stages"] if "segments" in st]
            + [o["scores"] for st in spec["stages"] for o in st["others"]]
        )

    def compare_outputs(exp):
        """The experiment's comparison JSON, or nothing when no stage has unlearning and another method."""
        return [results("unlearning/compare.json", exp)] if exp in DOMAIN and compare_spec(exp)["stages"] else []

    # The diffusion experiment (rules/diffusion.smk; docs/methods.md "On a latent diffusion transformer"):
    # a latent DiT trained on clips of the audio experiment's corpus. Its files live under
    # results/<DIFF_EXP>/diffusion/, which no shared rule's {exp} matches; its report is results/<DIFF_EXP>/.
    DIFFUSION = diffusion_settings(config.get("diffusion")) if "diffusion" in EXPERIMENTS else {}
    DIFF_EXP = DIFFUSION.get("experiment", "diffusion")
    DIFF_ENCODER = DIFFUSION["embedding"]["encoder"] if DIFFUSION else None
    #: rows of the diffusion report: unlearning, Grad-Cos on the same v-loss, the encoder's two baselines
    DIFF_ROWS = (
        ["unlearning/dit", "gradcos/dit", f"{DIFF_ENCODER}/baseline", f"{DIFF_ENCODER}_aaa/baseline"]
        if DIFFUSION
        else []
    )
    DIFF_TARGETS = [results("report.md", DIFF_EXP), results("summary.json", DIFF_EXP)] if DIFFUSION else []

    def diff(path):
        """``results/<DIFF_EXP>/diffusion/<path>``: every intermediate file of the diffusion experiment."""
        return results(f"diffusion/{path}", DIFF_EXP)

    def diff_row_scores(row):
        """The score store of a diffusion report row (``DIFF_ROWS``)."""
        name, _, where = row.partition("/")
        return diff(f"scores/{name}.zarr")

    def diff_row_file(kind, row):
        """``<kind>/<row>.json`` of a diffusion report row (``{row}`` wildcard: the key with "-" for "/")."""
        return diff(f"{kind}/{row.replace('/', '-')}.json")

    def diff_diagnostics(row):
        """The diagnostics file of a diffusion report row (:func:`diff_row_file`)."""
        return diff_row_file("diagnostics", row)

    #: the diffusion experiment's evidence pool (``aria diffusion-evidence``): the training clips' channel
    #: features, their null and the manifest of the clips (and of the prompts' held-out tracks)
    DIFF_EVIDENCE = (
        dict(
            features=diff("evidence/features.npz"),
            null=diff("evidence/null.json"),
            manifest=diff("evidence/manifest.csv"),
        )
        if DIFFUSION
        else {}
    )

    def diffusion_cards_spec():
        """``aria cards``' spec for the diffusion rows: clip-level scores (a clip per training track), the
        clips' evidence pool and players, the generated queries' audio.
        """
        rows = [
            {
                "key": r,
                "label": registry.row_label(r),
                "homogeneity": diff_row_file("homogeneity", r),
                "diagnostics": diff_diagnostics(r),
                "scores": diff_row_scores(r),
            }
            for r in DIFF_ROWS
        ]
        return dict(
            domain="audio",
            title=f"Aria report: {DIFF_EXP}",
            main_k=config["homogeneity"]["main_k"],
            rows=rows,
            verdict=ANALYSIS["verdict"],
            evidence=DIFF_EVIDENCE["features"],
            null=DIFF_EVIDENCE["null"],
            manifest=DIFF_EVIDENCE["manifest"],
            queries=diff("queries/queries.npz"),
            query_audio=diff("queries/audio"),
            sr=AUDIO.get("sr", 22050),
        )

    def diffusion_homogeneity_settings(w):
        """``aria homogeneity`` on a diffusion row: the audio channels, clip level (a clip per training track)."""
        return dict(
            domain="audio",
            main_k=config["homogeneity"]["main_k"],
            n_groups=config["homogeneity"]["n_null_groups"],
            seed=config["seeds"]["null_groups"],
        )

    def diffusion_residual_settings(w):
        """``aria residual`` on a diffusion row: clip level already, so only the alignment fit cap."""
        return dict(max_dims_fraction=ANALYSIS["max_dims_fraction"])

    def diffusion_report_settings(w):
        """``aria report`` of the diffusion rows (the Aria report linked from the diffusion report)."""
        return dict(
            experiment=DIFF_EXP,
            main_k=config["homogeneity"]["main_k"],
            rows=DIFF_ROWS,
            domain="audio",
            stages=["dit"],
            device=config["device"],
            verdict=ANALYSIS["verdict"],
            reference_seed=config["seeds"]["null_groups"],
            notes={
                "unit": "reliability and homogeneity on each clip-level matrix (training clips x generated "
                "queries; one clip per training track, as the DiT saw it)",
                "channels": "Channels: rhythmic = BeatNet beat-interval and librosa onset-interval histograms; "
                "harmonic = chroma, tonnetz and chord root-motion LCS (madmom); timbral = MFCC and CQT "
                "statistics, all of the training clips' decoded latents. Rows: unlearning and Grad-Cos on the "
                f"DiT's v-loss, then the {DIFF_ENCODER} encoder's baselines: 'avg' = time-averaged "
                "embeddings, 'all-vs-all' = max cosine over "
                f"{DIFFUSION['embedding']['window_s']:g} s windows at {DIFFUSION['embedding']['hop_s']:g} s hop.",
            },
        )

    def diffusion_points():
        """``{name: {"lr", "steps", "group", "mask", "chosen"}}``: the product of diffusion.selfinfluence.grid's
        lists (a missing key: the unlearning setting), plus the unlearning setting itself (``chosen``).
        """
        from itertools import product

        u = DIFFUSION["unlearning"]
        grid = DIFFUSION["selfinfluence"].get("grid") or {}
        chosen = {k: u[k] for k in GRID_KEYS}
        points = [dict(zip(GRID_KEYS, v)) for v in product(*[grid.get(k, [u[k]]) for k in GRID_KEYS])]
        if chosen not in points:
            points.append(chosen)
        return {
            f"lr{p['lr']:g}_steps{p['steps']}_{p['group']}_{p['mask']}": dict(p, chosen=p == chosen) for p in points
        }

    def diffusion_fisher(mask, replica=None):
        """The Fisher a mask strategy's training losses need (M_L under ``both``: masked), of the
        experiment's DiT or of replica ``replica``'s.
        """
        where = "" if replica is None else f"replica{replica}/"
        return diff(f"{where}unlearning/fisher_{'masked' if mask == 'both' else 'full'}.pt")

    def diffusion_chunk_files(replica=None):
        """The unlearning chunks that ``aria unlearning-merge`` joins, of the DiT or of a replica's."""
        where = "" if replica is None else f"replica{replica}/"
        return [diff(f"{where}unlearning/chunks/q{c}.npz") for c in range(DIFFUSION["unlearning"]["chunks"])]

    #: the noise diagnostic of the diffusion rows needs a second DiT trained with another seed: not for
    #: an adopted (pretrained) checkpoint, which has no second training run
    DIFF_REPLICA = bool(DIFFUSION) and not DIFFUSION["model"].get("pretrained")
    DIFF_REPLICA_NOTE = (
        "an adopted checkpoint (diffusion.model.pretrained): no second independently trained DiT"
        if DIFFUSION and not DIFF_REPLICA
        else "no replica for the embedding baselines (no training seed)"
    )

    def diffusion_replica_pair(row):
        """``[scores, replica's scores]`` of a diffusion row with a noise diagnostic (unlearning and
        Grad-Cos on the DiT, replica 1: seeds.train + 1), or ``[]``.
        """
        name, _, where = row.partition("/")
        if not DIFF_REPLICA or where != "dit":
            return []
        return [diff_row_scores(row), diff(f"replica1/scores/{name}.zarr")]

    def diffusion_compare_spec():
        """``aria unlearning-compare``'s spec: the DiT's unlearning scores against its other rows."""
        others = [{"key": r, "label": registry.row_label(r), "scores": diff_row_scores(r)} for r in DIFF_ROWS[1:]]
        return {"stages": [{"stage": "dit", "unlearning": diff_row_scores(DIFF_ROWS[0]), "others": others}]}

    def diffusion_selfinfluence_settings(w):
        si = DIFFUSION["selfinfluence"]
        u = DIFFUSION["unlearning"]
        return dict(
            **diffusion_points()[w.point],
            floor=u["floor"],
            timesteps=u["timesteps"],
            n_targets=si["n_targets"],
            top_k=si["top_k"],
            n_generations=si["n_generations"],
            sample_steps=DIFFUSION["queries"]["sample_steps"],
            seed=config["seeds"]["unlearning"],
        )

    def diffusion_unlearning_settings(w):
        u = DIFFUSION["unlearning"]
        keep = ("lr", "steps", "group", "floor", "mask", "timesteps", "precision", "check")
        return dict(
            **{k: u[k] for k in keep}, seed=config["seeds"]["unlearning"], n_chunks=u["chunks"], chunk=int(w.chunk)
        )

    DIFF_SETTINGS = {
        "diffusion-latents": lambda w: dict(
            latents=DIFFUSION["latents"],
            **DIFFUSION["clips"],
            text=DIFFUSION["text"],
            seed=config["seeds"]["corpus"],
            root=audio_root(),
        ),
        "diffusion-train": lambda w: dict(
            sizes={
                k: v
                for k, v in DIFFUSION["model"].items()
                if k not in ("steps", "batch_size", "lr", "n_timesteps", "pretrained")
            },
            # a user's Stable Audio transformer folder: adopted, not trained (diffusion-train)
            **({"pretrained": DIFFUSION["model"]["pretrained"]} if DIFFUSION["model"].get("pretrained") else {}),
            **{k: DIFFUSION["model"][k] for k in ("steps", "batch_size", "lr", "n_timesteps")},
            # a replica (wildcard r) trains with another seed: the noise diagnostic's second DiT
            seed=config["seeds"]["train"] + int(getattr(w, "r", 0)),
        ),
        "diffusion-queries": lambda w: dict(
            steps=DIFFUSION["queries"]["sample_steps"], seed=config["seeds"]["queries"]
        ),
        "diffusion-fisher": lambda w: dict(
            mask="both" if w.side == "masked" else "none",
            timesteps=DIFFUSION["unlearning"]["timesteps"],
            seed=config["seeds"]["unlearning"],
        ),
        "diffusion-unlearning": diffusion_unlearning_settings,
        "diffusion-gradients": lambda w: dict(
            k=DIFFUSION["gradcos"]["k"],
            mask=DIFFUSION["unlearning"]["mask"],
            timesteps=DIFFUSION["unlearning"]["timesteps"],
            seed=config["seeds"]["unlearning"],
        ),
        "diffusion-embed": lambda w: dict(encoder=DIFF_ENCODER),
        "diffusion-evidence": lambda w: dict(sr=AUDIO.get("sr", 22050), root=audio_root()),
        "diffusion-baselines": lambda w: {k: DIFFUSION["embedding"][k] for k in ("window_s", "hop_s")},
        "diffusion-selfinfluence": diffusion_selfinfluence_settings,
        "diffusion-report": lambda w: dict(experiment=DIFF_EXP, rows=DIFF_ROWS),
    }

    # The report rules' outputs as `snakemake --report` items (rules/report.smk).
    REPORT_CATEGORY = {"symbolic": f"Symbolic: {EXP}", "audio": f"Audio: {AUDIO_EXP}"}

    # The experiments this run plans, by name: the rules that both experiments share (pool check,
    # null, homogeneity, planted, report, cards, comparison) take the domain from the {exp} wildcard.
    DOMAIN = {**({EXP: "symbolic"} if SYMBOLIC else {}), **({AUDIO_EXP: "audio"} if AUDIO else {})}
    ROWS = {EXP: SYMBOLIC_ROWS, AUDIO_EXP: AUDIO_ROWS}

    def pool_inputs(w):
        """What the pool check counts: the symbolic segments and eval prompts, or the audio manifest."""
        if DOMAIN[w.exp] == "audio":
            return dict(manifest=audio_manifest())
        return dict(
            segments=results("segments/symbolic/segments.csv", EXP),
            queries=results("segments/symbolic/eval_prompts.npz", EXP),
        )

    def query_job(exp):
        """The job that makes an experiment's queries: generation by its models, or planted copies."""
        return QUERY_JOBS[DOMAIN[exp], bool(PLANTED)]

    def query_inputs(exp):
        """What :func:`query_job` reads: the planted copies' sources, or the models and their prompts."""
        if DOMAIN[exp] == "symbolic":
            if PLANTED:
                return dict(segments=results("segments/symbolic/train.npz", EXP), manifest=corpus_manifest())
            return dict(
                model=results("models/symbolic/m0.pt", EXP), eval=results("segments/symbolic/eval_prompts.npz", EXP)
            )
        tokens = dict(
            tokens=results("tokens/tokens.npz", AUDIO_EXP), tokenizers=results("tokens/tokenizers.npz", AUDIO_EXP)
        )
        if PLANTED:
            return dict(manifest=audio_manifest(), midi_manifest=corpus_manifest(), **tokens)
        return dict(tokens, models=[results(f"models/{s}/m0.pt", AUDIO_EXP) for s in AUDIO_STAGES])

    def planted_inputs(w):
        """A row's planted-retrieval inputs: the matrix its homogeneity reads, the planted queries, its
        homogeneity; the symbolic rows also the segments (the plants' sources).
        """
        stage0 = "symbolic" if DOMAIN[w.exp] == "symbolic" else AUDIO_STAGES[0]
        out = dict(
            scores=row_scores(w),
            queries=results(f"queries/{stage0}/queries.npz", w.exp),
            homogeneity=results(f"homogeneity/{w.stage}/{w.method}.json", w.exp),
        )
        if DOMAIN[w.exp] == "symbolic":
            out["segments"] = results("segments/symbolic/train.npz", EXP)
        return out

    def planted_settings_of(w):
        """The planted tables' K values and main K (audio: the domain, for its channel map)."""
        audio = {"domain": "audio"} if DOMAIN[w.exp] == "audio" else {}
        return dict(ks=PLANTED["ks"], main_k=config["homogeneity"]["main_k"], **audio)

    def row_outputs(exp, kind):
        """Per-row JSONs of an experiment's report, in its rows' order ("method/stage" or "method")."""
        if DOMAIN[exp] == "audio":
            return audio_row_outputs(kind)
        return stage_outputs(kind)

    def report_inputs(w):
        """Everything an experiment's report reads, named as the ``aria report`` options."""
        exp, domain = w.exp, DOMAIN[w.exp]
        out = dict(
            diagnostics=row_outputs(exp, "diagnostics"),
            homogeneity=row_outputs(exp, "homogeneity"),
            homogeneity_residual=row_outputs(exp, "homogeneity_residual") if ANALYSIS["residual"] else [],
            alignment=row_outputs(exp, "alignment") if ANALYSIS["residual"] else [],
            sensitivity=sweep_outputs(exp),
            selfinfluence=selfinfluence_outputs(exp),
            unlearning_compare=compare_outputs(exp),
            cards=results("cards", exp),
            **({"planted": row_outputs(exp, "planted")} if PLANTED else {}),
        )
        if domain == "audio":
            out.update(
                lds=audio_lds_outputs(),
                lds_references=lds_references(exp, sorted({row_stage(k) for k in LDS_AUDIO_ROWS})),
                manifest=audio_manifest(),
                queries_audio=results("queries/audio", exp),
                pool=results("corpus/pool.json", exp),
                dropped=results("corpus/dropped.csv", exp),
                feature_failures=[
                    results(f"evidence/audio_features/shard{i}_skipped.csv", exp) for i in range(AUDIO_SHARDS)
                ],
                segments_csv=[results(f"segments/{s}/segments.csv", exp) for s in AUDIO_STAGES],
                queries=[results(f"queries/{s}/queries.npz", exp) for s in AUDIO_STAGES],
            )
        else:
            out.update(
                lds=stage_outputs("lds") if LDS_SYMBOLIC else [],
                lds_references=lds_references(exp, ["symbolic"]) if LDS_SYMBOLIC else [],
                pool=results("segments/symbolic/pool.json", exp),
                manifest=corpus_manifest(),
                dropped=symbolic_dropped(),
                segments_csv=results("segments/symbolic/segments.csv", exp),
                queries=results("queries/symbolic/queries.npz", exp),
            )
        return out

    def report_settings(w):
        """The report's rows, labels, main K, verdict rules and the reference seed of its tables."""
        exp, domain = w.exp, DOMAIN[w.exp]
        rows = ROWS[exp]
        lds_rows = LDS_AUDIO_ROWS if domain == "audio" else (SYMBOLIC_ROWS if LDS_SYMBOLIC else [])
        labels = report_labels(rows)
        return dict(
            experiment=config["experiment"] if domain == "symbolic" else AUDIO.get("experiment"),
            main_k=config["homogeneity"]["main_k"],
            rows=rows,
            domain=domain,
            stages=["symbolic"] if domain == "symbolic" else AUDIO_STAGES,
            device=config["device"],
            verdict=ANALYSIS["verdict"],
            reference_seed=config["seeds"]["null_groups"],
            selfinfluence_reason=SELF.get("reason", ""),
            **({"root": audio_root()} if domain == "audio" else {}),
            **({"labels": labels} if labels else {}),
            **({"lds_rows": lds_rows} if lds_rows else {}),
        )

    # Each job's --params: the config values it depends on, and nothing else, so that a change reruns
    # exactly the jobs that read it (Snakemake's params trigger compares the whole command line).
    JOB_SETTINGS = {
        "demo-collection": demo_collection_settings,
        "symbolic-segments": lambda w: dict(
            root=corpus_root(),
            block_tokens=config["segments"]["block_tokens"],
            prompt_tokens=config["queries"]["prompt_tokens"],
            **({"tokenizer": config["tokenizer"]} if "tokenizer" in config else {}),
        ),
        "check-pool": pool_check_settings,
        "audio-demo-corpus": lambda w: dict(
            seed=config["seeds"]["corpus"], sr=AUDIO.get("sr"), **AUDIO.get("corpus", {}).get("demo", {})
        ),
        "audio-import": lambda w: dict(
            sr=AUDIO.get("sr"), **{k: v for k, v in AUDIO.get("corpus", {}).items() if k != "demo"}
        ),
        "audio-features": audio_features_settings,
        "audio-tokenize": lambda w: dict(
            seed=config["seeds"]["train"], root=audio_root(), sr=AUDIO.get("sr"), **AUDIO.get("tokenizers", {})
        ),
        "audio-segments": lambda w: dict(**TOKENIZER_CFG),
        "symbolic-features": lambda w: dict(block_tokens=config["segments"]["block_tokens"]),
        "dattri-benchmark": lambda w: {"n_train": dattri_io.N_TRAIN, "n_test": dattri_io.N_TEST, **DATTRI},
        "symbolic-planted-queries": lambda w: dict(
            seed=config["seeds"]["queries"],
            block_tokens=config["segments"]["block_tokens"],
            root=corpus_root(),
            planted=PLANTED,
        ),
        "symbolic-queries": lambda w: dict(
            seed=config["seeds"]["queries"], block_tokens=config["segments"]["block_tokens"], **config["queries"]
        ),
        "audio-planted-queries": lambda w: dict(
            seed=config["seeds"]["queries"],
            root=audio_root(),
            midi_root=corpus_root(),
            planted=PLANTED,
            **TOKENIZER_CFG,
        ),
        "audio-queries": lambda w: dict(seed=config["seeds"]["queries"], **TOKENIZER_CFG, **AUDIO.get("queries", {})),
        "train": model_settings,
        "project": projection_run_settings,
        "kfac-covariance": lambda w: dict(batch_size=stage_cfg(w)["projection"]["batch_size"], device=config["device"]),
        "project-factored": factored_settings,
        # the diffusion experiment's Grad-Cos (no {method} wildcard) has no run parameters
        "score": lambda w: method_run_settings(w) if hasattr(w, "method") else dict(row_chunk=4096),
        "tracklevel": tracklevel_settings,
        "embed-corpus": lambda w: dict(sr=AUDIO.get("sr"), root=audio_root()),
        "embed-baseline": lambda w: dict(sr=AUDIO.get("sr"), window_s=10.0, hop_s=1.0),
        "null": null_settings,
        "homogeneity": homogeneity_settings,
        "residual": residual_settings,
        "sweep-point": sweep_settings,
        "planted": planted_settings_of,
        "lds-retrain": lds_retrain_settings,
        "lds-ground-truth": lambda w: dict(
            seed=config["seeds"]["lds"],
            stage=w.stage,
            **{k: lds_cfg(w)[k] for k in ("alpha", "runs", "recipe", "init")},
        ),
        "lds-references": lambda w: dict(n_boot=lds_cfg(w)["n_boot"], seed=config["seeds"]["lds"], stage=w.stage),
        "lds": lambda w: dict(n_boot=lds_cfg(w)["n_boot"], seed=config["seeds"]["lds"]),
        "unlearning-fisher": unlearning_fisher_settings,
        "unlearning-scores": unlearning_chunk_settings,
        "unlearning-selfinfluence": selfinfluence_settings,
        "report": report_settings,
        **DIFF_SETTINGS,
    }

    def job_settings(name, w, fn=None):
        """Job ``name``'s settings for the wildcards ``w``: its settings dataclass
        (:class:`~aria.workflow.jobs.base.Settings`), checked when the DAG is built; None: the job takes none.
        """
        from aria.workflow.jobs import all_jobs

        fn, cls = fn or JOB_SETTINGS.get(name), all_jobs()[name].settings
        if fn is None and cls is not None:
            raise ValueError(f"aria {name} takes settings ({cls.__name__}), but the plan's JOB_SETTINGS has none")
        if fn is not None and cls is None:
            raise ValueError(f"the plan's JOB_SETTINGS gives settings to aria {name}, which takes none")
        return None if fn is None else cls.from_dict(fn(w), job=name)

    def aria_job(name, *, wildcards=(), extra=None, settings_of=None):
        """A rule's params (``params: **aria_job(name)``): ``job``, the command line of ``aria <name>``
        (the rule's shell is :data:`ARIA`), and ``settings``, what Snakemake's params trigger compares.

        Every named input and output of the rule is the job option of the same name (output ``out_csv``
        is ``--out-csv``); unnamed inputs are dependencies the job does not read by path. ``--params``
        is :func:`job_settings`; the ``wildcards`` named are options too; ``extra`` gives further
        options: a dict, or a function ``extra(w, input)`` returning one. ``settings_of(w)`` replaces
        the job's ``JOB_SETTINGS`` entry, for a rule that runs a shared job on other data (the diffusion
        experiment's homogeneity and Aria report). A name that is no option of the job is an error when
        the DAG is built, naming the rule's job.
        """

        def job(w, input, output):
            opts = {**dict(input.items()), **dict(output.items())}
            settings = job_settings(name, w, settings_of)
            if settings is not None:
                opts["params"] = settings
            opts.update({k: getattr(w, k) for k in wildcards})
            if extra is not None:
                opts.update(extra(w, input) if callable(extra) else extra)
            return command_line(name, opts)

        def settings(w):
            # Snakemake's params trigger compares only params that do not read the inputs or outputs,
            # so the settings (and the wildcard and extra options) are a param of their own
            fixed = {k: getattr(w, k) for k in wildcards}
            if extra is not None and not callable(extra):
                fixed.update(extra)
            given = job_settings(name, w, settings_of)
            return json.dumps(dict(settings=None if given is None else given.to_dict(), **fixed), sort_keys=True)

        return {"job": job, "settings": settings}

    return Plan(
        {k: v for k, v in locals().items() if not k.startswith("_") and k != "config"},
        ARIA=ARIA,
        ARIA_DASK=ARIA_DASK,
        ARIA_OMP=ARIA_OMP,
        ARIA_WARN=ARIA_WARN,
        QUERY_JOBS=QUERY_JOBS,
        one_of=one_of,
        template_params=template_params,
    )
