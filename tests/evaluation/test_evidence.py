"""Per-query evidence: query-item similarity, dominant aspect, best windows, roll-up."""

import numpy as np
import pytest
import zarr

from aria.evaluation.evidence import best_windows, dominant_aspect, query_similarity, rollup
from aria.evaluation.homogeneity import feature_scales, lcs_similarity


def test_query_similarity_matches_the_definition():
    rng = np.random.default_rng(0)
    pool = {
        "a": rng.normal(size=(20, 3)),
        "b": rng.normal(size=(20, 1)),
        "seq": [rng.integers(0, 12, 5) for _ in range(20)],
    }
    pool["a"][:, 2] = 1.0  # a constant dimension: scale 0, dropped
    channels = {"x": ["a", "b"], "y": ["seq"]}
    scales = {"a": feature_scales(pool["a"]), "b": feature_scales(pool["b"]), "seq": None}
    q = {"a": rng.normal(size=3), "b": rng.normal(size=1), "seq": rng.integers(0, 12, 4)}
    items = np.array([3, 7, 11])
    got = query_similarity(q, pool, items, channels, scales)
    for n, i in enumerate(items):
        da = np.sqrt(sum(((q["a"][d] - pool["a"][i, d]) / scales["a"][d]) ** 2 for d in range(2)))
        db = abs(q["b"][0] - pool["b"][i, 0]) / scales["b"][0]
        assert got["x"][n] == pytest.approx((1 / (1 + da) + 1 / (1 + db)) / 2)
        assert got["y"][n] == pytest.approx(lcs_similarity(q["seq"], pool["seq"][i]))
    # an item identical to the query has similarity 1
    q2 = {"a": pool["a"][5], "b": pool["b"][5], "seq": pool["seq"][5]}
    same = query_similarity(q2, pool, [5], channels, scales)
    assert same["x"][0] == pytest.approx(1.0) and same["y"][0] == pytest.approx(1.0)


def test_dominant_aspect():
    assert dominant_aspect({"m": 0.3, "h": 2.1, "r": float("nan")}) == {
        "channel": "h",
        "z": 2.1,
        "significant": True,
        "left_out": [],
    }
    assert dominant_aspect({"m": 0.3, "h": 1.0})["significant"] is False
    assert dominant_aspect({"m": None})["channel"] is None


def test_best_windows_streams_and_matches_brute_force(tmp_path):
    rng = np.random.default_rng(1)
    tracks = np.repeat(["t0", "t1", "t2", "t3"], [3, 5, 1, 4])
    S = rng.normal(size=(len(tracks), 6)).astype(np.float32)
    S[1, 2] = S[0, 2] = 9.0  # a tie: the earlier row wins
    z = zarr.open_array(str(tmp_path / "s.zarr"), mode="w", shape=S.shape, chunks=(4, 6), dtype="float32")
    z[:] = S
    cols, want_tracks = np.array([0, 2, 5]), ["t1", "t0", "t3", "nope"]
    got = best_windows(z, tracks, cols, want_tracks)
    for a, q in enumerate(cols):
        for b, t in enumerate(want_tracks):
            rows = np.flatnonzero(tracks == t)
            assert got[a, b] == (-1 if not len(rows) else rows[np.argmax(S[rows, q])])
    assert got[1, 1] == 0


def test_rollup():
    out = rollup(["p1", "p2", "p1", "p3", "p1"], [5.0, 4.0, 3.0, 2.0, 1.0])
    assert out == [
        {"track": "p1", "n": 3, "best_rank": 1, "sum_score": 9.0},
        {"track": "p2", "n": 1, "best_rank": 2, "sum_score": 4.0},
        {"track": "p3", "n": 1, "best_rank": 4, "sum_score": 2.0},
    ]


def test_constant_velocities_are_left_out_of_the_dominant_aspect():
    """The user's card: a top 10 from one piece with one velocity throughout, "dynamic dominates (z = +8.25)"."""
    from aria.evaluation.degenerate import empty_in_channels
    from aria.evaluation.evidence import degenerate_channels
    from aria.symbolic.features import CHANNELS, extract
    from aria.symbolic.notes import NOTE_DTYPE

    rng = np.random.default_rng(0)

    def seg(vel):
        n = np.zeros(8, dtype=NOTE_DTYPE)
        n["onset"] = np.repeat(np.arange(4) * 0.5, 2)  # dyads: harmony has vertical intervals
        n["offset"] = n["onset"] + 0.5
        n["pitch"] = 60 + rng.integers(0, 12, 8)
        n["velocity"] = vel
        return n

    segs = [seg(64) for _ in range(12)] + [seg(rng.integers(40, 100, 8)) for _ in range(20)]
    feats = [extract(x) for x in segs]
    pool = {k: np.stack([f[k] for f in feats]) for k in feats[0]}
    empty = empty_in_channels(pool, CHANNELS)
    assert empty["dynamic"].tolist() == [True] * 12 + [False] * 20  # by construction
    top = np.arange(10)  # the query's top 10: all flat
    degen = degenerate_channels(top, empty, threshold=0.5)
    assert degen == {"dynamic": 1.0}
    z = {"melody": 0.4, "harmony": 1.9, "rhythm": 0.2, "dynamic": 8.25, "texture": -0.3}
    assert dominant_aspect(z)["channel"] == "dynamic"  # what the user saw
    a = dominant_aspect(z, exclude=list(degen))
    assert a["channel"] == "harmony" and a["significant"] and a["left_out"] == ["dynamic"]
    # a mixed group (4 of 10 flat) keeps its dynamic channel
    assert degenerate_channels(np.r_[0:4, 12:18], empty, threshold=0.5) == {}


def test_query_with_empty_chords_is_flagged_on_its_card():
    from aria.evaluation.degenerate import item_empty
    from aria.report.cards import card_html

    channels = {"rhythmic": ["beats"], "harmonic": ["chroma", "chords"]}
    pool = {"beats": np.ones((3, 4)), "chroma": np.ones((3, 12)), "chords": [np.array([1, 2]), np.array([3]), []]}
    query = {"beats": np.ones(4), "chroma": np.full(12, 0.1), "chords": np.array([], dtype=np.int64)}
    emp = item_empty(query, channels, pool=pool)
    assert emp == {"harmonic": ["chords"]}
    assert item_empty({**query, "chords": np.array([5])}, channels, pool=pool) == {}
    card = {
        "query_id": "q0",
        "title": "t",
        "query": {"player": "media/q0.mp3", "empty": emp},
        "channels": list(channels),
        "k": 2,
        "rows": [],
    }
    page = card_html(card)
    assert "⚠ The query is empty in harmonic (chords" in page
    assert "⚠" not in card_html({**card, "query": {"player": "media/q0.mp3", "empty": {}}})
    # a row whose group is mostly empty in a channel: the aspect names what was left out, and why
    row = {
        "key": "trak",
        "label": "TRAK",
        "verdict": {"verdict": "query-dependent", "sentence": "s"},
        "aspect": dominant_aspect({"rhythmic": 0.3, "harmonic": 6.0}, exclude=["harmonic"]),
        "z": {"rhythmic": 0.3, "harmonic": 6.0},
        "items": [],
        "warnings": ["2 of 2 items are empty in harmonic"],
    }
    page = card_html({**card, "rows": [row]})
    assert "no aspect stands out (largest: rhythmic, z = +0.30 < 1.645) (harmonic left out" in page
    assert "⚠ 2 of 2 items are empty in harmonic." in page
