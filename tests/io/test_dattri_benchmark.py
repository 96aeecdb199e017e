"""dattri's MAESTRO MusicTransformer benchmark read offline (corpus.kind dattri_benchmark), on a tiny
folder in exactly dattri's layout made by tests/dattri_folder.py with dattri's own code.

References: dattri's own dataset class (``EPianoDataset``: the samples and their order), its MIDI
decoder (``decode_midi``: the notes), its model's forward and autograd (the adapter), and
``dattri.metric.lds`` (the LDS of the imported ground truth).
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("dattri")
pytest.importorskip("pretty_midi")

sys.path.insert(0, str(Path(__file__).parents[1]))
from dattri_folder import TINY, make_folder  # noqa: E402

from aria.cli import main  # noqa: E402
from aria.io import dattri_benchmark as db  # noqa: E402
from aria.io.checkpoints import load_model  # noqa: E402
from aria.io.stores import read_ground_truth  # noqa: E402
from aria.io.tables import read_csv, read_manifest, read_npz  # noqa: E402
from aria.symbolic.tokenize import DATTRI_VELOCITY_OFFSET, decode, track_segment_notes  # noqa: E402

N_TRAIN, N_TEST = 20, 5


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dattri")
    made = make_folder(root, n_train_pieces=7, n_test_pieces=3, n_train=N_TRAIN, n_test=N_TEST, n_subsets=12)
    return root, made


@pytest.fixture(scope="module")
def imported(folder, tmp_path_factory):
    root, made = folder
    out = tmp_path_factory.mktemp("imported")
    o = {
        "out": out / "manifest.csv",
        "out_train": out / "train.npz",
        "out_eval": out / "eval_prompts.npz",
        "out_csv": out / "segments.csv",
        "out_dropped": out / "dropped.csv",
        "out_queries": out / "queries.npz",
        "out_midi": out / "midi",
        "out_ground_truth": out / "ground_truth.zarr",
    }
    argv = ["dattri-benchmark", "--params", json.dumps(dict(download_path=str(root), n_train=N_TRAIN, n_test=N_TEST))]
    for k, v in o.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    argv += ["--out-models", str(out / "m0.pt"), str(out / "m1.pt")]
    assert main(argv) == 0
    return o, out


def test_samples_are_dattris_in_its_order(folder):
    """Aria's windows = dattri's EPianoDataset(full_version) samples, index by index; at offset 0
    dattri draws a random window of the same piece (``if offset:``), which Aria marks."""
    from dattri.benchmark.models.MusicTransformer.dataset.e_piano import EPianoDataset

    root, made = folder
    paths = db.check_folder(root)
    for split in ("train", "test"):
        pieces = db.read_pieces(paths[split])
        ours = db.piece_windows(pieces, n=None)
        ds = EPianoDataset(str(paths[split]), max_seq=db.MAX_SEQ, full_version=True)
        assert len(ds) == len(ours["tokens"]) > 0
        for i in range(len(ds)):
            x, tgt = ds[i]
            row = np.concatenate([x.numpy(), tgt.numpy()[-1:]])  # x = row[:-1], tgt = row[1:]
            assert np.array_equal(row[1:], tgt.numpy())
            if ours["random_window"][i]:
                piece = pieces[ours["piece"][i]][1]
                starts = [s for s in range(len(piece) - len(row) + 1) if np.array_equal(piece[s : s + len(row)], row)]
                assert starts, "dattri's offset-0 sample is a window of the same piece"
            else:
                assert np.array_equal(row, ours["tokens"][i]), i
    assert made["pieces"]["train"] and all(len(p) > 3 * db.MAX_SEQ for p in made["pieces"]["train"])


def _notes(pm_or_notes):
    if hasattr(pm_or_notes, "instruments"):
        return sorted(
            (round(n.start, 6), round(n.end, 6), n.pitch, n.velocity) for n in pm_or_notes.instruments[0].notes
        )
    return sorted(
        (round(float(n["onset"]), 6), round(float(n["offset"]), 6), int(n["pitch"]), int(n["velocity"]))
        for n in pm_or_notes
    )


def test_decode_matches_dattris_decode_midi(tmp_path):
    """The benchmark's event ids decode to the notes dattri's own decoder makes (velocity 4 * bin)
    wherever a pitch is not struck again while it sounds. Where it is, the two conventions part:
    dattri's decoder forgets the first note-on and pairs both note-offs with the second, Aria's
    closes the sounding note at the new onset (one note per note-on, none lost or doubled)."""
    from dattri.benchmark.models.MusicTransformer.midi_processor.processor import decode_midi
    from dattri_folder import encoded_piece

    for seed in range(3):
        ids = encoded_piece(20.0, seed, tmp_path, overlap=False)
        theirs, ours = _notes(decode_midi(ids)), _notes(decode(np.asarray(ids), velocity_offset=DATTRI_VELOCITY_OFFSET))
        assert len(ours) > 20 and ours == theirs
        ids = np.asarray(encoded_piece(20.0, seed, tmp_path, overlap=True))
        notes = decode(ids, velocity_offset=DATTRI_VELOCITY_OFFSET)
        assert len(notes) == int((ids < 128).sum())  # one note per note-on
        theirs = {(t[0], t[2]) for t in _notes(decode_midi(ids.tolist()))}
        assert theirs <= {(t[0], t[2]) for t in _notes(notes)}  # every onset dattri keeps, Aria keeps


def test_import_writes_the_benchmark_in_arias_layout(folder, imported):
    root, made = folder
    o, _ = imported
    paths = db.check_folder(root)
    tr = read_npz(o["out_train"])
    win = db.piece_windows(db.read_pieces(paths["train"]), n=N_TRAIN)
    assert np.array_equal(tr["tokens"], win["tokens"]) and tr["tokens"].shape == (N_TRAIN, db.MAX_SEQ + 1)
    assert np.array_equal(tr["random_window"], win["random_window"])
    # each segment decodes from its own window: the notes whose note-on lies in it
    segs = [seg for _, _, _, ss in track_segment_notes(tr, block=0) for _, seg in ss]
    assert len(segs) == N_TRAIN
    first = decode(tr["tokens"][1], velocity_offset=0)  # a window that starts mid-piece: velocities differ at its start
    assert len(segs[1]) == len(first) and np.allclose(np.sort(segs[1]["pitch"]), np.sort(first["pitch"]))
    man = read_manifest(o["out"], root=root)
    assert set(man["split"]) == {"train", "eval"} and man["abspath"].map(lambda p: Path(p).is_file()).all()
    assert list(read_csv(o["out_csv"])["segment_id"]) == list(tr["segment_ids"])
    q = read_npz(o["out_queries"])
    assert q["tokens"].shape == (N_TEST, db.MAX_SEQ + 1)
    # the target is the last token's loss only (dattri's loss_maestro_musictransformer)
    assert q["loss_mask"].sum(1).tolist() == [1] * N_TEST and q["loss_mask"][:, -1].all()
    assert len(list(Path(o["out_midi"]).glob("*.mid"))) == N_TEST
    gt = read_ground_truth(o["out_ground_truth"])
    np.testing.assert_array_equal(gt["targets"], made["targets"].double().numpy())
    for s, idx in enumerate(made["indices"].numpy()):
        assert np.array_equal(np.flatnonzero(gt["masks"][s]), np.sort(idx))
    assert gt["attrs"]["source"] == "published" and list(gt["row_ids"]) == list(tr["segment_ids"])


def test_imported_models_are_the_benchmarks(folder, imported):
    """The checkpoint holds models_full/<i> and scores exactly as dattri's model does: the loss of the
    last token = -target_func of dattri's benchmark on the same sample."""
    from dattri.benchmark.models.MusicTransformer.music_transformer import MusicTransformer

    from aria.models.transformer import per_example_loss

    root, _ = folder
    o, out = imported
    q = read_npz(o["out_queries"])
    for m in range(2):
        model, _ = load_model(out / f"m{m}.pt")
        model.eval()
        ref = MusicTransformer(device="cpu", dropout=0.1, **TINY).eval()
        ref.load_state_dict(torch.load(db.benchmark_paths(root)["models_full"] / str(m) / "model_weights_0.pt"))
        t = torch.as_tensor(q["tokens"])
        with torch.no_grad():
            ours = per_example_loss(model(t), t, torch.as_tensor(q["mask"]), torch.as_tensor(q["loss_mask"]))
            y = ref(t[:, :-1])[:, -1, :]
            theirs = torch.nn.functional.cross_entropy(y, t[:, -1], reduction="none")
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_per_example_gradients_through_relative_attention_match_autograd(imported):
    from aria.attribution.projection import attributed_params, per_example_grads
    from aria.models.transformer import per_example_loss

    o, out = imported
    model, _ = load_model(out / "m0.pt")
    model = model.double().eval()
    tr = read_npz(o["out_train"])
    t, m = torch.as_tensor(tr["tokens"][:3]), torch.as_tensor(tr["mask"][:3])
    prm = attributed_params(model)
    G = per_example_grads(model, prm, t, m).numpy()
    own, rows = dict(model.named_parameters()), []
    for b in range(3):
        loss = per_example_loss(model(t[b : b + 1]), t[b : b + 1], m[b : b + 1])[0]
        rows.append(np.concatenate([g.reshape(-1).numpy() for g in torch.autograd.grad(loss, [own[n] for n in prm])]))
    want = np.stack(rows)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(G, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


def test_factored_hooks_skip_and_name_what_they_cannot_see(imported, caplog):
    import logging

    from aria.attribution.factored import select_layers

    _, out = imported
    model, _ = load_model(out / "m0.pt")
    with caplog.at_level(logging.INFO, logger="aria"):
        layers = select_layers(model, "all")
    assert sorted(layers) == [
        "mt.Wout",
        "mt.transformer.encoder.layers.0.linear1",
        "mt.transformer.encoder.layers.0.linear2",
    ]
    assert "self_attn.out_proj (its weight is used by its parent" in caplog.text
    assert "mt.transformer.encoder.layers.0.self_attn" in caplog.text  # in_proj and Er: not a linear module


def test_lds_of_the_imported_ground_truth_equals_dattris_metric(folder, imported):
    """Aria's LDS on the imported store = dattri.metric.lds on the benchmark's own tensors."""
    from dattri.metric import lds as dattri_lds

    from aria.evaluation.lds import lds_per_query, predicted_targets

    _, made = folder
    o, _ = imported
    gt = read_ground_truth(o["out_ground_truth"])
    rng = np.random.default_rng(0)
    S = rng.standard_normal((N_TRAIN, N_TEST))
    ours = lds_per_query(predicted_targets([(0, S)], gt["masks"]), gt["targets"])
    theirs, _ = dattri_lds(torch.as_tensor(S), (made["targets"].double(), made["indices"]))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "remove",
    [
        "benchmark/maestro_musictransformer/lds/indices_lds.pt",
        "dataset/generated_music",
        "benchmark/maestro_musictransformer/models_full/1/model_weights_0.pt",
    ],
)
def test_a_missing_file_is_named_with_how_to_obtain_it(folder, tmp_path, remove):
    root, _ = folder
    copy = tmp_path / "dl"
    shutil.copytree(root, copy)
    target = copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError) as e:
        db.check_folder(copy)
    assert str(target) in str(e.value) and "load_benchmark(" in str(e.value) and "never downloads" in str(e.value)


def test_ground_truth_that_does_not_fit_is_named(folder, tmp_path):
    root, _ = folder
    with pytest.raises(ValueError, match="target_values_lds.pt: shape"):
        db.read_lds(db.check_folder(root), n_train=N_TRAIN, n_test=N_TEST + 1)
    with pytest.raises(ValueError, match="indices_lds.pt: training indices outside"):
        db.read_lds(db.check_folder(root), n_train=3, n_test=N_TEST)
