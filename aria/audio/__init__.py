"""Audio: signal helpers, rendering, corpus selection, tokenizers, stage vocabularies, features, encoders."""
