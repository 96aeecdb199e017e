"""Reports: tables, figures, HTML/Markdown rendering (:mod:`.render`) and their composition (:mod:`.compose`)."""

from aria.report.compose import compose
from aria.report.render import (
    DIAG_KEYS,
    DIAG_LABELS,
    alignment_table,
    html_report,
    k_sweep_figure,
    main_table,
    markdown_report,
    residual_figure,
    residual_table,
    spectrum_figure,
)

__all__ = [
    "compose",
    "DIAG_KEYS",
    "DIAG_LABELS",
    "main_table",
    "markdown_report",
    "html_report",
    "k_sweep_figure",
    "spectrum_figure",
    "residual_table",
    "residual_figure",
    "alignment_table",
]
