"""Error messages list the first few offending ids and say how many more there are."""

import numpy as np
import pandas as pd
import pytest

from aria.io.tables import read_manifest
from aria.messages import some


def test_some_counts_what_it_leaves_out():
    assert some(["a", "b"]) == "['a', 'b']"
    assert some(range(5)) == "[0, 1, 2, 3, 4]"
    assert some(range(8), 3) == "[0, 1, 2] and 5 more"
    assert some(np.array(["x", "y", "z"]), 2) == "['x', 'y'] and 1 more"  # numpy scalars print plainly
    assert some(pd.Series([7, 8, 9, 10, 11, 12, 13])) == "[7, 8, 9, 10, 11] and 2 more"


def test_manifest_names_five_duplicates_and_counts_the_rest(tmp_path):
    ids = [f"t{i}" for i in range(8)]
    df = pd.DataFrame(dict(track_id=ids + ids, path=[f"{t}.wav" for t in ids + ids], genre="g", split="train"))
    df.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(
        ValueError, match=r"m\.csv: duplicate track_id\(s\) \['t0', 't1', 't2', 't3', 't4'\] and 3 more$"
    ):
        read_manifest(tmp_path / "m.csv", check_files=False)
    df = pd.DataFrame(dict(track_id=ids, path=[f"{t}.wav" for t in ids], genre="g", split="train"))
    df.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match=r"8 file\(s\) named in the manifest do not exist: .* and 3 more$"):
        read_manifest(tmp_path / "m.csv")
