"""Symbolic music: note arrays, MIDI-like tokenization, the demo corpus, the 12 docs/spec.md §5 features."""
