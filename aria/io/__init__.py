"""All file I/O of Aria: stores (zarr), tables (CSV/JSON) and MIDI files."""
