"""README "Run on your own data", as a new user follows it (issue 28).

The commands are read from README itself and run as written, in a fresh folder that holds the
repository's workflow and venv (symlinks, so that ``.venv/bin/snakemake`` resolves as it does in
a clone), with ``.venv/bin`` *not* on PATH: README's run command used to stop in its first job
with ``aria: command not found`` (exit 127), since only the Makefile put the venv on PATH. A dry
run does not start jobs, so the run command is also run for real, up to the pool check (README's
line plus ``--until pool_check``: the first jobs that call ``aria``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import yaml
from conftest import REPO

BIN = Path(sys.executable).parent
LINKED = (".venv", "Snakefile", "rules", "profiles", "envs", "config.yaml")


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def readme_blocks(lang: str) -> list[str]:
    """The ``lang`` code blocks of README's "Run on your own data", in order."""
    return re.findall(rf"```{lang}\n(.*?)```", readme_section("Run on your own data"), re.S)


def user_folder(tmp_path: Path) -> Path:
    """A folder laid out like a clone: the workflow and the venv, nothing of a previous run."""
    wd = tmp_path / "clone"
    wd.mkdir()
    for name in LINKED:
        (wd / name).symlink_to(REPO / name)
    return wd


def user_env() -> dict:
    """The user's shell: no folder on PATH holds an ``aria`` (the venv is not activated)."""
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "aria").exists()]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "NUMBA_CACHE_DIR")}
    env["PATH"] = os.pathsep.join(path or ["/usr/bin", "/bin"])
    assert shutil.which("aria", path=env["PATH"]) is None
    return env


def run(line: str, wd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(line, shell=True, cwd=wd, env=env, capture_output=True, text=True)


def _piece(path: Path, seconds: float, *, seed: int) -> None:
    """A MIDI piece of eight notes a second for ``seconds``."""
    from aria.io.midi import write_midi
    from aria.symbolic.notes import make_notes

    rng = np.random.default_rng(seed)
    onsets = np.arange(int(seconds * 8)) / 8
    write_midi(path, make_notes(onsets, onsets + 0.1, rng.integers(55, 80, len(onsets)), 80))


def test_readme_own_data_commands_run_as_written_without_path(tmp_path):
    commands = [line.split("#")[0].strip() for line in readme_blocks("bash")[0].splitlines() if line.strip()]
    copy, run_line, plan_line = commands
    assert copy.startswith("cp config.yaml ") and plan_line == f"{run_line} -n"
    my = copy.split()[-1]
    wd, env = user_folder(tmp_path), user_env()

    # the user's corpus, where README's corpus snippet puts it: 3 held-out pieces (3 queries)
    snippet = yaml.safe_load(readme_blocks("yaml")[0])
    corpus = snippet["corpus"]
    root = wd / corpus["midi_folder"]["root"]
    root.mkdir(parents=True)
    rows = []
    pieces = [(45, "train"), (90, "train"), (30, "train"), (30, "train")] + [(20, "eval")] * 3
    for i, (seconds, split) in enumerate(pieces):
        _piece(root / f"p{i}.mid", seconds, seed=i)
        rows.append(dict(track_id=f"p{i}", path=f"p{i}.mid", genre="unknown", split=split))
    pd.DataFrame(rows).to_csv(wd / corpus["midi_folder"]["manifest"], index=False)

    res = run(copy, wd, env)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((wd / my).read_text())
    # what a copied config.yaml carries into the user's report: no demo reasoning
    assert "reason" not in (cfg.get("selfinfluence") or {})
    # "edit: experiment name, corpus, methods, ...": README's corpus snippet, K for a small pool
    cfg.update(experiment="mine", experiments=["symbolic"], corpus=corpus)
    cfg["homogeneity"].update(ks=[2, 3], main_k=2)
    (wd / my).write_text(yaml.safe_dump(cfg))

    res = run(plan_line, wd, env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "symbolic_segments" in res.stdout + res.stderr

    res = run(f"{run_line} --until pool_check", wd, env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "command not found" not in out
    pool = yaml.safe_load((wd / "results/mine/segments/symbolic/pool.json").read_text())
    assert pool["n_queries"] == 3
    # the pool check's warning reaches the console, not only its log
    assert "only 3 queries (analysis.verdict.min_queries = 10)" in res.stderr
    # the user's MIDI is used whole (the demo's 45 s cut is the demo corpus's only): the 90 s piece
    # gives about twice the segments of the 45 s one with the same note rate
    seg = pd.read_csv(wd / "results/mine/segments/symbolic/segments.csv")
    n = seg["track_id"].value_counts()
    assert n["p1"] >= 1.8 * n["p0"], n.to_dict()


def _tone(path: Path, seconds: float = 2.0, sr: int = 22050) -> None:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)


def test_audio_only_config_without_audio_section_or_readable_eval_tracks(tmp_path):
    """Two things a new user's audio-only run hit: no ``audio:`` section (a bare KeyError), and
    every eval track unreadable (a refusal that counted the wrong rows and kept no dropped table)."""
    wd, env = user_folder(tmp_path), user_env()
    tiny = yaml.safe_load((REPO / "tests" / "data" / "config_tiny.yaml").read_text())
    shared = {k: tiny[k] for k in ("device", "seeds", "homogeneity")}
    shared["homogeneity"] = {**shared["homogeneity"], "ks": [2], "main_k": 2}
    (wd / "bare.yaml").write_text(yaml.safe_dump({"experiments": ["audio"], **shared}))
    res = run(".venv/bin/snakemake --cores 1 --configfile bare.yaml -n", wd, env)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "invalid config bare.yaml:" in out and "config.yaml and" not in out
    assert "experiments lists 'audio' but the config has no audio section" in out
    assert "KeyError" not in out

    audio = wd / "audio"
    audio.mkdir()
    for i in range(3):
        _tone(audio / f"t{i}.wav")
    (audio / "e0.wav").write_bytes(b"RIFF\x00\x01\x00\x00WAVEjunk" + bytes(500))
    (audio / "e1.wav").write_bytes(b"")
    ids = ["t0", "t1", "t2", "e0", "e1"]
    pd.DataFrame(
        dict(track_id=ids, path=[f"{t}.wav" for t in ids], genre="g", split=["train"] * 3 + ["eval"] * 2)
    ).to_csv(audio / "manifest.csv", index=False)
    cfg = {"experiments": ["audio"], **shared, "audio": tiny["audio"]}  # no top-level experiment
    cfg["audio"]["corpus"] = {
        "kind": "audio_folder",
        "audio_folder": {"root": "audio", "manifest": "audio/manifest.csv"},
    }
    (wd / "mine.yaml").write_text(yaml.safe_dump(cfg))
    res = run(".venv/bin/snakemake --cores 1 --configfile mine.yaml --until audio_import", wd, env)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "Error in rule audio_import" in out
    assert "the eval split is empty: all 2 eval track(s) were left out (2 unreadable)" in out
    assert "kept 3 of 3 train and 0 of 2 eval tracks (5 listed)" in out
    # the dropped-tracks table outlives the refused job (Snakemake deletes outputs, not logs)
    exp = cfg["audio"]["experiment"]
    kept = wd / f"results/{exp}/logs/audio_import_dropped.csv"
    assert str(kept.relative_to(wd)) in out
    table = pd.read_csv(kept)
    assert table["track_id"].tolist() == ["e0", "e1"] and (table["split"] == "eval").all()
    assert table["reason"].str.startswith("unreadable").all()

    # the eval files replaced: the import goes through, its dropped table (empty now) an output too
    for t in ("e0", "e1"):
        _tone(audio / f"{t}.wav")
    res = run(".venv/bin/snakemake --cores 1 --configfile mine.yaml --until audio_import", wd, env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert pd.read_csv(wd / f"results/{exp}/corpus/manifest.csv")["track_id"].tolist() == ids
    assert pd.read_csv(wd / f"results/{exp}/corpus/dropped.csv").empty
