"""Decoder-only music transformer, its training, sampling, and per-example loss."""
