"""The second demo, profiles/examples/hf_miditok.yaml: a Hugging Face GPT-2 on miditok REMI tokens
through the symbolic workflow, and a save_pretrained folder adopted as an ensemble member.

References: miditok's own decode (the segments' and queries' notes), the tokenizer's vocabulary
(every id the run wrote), and the adopted folder's own forward pass.
"""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, shared_run

pytest.importorskip("miditok")
pytest.importorskip("transformers")

from aria.cli import main  # noqa: E402
from aria.io.checkpoints import load_model, read_checkpoint  # noqa: E402
from aria.io.tables import read_npz  # noqa: E402
from aria.symbolic.tokenize import track_segment_notes  # noqa: E402
from aria.symbolic.tokenizers import load_tokenizer  # noqa: E402

PROFILE = "profiles/examples/hf_miditok.yaml"


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    """The example profile's run, built once per session and shared by the workers (read-only)."""

    def build(wd):
        shutil.copytree(REPO / "profiles", wd / "profiles")
        run_snakemake(wd, "--cores", "2", "--configfile", PROFILE)

    return shared_run(tmp_path_factory, "hf_miditok", build)


def test_the_run_reads_and_writes_miditok_tokens_with_a_gpt2(hf_run):
    cfg = yaml.safe_load((REPO / PROFILE).read_text())
    res = hf_run / "results" / cfg["experiment"]
    tok = load_tokenizer(cfg["tokenizer"])
    seg = read_npz(res / "segments" / "symbolic" / "train.npz")
    assert json.loads(str(seg["tokenizer"])) == cfg["tokenizer"]
    real = seg["tokens"][seg["mask"]]
    assert real.max() < tok.vocab_size and not (real == tok.pad).any()
    # the channel features read the notes miditok decodes from the very tokens the model trained on
    feats = read_npz(res / "evidence" / "symbolic_features.npz")
    segs = [n for _, _, _, ss in track_segment_notes(seg, block=cfg["segments"]["block_tokens"]) for _, n in ss]
    assert list(feats["segment_ids"]) == list(seg["segment_ids"]) and len(segs) == len(seg["segment_ids"])
    assert sum(map(len, segs)) > 0
    ck = read_checkpoint(res / "models" / "symbolic" / "m0.pt")
    hf = ck["config"]["hf_config"]
    assert ck["model_class"] == "aria.models.causal_lm:CausalLM" and hf["model_type"] == "gpt2"
    assert hf["vocab_size"] == tok.vocab_size
    q = read_npz(res / "queries" / "symbolic" / "queries.npz")
    gen = q["tokens"][q["loss_mask"]]
    assert gen.max() < tok.vocab_size and not (gen == tok.pad).any()  # PAD is never sampled
    midi = sorted((res / "queries" / "midi").glob("*.mid"))
    assert midi and len(midi) <= len(q["query_ids"])
    summary = json.loads((res / "summary.json").read_text())
    assert list(summary["methods"]) == ["trak", "logra"]
    again = run_snakemake(hf_run, "--cores", "1", "--configfile", PROFILE, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_save_pretrained_folder_is_adopted_as_an_ensemble_member(hf_run, tmp_path):
    """model.kind hf + model.path: the train job checks the folder against the segments and writes
    the contract's checkpoint, which loads as the same model (the same logits)."""
    from aria.models.causal_lm import CausalLM, hf_config

    cfg = yaml.safe_load((REPO / PROFILE).read_text())
    res = hf_run / "results" / cfg["experiment"]
    tok = load_tokenizer(cfg["tokenizer"])
    torch.manual_seed(3)
    mine = CausalLM(
        hf_config=hf_config("gpt2", vocab_size=tok.vocab_size, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=64)
    )
    mine.lm.save_pretrained(tmp_path / "mine")
    out = tmp_path / "m0.pt"
    params = json.dumps({"pretrained": str(tmp_path / "mine")})
    segments = str(res / "segments" / "symbolic" / "train.npz")
    assert main(["train", "--params", params, "--segments", segments, "--out", str(out)]) == 0
    model, _ = load_model(out)
    t = torch.as_tensor(read_npz(segments)["tokens"][:3])
    with torch.no_grad():
        np.testing.assert_array_equal(model.eval()(t).numpy(), mine.eval()(t).numpy())
    # a folder whose vocabulary is smaller than the tokens is refused, naming it
    small = CausalLM(hf_config=hf_config("gpt2", vocab_size=50, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=64))
    small.lm.save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="small: model vocabulary"):
        main(
            [
                "train",
                "--params",
                json.dumps({"pretrained": str(tmp_path / "small")}),
                "--segments",
                segments,
                "--out",
                str(out),
            ]
        )
