# Aria workflow: table of contents. The stages live in rules/*.smk.
from snakemake.utils import min_version

min_version("9.0")


# The demo's config.yaml is the default. A config file given on the command line
# (--configfile my.yaml) replaces it instead of being merged onto it, so a user's
# config plans only what it names; --config KEY=VALUE still overrides single keys.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/templates.smk"
include: "rules/corpus.smk"
include: "rules/model.smk"
include: "rules/attribution.smk"
include: "rules/unlearning.smk"
include: "rules/replicas.smk"
include: "rules/lds.smk"
include: "rules/features.smk"
include: "rules/planted.smk"
include: "rules/analysis.smk"
include: "rules/report.smk"
include: "rules/diffusion.smk"


rule all:
    default_target: True
    input:
        SYMBOLIC_TARGETS,
        AUDIO_TARGETS,
        DIFF_TARGETS,
