# Entry point: the workflow lives in workflow/Snakefile. A bare include discards the included
# default target (Snakemake keeps the including file's), so this file declares its own.


include: "workflow/Snakefile"


rule default:
    default_target: True
    input:
        rules.all.input,
