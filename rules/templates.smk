# Job templates. A rule that runs `aria <job>` is `use rule <template> as <rule> with:` and states
# only its files, log, benchmark and params (`**aria_job(...)`); the template gives the environment,
# threads, resources and shell its kind of job shares. A template is no target (run as one, it says so).
rule cpu_job:
    """Template: an aria job on one CPU thread."""
    log:
        logs("template.log", "any"),
    conda:
        ENV
    threads: 1
    params:
        **template_params("cpu_job"),
    shell:
        ARIA


rule gpu_job:
    """Template: an aria job on the model at config device; one GPU when that is CUDA (resource gpu)."""
    log:
        logs("template.log", "any"),
    conda:
        ENV
    threads: 1
    resources:
        gpu=GPU,
    params:
        **template_params("gpu_job"),
    shell:
        ARIA


rule engine_job:
    """Template: an aria job of the scoring engine (config compute): its threads and dask scheduler."""
    log:
        logs("template.log", "any"),
    conda:
        ENV
    threads: ENGINE_THREADS
    resources:
        dask_scheduler=COMPUTE["scheduler"],
    params:
        **template_params("engine_job"),
    shell:
        ARIA_DASK
