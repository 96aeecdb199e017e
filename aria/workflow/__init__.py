"""The layer between Snakemake and the library: the jobs the rules run (:mod:`aria.workflow.jobs`)."""
