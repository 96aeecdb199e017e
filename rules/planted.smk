# The planted-influence benchmark (queries.kind: planted; docs/validation.md "Planted-influence benchmark"):
# every report row's retrieval of the planted sources and the rank of the planted channel by
# homogeneity z; the report gathers them into its planted tables. An audio row is ranked on its
# track-level matrix (docs/spec.md §3, the one its homogeneity reads), so that every row ranks the
# same training tracks and P@K compares across rows.

if PLANTED:

    use rule cpu_job as planted with:
        input:
            unpack(planted_inputs),
        output:
            out=results("planted/{stage}/{method}.json"),
        log:
            logs("planted/{stage}/{method}.log"),
        benchmark:
            benchmarks("planted/{stage}/{method}.tsv")
        params:
            **aria_job("planted"),
