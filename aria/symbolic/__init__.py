"""Symbolic music: note arrays, MIDI-like tokenization, the demo corpus, the 12 SPEC §5 features."""
