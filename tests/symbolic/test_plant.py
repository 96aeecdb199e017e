"""Planted copies keep exactly their aspect of the source: checked against the features module and
against note lists computed here by hand."""

import numpy as np
import pytest

from aria.symbolic.features import extract
from aria.symbolic.notes import make_notes
from aria.symbolic.plant import ASPECTS, onset_groups, plant, skyline


def _piece(seed, n_onsets=24, poly=3, step=0.25, low=48):
    """A random chorale-like piece: ``n_onsets`` sonorities of 1..poly notes on a grid."""
    rng = np.random.default_rng(seed)
    on, off, pitch, vel = [], [], [], []
    t = 0.0
    for _ in range(n_onsets):
        dur = step * rng.integers(1, 4)
        ps = rng.choice(np.arange(low, low + 30), size=rng.integers(1, poly + 1), replace=False)
        for p in ps:
            on.append(t), off.append(t + dur), pitch.append(int(p)), vel.append(int(rng.integers(40, 100)))
        t += dur
    return make_notes(on, off, pitch, vel)


def _hand_skyline(notes):
    """Highest pitch per distinct onset, by a dictionary: the independent reference."""
    best = {}
    for n in notes:
        if n["onset"] not in best or n["pitch"] > best[n["onset"]]["pitch"]:
            best[n["onset"]] = n
    return [best[t] for t in sorted(best)]


SRC, HOST = _piece(1), _piece(2, n_onsets=30, step=0.2, low=55)


def test_skyline_and_groups_match_a_hand_computation():
    sky = SRC[skyline(SRC)]
    ref = _hand_skyline(SRC)
    assert [int(n["pitch"]) for n in sky] == [int(n["pitch"]) for n in ref]
    groups = onset_groups(SRC)
    assert len(groups) == len(ref) and sum(len(g) for g in groups) == len(SRC)
    assert all(len(set(SRC["onset"][g])) == 1 for g in groups)


def test_full_copy_is_the_source():
    out = plant(SRC, HOST, "full", random_state=0)
    np.testing.assert_array_equal(out["pitch"], SRC["pitch"])
    np.testing.assert_allclose(out["onset"], SRC["onset"] - SRC["onset"].min())


def test_melody_copy_keeps_the_intervals_and_takes_the_hosts_rhythm():
    out = plant(SRC, HOST, "melody", random_state=3)
    src_sky, host_sky = _hand_skyline(SRC), _hand_skyline(HOST)
    n = min(len(src_sky), len(host_sky))
    assert len(out) == n
    shift = int(out["pitch"][0]) - int(src_sky[0]["pitch"])
    assert shift != 0 and abs(shift) <= 6
    assert out["pitch"].tolist() == [int(x["pitch"]) + shift for x in src_sky[:n]]
    t0 = host_sky[0]["onset"]
    np.testing.assert_allclose(out["onset"], [x["onset"] - t0 for x in host_sky[:n]])
    # the melody channel equals the source melody's (transposition keeps every interval), the
    # pitch classes do not
    mel_src = extract(
        make_notes(
            [x["onset"] for x in src_sky[:n]],
            [x["offset"] for x in src_sky[:n]],
            [int(x["pitch"]) for x in src_sky[:n]],
            64,
        )
    )
    f = extract(out)
    np.testing.assert_allclose(f["melodic_interval_hist"], mel_src["melodic_interval_hist"])
    assert not np.allclose(f["pitch_class_hist"], mel_src["pitch_class_hist"])
    # monophonic: no two notes sound together
    assert (out["offset"][:-1] <= out["onset"][1:] + 1e-12).all()


def test_rhythm_copy_keeps_every_onset_and_duration_with_the_hosts_pitches():
    out = plant(SRC, HOST, "rhythm", random_state=0)
    t0 = SRC["onset"].min()
    ref = sorted(zip(SRC["onset"] - t0, SRC["offset"] - t0))
    np.testing.assert_allclose(np.array(sorted(zip(out["onset"], out["offset"]))), np.array(ref))
    host_order = HOST[np.lexsort((HOST["pitch"], HOST["onset"]))]
    want = [int(host_order["pitch"][i % len(HOST)]) for i in range(len(SRC))]
    assert sorted(out["pitch"].tolist()) == sorted(want)
    fs, fo = extract(SRC), extract(out)
    for k in ("note_density", "polyphony_mean", "polyphony_std"):
        np.testing.assert_allclose(fo[k], fs[k])


def test_harmony_copy_keeps_the_sonorities_on_the_hosts_onsets():
    out = plant(SRC, HOST, "harmony", random_state=5)
    assert len(onset_groups(HOST)) >= len(onset_groups(SRC))  # every sonority is used once
    src_chords = sorted(tuple(sorted(SRC["pitch"][g].tolist())) for g in onset_groups(SRC))
    out_chords = sorted(tuple(sorted(out["pitch"][g].tolist())) for g in onset_groups(out))
    assert out_chords == src_chords
    np.testing.assert_allclose(extract(out)["pitch_class_hist"], extract(SRC)["pitch_class_hist"])
    host_on = set(np.round(HOST["onset"] - HOST["onset"].min(), 9))
    assert set(np.round(out["onset"], 9)) <= host_on
    # a seeded order: the same seed gives the same piece, another seed another order
    again = plant(SRC, HOST, "harmony", random_state=5)
    np.testing.assert_array_equal(again["pitch"], out["pitch"])
    assert not np.array_equal(plant(SRC, HOST, "harmony", random_state=6)["pitch"], out["pitch"])


def test_bad_aspect_and_too_little_material_are_named():
    with pytest.raises(ValueError, match="unknown aspect 'timbre'"):
        plant(SRC, HOST, "timbre", random_state=0)
    with pytest.raises(ValueError, match="at least 2 notes"):
        plant(SRC[:1], HOST, "melody", random_state=0)
    assert set(ASPECTS) == {"full", "melody", "rhythm", "harmony"}


def _hand_channel_h(F, channels, group):
    """Mean pairwise similarity 1 / (1 + standardized Euclidean distance) per feature, averaged per
    channel, written out pair by pair (docs/spec.md §5): the independent reference."""
    out = {}
    for ch, names in channels.items():
        hs = []
        for f in names:
            X = F[f]
            s = X.std(0)
            keep = ~np.all(X == X[:1], axis=0)
            sims = [
                1.0 / (1.0 + np.sqrt((((X[i, keep] - X[j, keep]) / s[keep]) ** 2).sum()))
                for a, i in enumerate(group)
                for j in group[a + 1 :]
            ]
            hs.append(np.mean(sims))
        out[ch] = float(np.mean(hs))
    return out


@pytest.mark.parametrize("aspect", ["melody", "rhythm", "harmony"])
def test_plants_of_one_aspect_raise_that_channels_z_most(aspect):
    """Five copies of one source's `aspect` on five different hosts, in a pool of 60 unrelated
    pieces: as a top-5 group their homogeneity z is largest in the planted channel. The channel
    homogeneity equals a pair-by-pair computation, and the z against a null of random groups
    drawn here (not aria's) names the same channel."""
    from aria.evaluation.homogeneity import channel_homogeneity, feature_scales, null_distribution
    from aria.symbolic.features import CHANNELS

    K = 5
    pool = [
        _piece(100 + i, n_onsets=int(np.random.default_rng(i).integers(16, 40)), step=(0.2, 0.25, 0.3)[i % 3])
        for i in range(60)
    ]
    source = _piece(7)
    hosts = [_piece(200 + i, n_onsets=40, step=(0.2, 0.25, 0.3, 0.15, 0.35)[i], low=45 + 3 * i) for i in range(K)]
    items = pool + [plant(source, h, aspect, random_state=i) for i, h in enumerate(hosts)]
    feats = [extract(n) for n in items]
    F = {k: np.stack([np.atleast_1d(f[k]) for f in feats]).astype(float) for k in feats[0]}
    group = list(range(len(pool), len(items)))
    scales = {k: feature_scales(v) for k, v in F.items()}
    Hc, _ = channel_homogeneity(F, CHANNELS, np.array([group]), scales)
    hand = _hand_channel_h(F, CHANNELS, group)
    for ch in CHANNELS:
        assert Hc[ch][0] == pytest.approx(hand[ch], rel=1e-10)
    null = null_distribution(F, CHANNELS, ks=(K,), n_groups=400, random_state=0, scales=scales)["by_k"][K]
    z = {ch: (Hc[ch][0] - null["mu_c"][ch]) / null["sigma_c"][ch] for ch in CHANNELS}
    assert max(z, key=z.get) == ASPECTS[aspect]
    rng = np.random.default_rng(12345)
    Hn = [_hand_channel_h(F, CHANNELS, rng.choice(len(items), K, replace=False).tolist()) for _ in range(200)]
    z_hand = {ch: (hand[ch] - np.mean([h[ch] for h in Hn])) / np.std([h[ch] for h in Hn]) for ch in CHANNELS}
    assert max(z_hand, key=z_hand.get) == ASPECTS[aspect]
    assert z_hand[ASPECTS[aspect]] > 3  # far outside the random groups


def test_planted_queries_one_per_source_and_aspect_and_the_full_copy_is_the_first_segment():
    from aria.symbolic.plant import planted_queries
    from aria.symbolic.tokenize import encode, split_blocks

    streams = {f"t{i:02d}": encode(_piece(300 + i, n_onsets=80)) for i in range(12)}
    hosts = {f"h{i}": _piece(400 + i, n_onsets=60, step=0.2) for i in range(3)}
    out = planted_queries(streams, hosts, n_sources=4, aspects=("full", "melody", "rhythm"), block=64, random_state=1)
    from aria.symbolic.tokenize import PAD

    assert out["tokens"].shape == (12, 64)
    np.testing.assert_array_equal(out["mask"], out["tokens"] != PAD)
    np.testing.assert_array_equal(out["loss_mask"], out["mask"])  # every real token is scored
    assert len(set(out["source_tracks"])) == 4 and list(out["aspects"][:3]) == ["full", "melody", "rhythm"]
    assert list(out["query_ids"][:3]) == [f"p-{a}-{out['source_tracks'][0]}" for a in ("full", "melody", "rhythm")]
    # a source's aspects get different hosts (a seeded cycle over the 3 hosts)
    assert len(set(out["track_ids"][:3])) == 3
    for q in np.flatnonzero(out["aspects"] == "full"):
        blocks, _, _ = split_blocks(streams[out["source_tracks"][q]], block=64)
        # the training segment itself, up to the velocity/time-shift tokens at its end that belong
        # to the next segment's first note (not in the copied notes)
        n = int(out["mask"][q].sum())
        assert n >= 64 - 3
        np.testing.assert_array_equal(out["tokens"][q, :n], blocks[0][:n])
    again = planted_queries(streams, hosts, n_sources=4, aspects=("full", "melody", "rhythm"), block=64, random_state=1)
    np.testing.assert_array_equal(again["tokens"], out["tokens"])
    with pytest.raises(ValueError, match="only 12 training pieces"):
        planted_queries(streams, hosts, n_sources=20, block=64, random_state=1)
