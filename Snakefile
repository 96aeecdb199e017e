# Aria workflow: table of contents. The stages live in rules/*.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/model.smk"
include: "rules/attribution.smk"
include: "rules/features.smk"
include: "rules/report.smk"
include: "rules/audio.smk"


rule all:
    input:
        f"{RESULTS}/report.html",
        f"{RESULTS}/summary.json",
        AUDIO_TARGETS,
    default_target: True
