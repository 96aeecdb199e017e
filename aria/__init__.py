"""Aria: which training songs shaped a generated piece, along which musical aspects,
and whether the attribution itself can be trusted.

The package is a set of small, pure functions from arrays to arrays; all file
I/O lives in :mod:`aria.io`, and each Snakemake rule calls one thin entry point in
:mod:`aria.cli`.
"""

__version__ = "0.1.0"
