"""Reports: tables, figures, HTML/Markdown rendering (:mod:`.render`) and their composition (:mod:`.compose`)."""

from aria.report import render
from aria.report.compose import compose
from aria.report.render import *  # noqa: F403 -- render's public names, listed once in its __all__

__all__ = ["compose", *render.__all__]
