"""Attribution: per-example gradient projection, one module per scoring method, track-level matrices."""
