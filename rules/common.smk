# Validation and helpers shared by every stage. Conventions:
# - every rule writes its log to {RESULTS}/logs/<rule>/...; expensive rules
#   also write a benchmark to {RESULTS}/benchmarks/<rule>/...
# - each rule passes only the config values it depends on through `params`,
#   so changing one method's parameter reruns that method's jobs and nothing else.
import json

from aria.config import validate_config
from aria.corpus import quotas

validate_config(config, source="config (config.yaml and --config/--configfile overrides)")

RESULTS = f"results/{config['experiment']}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ENV = "../envs/aria.yaml"
METHODS = list(config["methods"]["run"])
N_CHECKPOINTS = config["methods"]["tracin"]["checkpoints"] if "tracin" in METHODS else 1
ENSEMBLE = config["methods"]["trak"]["ensemble"] if "trak" in METHODS else 1


def jparams(**kw):
    """Parameters of a job as one JSON string (compared by Snakemake's params trigger)."""
    return json.dumps(kw, sort_keys=True)


def demo_collection_params(w):
    d = config["corpus"]["demo"]
    cols = list(d["collections"])
    i = cols.index(w.collection)
    n_pieces = d["collections"][w.collection]
    n_eval = quotas(d["n_eval"], len(cols))[i]
    return jparams(seed=config["seeds"]["corpus"], index=i, collection=w.collection,
                   n_pieces=n_pieces, n_eval=n_eval, max_duration_s=d["max_duration_s"])


def corpus_manifest():
    if config["corpus"]["kind"] == "demo":
        return f"{RESULTS}/corpus/manifest.csv"
    return config["corpus"]["midi_folder"]["manifest"]


def corpus_files():
    """MIDI files of a user corpus, so editing one reruns what depends on it."""
    if config["corpus"]["kind"] == "demo":
        return []
    from aria.io.tables import read_manifest

    mf = config["corpus"]["midi_folder"]
    return list(read_manifest(mf["manifest"], root=mf["root"])["abspath"])


def corpus_root():
    if config["corpus"]["kind"] == "demo":
        return f"{RESULTS}/corpus"
    return config["corpus"]["midi_folder"]["root"]


def feature_store(m, c):
    return f"{RESULTS}/features/m{m}_c{c}.zarr"


def method_feature_stores(method):
    """The projected-feature stores a scoring method reads (SPEC §2)."""
    if method == "trak":
        return [feature_store(m, N_CHECKPOINTS) for m in range(ENSEMBLE)]
    if method == "tracin":
        return [feature_store(0, c) for c in range(1, N_CHECKPOINTS + 1)]
    return [feature_store(0, N_CHECKPOINTS)]


def method_params(method):
    p = dict(config["methods"].get(method, {}))
    p.pop("ensemble", None)  # expressed through the input stores
    p.pop("checkpoints", None)
    return jparams(row_chunk=config.get("score_row_chunk", 4096), **p)


def model_params(m):
    mc = config["model"]
    return jparams(seed=config["seeds"]["train"] + int(m), n_checkpoints=N_CHECKPOINTS,
                   block_tokens=config["segments"]["block_tokens"], **mc)
