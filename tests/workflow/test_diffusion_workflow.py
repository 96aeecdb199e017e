"""The diffusion experiment end to end (issue 33): tests/data/config_diffusion_tiny.yaml, the tiny audio
corpus, a one-block latent DiT, unlearning, Grad-Cos, the embedding baselines, the self-influence grid
and the report. Each test checks the run's files against a computation of its own."""

from __future__ import annotations

import csv
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, shared_run

CONFIG = REPO / "tests" / "data" / "config_diffusion_tiny.yaml"
EXP = "tiny_diffusion"
TARGET = f"results/{EXP}/report.md"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    def build(wd):
        shutil.copy(CONFIG, wd / "config.yaml")
        run_snakemake(wd, "--cores", "2", TARGET)

    return shared_run(tmp_path_factory, "diffusion", build)


def _cfg():
    return yaml.safe_load(CONFIG.read_text())


def _d(run, path):
    return run / "results" / EXP / "diffusion" / path


def test_training_clips_decode_to_the_source_audio(run):
    """Each clip's latents decode to its crop of the source track, resampled: the latents, their
    padding mask and the timing numbers describe the audio they came from."""
    from aria.audio.latents import FrameDCT
    from aria.io.audio import load_audio
    from aria.io.tables import read_manifest, read_npz

    tr, c = read_npz(_d(run, "data/train.npz")), read_npz(_d(run, "data/codec.npz"))
    codec = FrameDCT(frame=int(c["frame"]), sr=int(c["sr"]), scale=c["scale"])
    man = read_manifest(
        run / "results" / "tiny_audio" / "corpus" / "manifest.csv", root=run / "results" / "tiny_audio" / "corpus"
    )
    paths = dict(zip(man["track_id"].astype(str), man["abspath"]))
    cfg = _cfg()["diffusion"]["clips"]
    assert tr["x0"].shape[2] == int(np.ceil(cfg["max_s"] * codec.frames_per_second))
    for j, tid in enumerate(tr["ids"]):
        y = load_audio(paths[str(tid)], sr=codec.sr)
        start, n = int(round(tr["seconds_start"][j] * codec.sr)), int(round(tr["seconds_total"][j] * codec.sr))
        crop = y[start : start + n]
        f = int(tr["mask"][j].sum())
        assert f == codec.n_frames(n)
        assert not tr["mask"][j, f:].any() and np.all(tr["x0"][j, :, f:] == 0)
        assert cfg["min_s"] - 1e-9 <= tr["seconds_total"][j] <= cfg["max_s"] + 1e-9
        back = codec.decode(tr["x0"][j, :, :f].astype(np.float64), n)
        # float32 latents: a relative error of ~6e-8 per coefficient, orthonormal transform
        np.testing.assert_allclose(back, crop, atol=1e-5 * max(1.0, np.abs(crop).max()))


def test_query_audio_is_the_generated_latents(run):
    """A query's wav is its latents decoded (16-bit PCM), and its latents are zero past the asked length."""
    from aria.audio.latents import FrameDCT
    from aria.io.audio import load_audio
    from aria.io.tables import read_npz

    qu, c = read_npz(_d(run, "queries/queries.npz")), read_npz(_d(run, "data/codec.npz"))
    codec = FrameDCT(frame=int(c["frame"]), sr=int(c["sr"]), scale=c["scale"])
    assert len(qu["ids"]) == _cfg()["diffusion"]["clips"]["n_prompts"]
    for j, q in enumerate(qu["ids"]):
        f = int(qu["mask"][j].sum())
        assert f == int(np.ceil(qu["seconds_total"][j] * codec.frames_per_second - 1e-9))
        assert np.all(qu["x0"][j, :, f:] == 0)
        n = int(round(qu["seconds_total"][j] * codec.sr))
        y = codec.decode(qu["x0"][j, :, :f].astype(np.float64), n)
        y = y / max(1.0, np.abs(y).max())
        wav = load_audio(_d(run, f"queries/audio/{q}.wav"), sr=None)
        assert len(wav) == n
        np.testing.assert_allclose(wav, y, atol=2 / 2**15)


def test_unlearning_scores_match_a_direct_computation(run):
    """τ as stored equals L(z; θ′) − L(z; θ₀) computed here from the spec alone: θ′ = θ₀ + η F⁻¹ g(ẑ) on
    the transformer blocks (g by autograd, the query's padding masked; F the stored Fisher floored at
    floor x its mean over the blocks), every loss with its item's own seeded draws and the training
    losses unmasked (the 'mixed' strategy); every query column in its own order."""
    from aria.attribution.unlearning import example_generator
    from aria.io.checkpoints import load_model
    from aria.io.stores import open_scores
    from aria.io.tables import load_torch, read_npz
    from aria.models.diffusion import VLoss, latent_batches

    cfg = _cfg()
    u, seed = cfg["diffusion"]["unlearning"], cfg["seeds"]["unlearning"]
    assert u.get("mask", "mixed") == "mixed" and u.get("group", "all") == "all" and u.get("steps", 1) == 1
    model = load_model(_d(run, "model.pt"))[0].double().eval()
    tr, qu = read_npz(_d(run, "data/train.npz")), read_npz(_d(run, "queries/queries.npz"))
    S, rows, cols = open_scores(_d(run, "scores/unlearning.zarr"))
    S = np.asarray(S[:], dtype=np.float64)
    assert list(rows) == list(tr["ids"]) and list(cols) == list(qu["ids"])
    names = [n for n, _ in model.named_parameters() if re.match(r"dit\.transformer_blocks\.\d+\.", n)]
    params = [dict(model.named_parameters())[n] for n in names]
    F = load_torch(_d(run, "unlearning/fisher_full.pt"))["fisher"]
    ref = sum(float(F[n].double().sum()) for n in names) / sum(F[n].numel() for n in names)
    Finv = [1.0 / torch.clamp(F[n].double(), min=u.get("floor", 1e-3) * ref) for n in names]
    loss = VLoss(u["timesteps"])

    def batch(data, j, use_mask):
        one = {k: v[j : j + 1] for k, v in data.items()}
        (b,) = latent_batches(one, ids=data["ids"][j : j + 1], use_mask=use_mask, dtype=torch.float64)
        return b, example_generator(seed, str(data["ids"][j]))

    def train_losses():
        with torch.no_grad():
            return np.array([float(loss(model, *batch(tr, i, False))[0]) for i in range(len(tr["ids"]))])

    before = train_losses()
    theta0 = [p.detach().clone() for p in params]
    for q in range(len(qu["ids"])):
        g = torch.autograd.grad(loss(model, *batch(qu, q, True))[0], params)
        with torch.no_grad():
            for p, gi, fi in zip(params, g, Finv):
                p.add_(u["lr"] * gi * fi)
        tau = train_losses() - before
        with torch.no_grad():
            for p, p0 in zip(params, theta0):
                p.copy_(p0)
        # float64 throughout; the store keeps float32 (relative 6e-8), and the two computations sum in
        # different orders (relative ~1e-13 of the losses, ~1e-9 of τ)
        np.testing.assert_allclose(S[:, q], tau, rtol=1e-5, atol=1e-6 * np.abs(tau).max())


def _table(run, name):
    path = next((run / "results" / EXP / "report" / "tables").glob(f"*_{name}.csv"))
    lines = path.read_text().splitlines()[1:]  # the title comment
    return list(csv.DictReader(lines))


def test_report_has_the_grid_and_the_comparison(run):
    """One grid row per point (the product of the grid's lists, the configured setting among them and
    marked chosen), one comparison row per other method, with Pearson r recomputed from the stores."""
    from aria.io.stores import open_scores
    from aria.io.tables import read_json

    cfg = _cfg()["diffusion"]
    grid = _table(run, "self_influence_grid")
    g = cfg["selfinfluence"]["grid"]
    assert len(grid) == len(g["lr"]) * len(g["steps"]) * len(g["group"]) * len(g["mask"])
    chosen = [r for r in grid if r["chosen"] == "✓"]
    assert len(chosen) == 1 and chosen[0]["setting"].startswith("lr 1e-06, 1 step, all, mask mixed")
    summary = read_json(run / "results" / EXP / "summary.json")
    assert summary["chosen"] == {"lr": 1e-6, "steps": 1, "group": "all", "mask": "mixed"}
    for d in summary["selfinfluence"]:
        assert 1 <= d["median_rank"] <= d["n"]
    U = np.asarray(open_scores(_d(run, "scores/unlearning.zarr"))[0][:])
    comp = {c["other"]: c for c in read_json(_d(run, "compare.json"))["comparisons"]}
    assert set(comp) == {"gradcos/dit", "aisfx/baseline", "aisfx_aaa/baseline"}
    for key, c in comp.items():
        name = key.split("/")[0]
        V = np.asarray(open_scores(_d(run, f"scores/{name}.zarr"))[0][:])
        r = [np.corrcoef(U[:, q], V[:, q])[0, 1] for q in range(U.shape[1])]
        np.testing.assert_allclose(c["pearson"], r, rtol=1e-9, atol=1e-12)
    assert len(_table(run, "test_to_train_comparison")) == 3
    assert summary["numerics"]["ratio"] < 1e-6  # float64 losses: τ's round-off far below its spread
    assert sorted(p.name for p in (run / "results" / EXP / "report" / "figures").glob("*.png")) == [
        "01_self_influence_grid.png",
        "02_test_to_train_comparison.png",
    ]


def test_aria_on_top_of_the_diffusion_rows(run):
    """The evidence pool is the training clips as the DiT saw them (their latents decoded); each row's
    homogeneity ranks its own store's column (brute force here) within that pool; the null is over the
    clips; the Aria summary's verdicts are the diagnostics' verdicts; every generated query has a card
    with its player and the clips' players; the diffusion report carries the table."""
    from aria.evaluation.reliability import verdict
    from aria.io.audio import load_audio
    from aria.io.layouts import read_evidence
    from aria.io.stores import open_scores
    from aria.io.tables import read_json, read_manifest, read_npz

    tr, qu = read_npz(_d(run, "data/train.npz")), read_npz(_d(run, "queries/queries.npz"))
    codec = _codec(run)
    ev = read_evidence(_d(run, "evidence/features.npz"))
    assert sorted(ev["ids"]) == sorted(tr["ids"])  # every tiny clip yields features
    man = read_manifest(_d(run, "evidence/manifest.csv"))
    clips = man[man["split"] == "train"].set_index("track_id")
    for j, tid in enumerate(tr["ids"]):
        f = int(tr["mask"][j].sum())
        y = codec.decode(tr["x0"][j, :, :f].astype(np.float64), int(round(tr["seconds_total"][j] * codec.sr)))
        wav = load_audio(clips.loc[tid, "abspath"], sr=None)
        np.testing.assert_allclose(wav, y / max(1.0, np.abs(y).max()), atol=2 / 2**15)
    # each prompt's held-out track is listed with its genre (the confounds' query genre)
    assert set(qu["track_ids"]) <= set(man.loc[man["split"] == "eval", "track_id"])
    assert read_json(_d(run, "evidence/null.json"))["n_pool"] == len(tr["ids"])

    K = _cfg()["homogeneity"]["main_k"]
    summary = read_json(_d(run, "aria/summary.json"))
    assert list(summary["methods"]) == ["unlearning/dit", "gradcos/dit", "aisfx/baseline", "aisfx_aaa/baseline"]
    for key, m in summary["methods"].items():
        row = key.replace("/", "-")
        hom = read_json(_d(run, f"homogeneity/{row}.json"))
        S, rows, cols = open_scores(_d(run, f"scores/{key.split('/')[0]}.zarr"))
        S = np.asarray(S[:], dtype=np.float64)
        assert hom["query_ids"] == list(cols)
        for q, top in enumerate(hom["by_k"][str(K)]["top_ids"]):
            want = np.sort(S[:, q])[::-1][:K]
            got = np.array([S[list(rows).index(t), q] for t in top])
            np.testing.assert_array_equal(got, want)  # the K best clips (ties in any order)
        assert m["verdict"]["verdict"] == verdict(read_json(_d(run, f"diagnostics/{row}.json")))["verdict"]
        assert (_d(run, f"residual/{row}.zarr")).is_dir() and (_d(run, f"alignment/{row}.json")).is_file()

    index = read_json(_d(run, "cards/index.json"))
    assert [e["query_id"] for e in index] == list(qu["ids"])
    for e in index:
        assert (_d(run, "cards") / e["player"]).is_file() and (_d(run, "cards") / e["card"]).is_file()
    for mp3 in (_d(run, "cards") / "media" / "tracks").glob("*.mp3"):  # the clips, not their whole tracks
        j = list(tr["ids"]).index(mp3.stem)
        assert abs(len(load_audio(mp3, sr=codec.sr)) / codec.sr - tr["seconds_total"][j]) < 0.1

    aria_md = _d(run, "aria/report.md").read_text()
    assert "clip-level matrix" in aria_md and "segments x queries" not in aria_md  # its own rows' notes
    assert "max cosine over 2 s windows at 1 s hop" in aria_md
    md = (run / "results" / EXP / "report.md").read_text()
    assert "## Aria on top" in md and "diffusion/aria/report.html" in md
    table = _table(run, "aria_on_top")
    want = [m["verdict"]["verdict"] or f"no verdict ({m['verdict']['flag']})" for m in summary["methods"].values()]
    assert [r["verdict"] for r in table] == want


def test_noise_diagnostic_compares_a_second_dit(run):
    """Unlearning and Grad-Cos are scored again with a DiT trained with seed seeds.train + 1 (a
    different model: its weights differ), and each row's replica agreement is the median Spearman
    over queries of the two stores' columns, recomputed here with scipy; the baselines have none."""
    from scipy.stats import spearmanr

    from aria.io.checkpoints import read_checkpoint
    from aria.io.stores import open_scores
    from aria.io.tables import read_json

    a, b = read_checkpoint(_d(run, "model.pt")), read_checkpoint(_d(run, "replica1/model.pt"))
    assert b["seed"] == a["seed"] + 1 == _cfg()["seeds"]["train"] + 1
    assert any(not torch.equal(a["final"][k], b["final"][k]) for k in a["final"])
    for name in ("unlearning", "gradcos"):
        A, rows, cols = open_scores(_d(run, f"scores/{name}.zarr"))
        B, rows_b, cols_b = open_scores(_d(run, f"replica1/scores/{name}.zarr"))
        assert list(rows) == list(rows_b) and list(cols) == list(cols_b)
        A, B = np.asarray(A[:], dtype=np.float64), np.asarray(B[:], dtype=np.float64)
        rho = [spearmanr(A[:, q], B[:, q])[0] for q in range(A.shape[1])]
        rep = read_json(_d(run, f"diagnostics/{name}-dit.json"))["replica"]
        np.testing.assert_allclose(rep["spearman"]["q50"], np.median(rho), atol=1e-9)
        summary = read_json(run / "results" / EXP / "summary.json")["diagnostics"][f"{name}/dit"]
        assert summary["replica_spearman"] == rep["spearman"]["q50"]
    assert read_json(_d(run, "diagnostics/aisfx-baseline.json"))["replica"] is None


def _codec(run):
    from aria.audio.latents import FrameDCT
    from aria.io.tables import read_npz

    c = read_npz(_d(run, "data/codec.npz"))
    return FrameDCT(frame=int(c["frame"]), sr=int(c["sr"]), scale=c["scale"])


def test_a_method_parameter_reruns_only_its_jobs(run, tmp_path):
    """Changing Grad-Cos's projection width reruns Grad-Cos and what reads it, nothing else."""
    cfg = _cfg()
    cfg["diffusion"]["gradcos"]["k"] = 32
    alt = tmp_path / "alt.yaml"
    alt.write_text(yaml.safe_dump(cfg))
    res = run_snakemake(run, "-n", TARGET, "--configfile", str(alt))  # --configfile takes every word after it
    jobs = set(re.findall(r"^rule (\w+):", res.stdout, flags=re.M)) | set(
        re.findall(r"^localrule (\w+):", res.stdout, flags=re.M)
    )
    assert jobs == {"diffusion_gradients", "diffusion_gradcos", "diffusion_diagnostics", "diffusion_compare",
                    "diffusion_gradients_replica", "diffusion_gradcos_replica",
                    "diffusion_homogeneity", "diffusion_residual", "diffusion_cards", "diffusion_aria_report",
                    "diffusion_report"}, res.stdout[-3000:]  # fmt: skip
