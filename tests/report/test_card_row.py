"""One row of an evidence card (aria.report.cards.card_row_doc), on a hand-made symbolic case."""

import numpy as np

from aria.report.cards import card_row_doc


def _case(query_features):
    # three pool segments of two pieces; the method's top-2 for the one query are s2 and s0
    ids = ["p1:0", "p1:1", "p2:0"]
    pos = {t: i for i, t in enumerate(ids)}
    row = {
        "spec": {"key": "trak", "label": "TRAK"},
        "top": [["p2:0", "p1:0"]],
        "z": {"melody": [2.5], "rhythm": [3.0]},
        "scores": np.array([[0.9, 0.4]]),
        "win": None,
        "verdict": {"label": "ok"},
    }
    windows = {
        "p1:0": {"t0": 0.0, "t1": 4.0, "bars": (1, 2), "notes": [1]},
        "p2:0": {"t0": 2.0, "t1": 2.0, "bars": (3, 3), "notes": []},
    }
    empty = {"melody": np.array([False, False, False]), "rhythm": np.array([True, False, True])}
    pool = {"f": np.zeros((3, 1))}
    media = []
    doc = card_row_doc(
        row, 0, query_features, pool=pool, pos=pos, channels={"melody": ["f"], "rhythm": ["f"]},
        scales={"f": 1.0}, pool_empty=empty, windows=windows, audio=False,
        track_media=lambda t: media.append(t), segment_media=lambda s: media.append(s) or f"m/{s}.mp3",
    )  # fmt: skip
    return doc, media


def test_items_scores_places_and_rollup():
    doc, media = _case(None)
    assert [i["id"] for i in doc["items"]] == ["p2:0", "p1:0"]
    assert [i["score"] for i in doc["items"]] == [0.9, 0.4]
    # a segment without length and notes, and one spanning two bars
    assert doc["items"][0]["where"] == "p2, 2.0 s, bar 3 (no note starts in this segment)"
    assert doc["items"][1]["where"] == "p1, 0.0–4.0 s, bars 1–2"
    assert [i["player"] for i in doc["items"]] == ["m/p2:0.mp3", "m/p1:0.mp3"] and media == ["p2:0", "p1:0"]
    # segments roll up to their pieces, in rank order
    assert [(r["track"], r["best_rank"], r["sum_score"]) for r in doc["rollup"]] == [("p2", 1, 0.9), ("p1", 2, 0.4)]
    assert doc["note"] and all(i["sim"] == {} for i in doc["items"])  # no query features: no similarities


def test_a_mostly_empty_channel_is_left_out_of_the_aspect():
    doc, _ = _case(None)
    # rhythm: both top items are empty there (share 1 > 0.5), so its larger z (3.0) does not count
    assert doc["aspect"]["channel"] == "melody"
    assert len(doc["warnings"]) == 1 and "2 of 2 items are empty in rhythm" in doc["warnings"][0]
    assert "+3.00" in doc["warnings"][0]
