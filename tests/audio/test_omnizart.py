"""The Omnizart chord back end (``audio.features.chords: omnizart``).

Omnizart's weights cannot be fetched here, so the model never runs in these tests. The adapter
is checked on ``tests/data/omnizart_chord.csv``, a file written by hand in the exact format of
Omnizart's ``chord.inference.write_csv`` (csv.DictWriter, header ``chord,start,end``, CRLF line
ends, times as multiples of its chroma frame, 1024 / 22050 s, no-chord stretches left out).
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from aria.audio import features as AF
from aria.audio.omnizart import OmnizartChords, segments_from_omnizart
from aria.config import ConfigError, validate_config
from aria.io.tables import read_omnizart_chords

DATA = Path(__file__).resolve().parents[1] / "data"
FRAME = 1024 / 22050


def test_adapter_turns_omnizart_rows_into_the_chord_root_sequence():
    rows = read_omnizart_chords(DATA / "omnizart_chord.csv")
    assert [r["chord"] for r in rows] == ["C:maj", "G:maj", "A:min", "F#:min"]
    seg = segments_from_omnizart(rows, duration_s=8.0)
    # madmom's layout: contiguous from 0 to the end, 'N' where Omnizart found no chord
    assert list(seg["label"]) == ["N", "C:maj", "G:maj", "N", "A:min", "F#:min", "N"]
    frames = [0, 2, 40, 80, 86, 120, 160]
    np.testing.assert_allclose(seg["start"], np.array(frames) * FRAME)
    np.testing.assert_allclose(seg["end"][:-1], seg["start"][1:])
    assert seg["end"][-1] == 8.0
    roots = [AF.parse_chord_root(lab) for lab in seg["label"]]
    assert roots == [-1, 0, 7, -1, 9, 6, -1]
    assert AF.chord_root_motion(roots).tolist() == [7, 2, 9]  # C->G, G->A, A->F#


def test_processors_built_for_omnizart_route_the_chords_feature_through_it():
    rows = read_omnizart_chords(DATA / "omnizart_chord.csv")

    class Recorded:  # stands in for OmnizartChords: answers with the recorded output
        def segments(self, y, *, sr):
            return segments_from_omnizart(rows, duration_s=len(y) / sr)

    procs = AF.AudioProcessors(beatnet=None, deep_chroma=None, chord_decoder=None, omnizart=Recorded())
    y = np.zeros(22050 * 8, np.float32)
    assert AF.chord_roots(y, sr=22050, processors=procs).tolist() == [-1, 0, 7, -1, 9, 6, -1]


def test_bad_omnizart_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        segments_from_omnizart([{"chord": "C:maj", "start": 0, "end": 2}, {"chord": "G:maj", "start": 1, "end": 3}])
    (tmp_path / "x.csv").write_text("label,onset\nC,0\n")
    with pytest.raises(ValueError, match=r"x\.csv: not an Omnizart chord CSV"):
        read_omnizart_chords(tmp_path / "x.csv")


def test_missing_omnizart_or_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match=r"needs audio\.features\.omnizart_checkpoint.*pip install omnizart"):
        OmnizartChords(None)
    with pytest.raises(RuntimeError, match=r"nowhere is not a folder.*download-checkpoints"):
        OmnizartChords(tmp_path / "nowhere")
    try:
        import omnizart  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"omnizart is not installed.*pip install omnizart"):
            OmnizartChords(tmp_path)
    with pytest.raises(RuntimeError, match="omnizart_checkpoint"):
        AF.build_processors(chords="omnizart")


def test_config_names_the_backend():
    cfg = yaml.safe_load((DATA / "config_tiny.yaml").read_text())
    cfg["audio"]["features"].update(chords="omnizart", omnizart_checkpoint="ckpt/chord_v1")
    validate_config(cfg)
    cfg["audio"]["features"]["chords"] = "chordino"
    msg = r"audio\.features\.chords: 'chordino' is not one of \['madmom', 'omnizart'\]"
    with pytest.raises(ConfigError, match=msg):
        validate_config(cfg)
