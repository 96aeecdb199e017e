# Validation and helpers shared by every stage. Conventions:
# - every rule writes its log to {RESULTS}/logs/<rule>/...; expensive rules
#   also write a benchmark to {RESULTS}/benchmarks/<rule>/...
# - each rule passes only the config values it depends on through `params`,
#   so changing one method's parameter reruns that method's jobs and nothing else.
import json
import os

from aria.config import validate_config
from aria.symbolic.corpus import quotas

validate_config(config, source="config (config.yaml and --config/--configfile overrides)")

EXP = config["experiment"]
RESULTS = f"results/{EXP}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ENV = "../envs/aria.yaml"

# Attribution runs per (experiment, stage): the symbolic experiment has one stage,
# "symbolic"; the model, projection and scoring rules are shared by every stage
# and take their settings from STAGES[(exp, stage)].
STAGES = {
    (EXP, "symbolic"): {
        "methods": config["methods"],
        "projection": config["projection"],
        "model": config["model"],
        "seq_len": config["segments"]["block_tokens"],
    },
}
METHODS = list(config["methods"]["run"])

AUDIO = config.get("audio", {})
ARES = f"results/{AUDIO.get('experiment', 'audio')}"
AUDIO_SHARDS = AUDIO.get("features", {}).get("n_shards", 1)
AUDIO_STAGES = ("semantic", "coarse", "fine")
if AUDIO:
    from aria.audio.stages import AudioVocab

    TOKENIZER_CFG = dict(sr=AUDIO["sr"], **AUDIO["tokenizers"],
                         windows={s: AUDIO["stages"][s]["window_s"] for s in AUDIO_STAGES})
    _t = AUDIO["tokenizers"]
    AUDIO_VOCAB = AudioVocab(n_cond=_t["cond"]["n_cond"], cond_size=_t["cond"]["cond_size"],
                             sem_size=_t["semantic"]["n_codes"], sem_rate=1.0 / _t["semantic"]["hop_s"],
                             code_size=_t["acoustic"]["n_codes"],
                             ac_rate=AUDIO["sr"] / _t["acoustic"]["hop_length"],
                             window_s=tuple(sorted(TOKENIZER_CFG["windows"].items())))
    for _s in AUDIO_STAGES:
        STAGES[(AUDIO["experiment"], _s)] = {
            "methods": AUDIO["stages"][_s]["methods"],
            "projection": AUDIO["stages"][_s]["projection"],
            "model": dict(AUDIO["model"], vocab_size=AUDIO_VOCAB.size),
            "seq_len": AUDIO_VOCAB.seq_len(_s),
            "pretrained": AUDIO["stages"][_s].get("checkpoints", []),
        }
# rows of the audio report ("method/stage"): every (method, stage), then the baselines
AUDIO_ROWS = [f"{m}/{s}" for m in ("trak", "gradcos", "tracin", "graddot") for s in AUDIO_STAGES
              if AUDIO and m in AUDIO["stages"][s]["methods"]["run"]]
AUDIO_ROWS += [f"{e}{v}/baseline" for e in AUDIO.get("baselines", []) for v in ("", "_aaa")]
AUDIO_TARGETS = [f"{ARES}/report.html", f"{ARES}/summary.json"] if AUDIO else []


wildcard_constraints:
    exp="|".join(sorted({e for e, _ in STAGES})),
    stage="|".join(sorted({s for _, s in STAGES} | ({"baseline"} if AUDIO else set()))),
    method="[a-z_]+",
    m=r"\d+",
    c=r"\d+",
    shard=r"\d+",


def audio_manifest():
    """Every audio corpus kind ends in this manifest (user corpora: absolute paths, filtered)."""
    return f"{ARES}/corpus/manifest.csv"


def audio_root():
    return f"{ARES}/corpus"


def audio_row_outputs(kind):
    """Per-row JSONs of the audio report, in AUDIO_ROWS order ("method/stage")."""
    out = []
    for key in AUDIO_ROWS:
        method, stage = key.split("/")
        out.append(os.path.join(ARES, kind, stage, f"{method}.json"))
    return out


def audio_import_inputs():
    c = AUDIO.get("corpus", {})
    if c.get("kind") == "audio_folder":
        return [c["audio_folder"]["manifest"]]
    if c.get("kind") == "fma":
        return [c["fma"]["tracks_csv"]]
    return []


def stage_cfg(w):
    return STAGES[(w.exp, w.stage)]


def n_checkpoints(cfg):
    run = cfg["methods"]["run"]
    return cfg["methods"]["tracin"]["checkpoints"] if "tracin" in run else 1


def ensemble_size(cfg):
    run = cfg["methods"]["run"]
    return cfg["methods"]["trak"]["ensemble"] if "trak" in run else 1


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


def method_feature_stores(w):
    """The projected-feature stores a scoring method reads (SPEC §2)."""
    cfg = stage_cfg(w)
    n_c = n_checkpoints(cfg)
    store = "results/{}/features/{}/m{}_c{}.zarr"
    if w.method == "trak":
        return [store.format(w.exp, w.stage, m, n_c) for m in range(ensemble_size(cfg))]
    if w.method == "tracin":
        return [store.format(w.exp, w.stage, 0, c) for c in range(1, n_c + 1)]
    return [store.format(w.exp, w.stage, 0, n_c)]


def method_params(w):
    p = dict(stage_cfg(w)["methods"].get(w.method, {}))
    p.pop("ensemble", None)  # expressed through the input stores
    p.pop("checkpoints", None)
    return jparams(row_chunk=config.get("score_row_chunk", 4096), **p)


def model_params(w):
    cfg = stage_cfg(w)
    pretrained = cfg.get("pretrained", [])
    if int(w.m) < len(pretrained):  # the user's own checkpoint for this ensemble member
        return jparams(pretrained=pretrained[int(w.m)])
    return jparams(seed=config["seeds"]["train"] + int(w.m), n_checkpoints=n_checkpoints(cfg),
                   block_tokens=cfg["seq_len"], **cfg["model"])


def projection_params(w):
    return jparams(checkpoint=int(w.c), seed=config["seeds"]["projection"], device=config["device"],
                   **stage_cfg(w)["projection"])


def stage_outputs(kind, exp=EXP, stage="symbolic"):
    """Per-method outputs of one (experiment, stage): diagnostics or homogeneity JSONs."""
    methods = STAGES[(exp, stage)]["methods"]["run"]
    return [f"results/{exp}/{kind}/{stage}/{m}.json" for m in methods]
