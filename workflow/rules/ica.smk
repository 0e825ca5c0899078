# Paper Fig. 2 — linear ICA as LDM (experiment `ica`): sources → mixtures → fit → evaluate → figures.
# Settings: config key `ica.<part>`; code: ldm.experiments.ica (stages), ldm.ica, ldm.sources.

wildcard_constraints:
    part="images|ou",


rule ica_sources:
    input:
        code=stage_code("ica"),
    output:
        sources="data/ica/{part}/sources.npz",
    params:
        job=stage_job("ica_sources", "ica.{part}"),
        settings=stage_settings("ica.{part}"),
    log:
        "logs/ica/{part}/sources.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage ica.sources --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule ica_mixtures:
    input:
        code=stage_code("ica"),
        sources="data/ica/{part}/sources.npz",
    output:
        mixtures="data/ica/{part}/mixtures.npz",
    params:
        job=stage_job("ica_mixtures", "ica.{part}"),
        settings=stage_settings("ica.{part}"),
    log:
        "logs/ica/{part}/mixtures.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage ica.mixtures --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule ica_fit:
    input:
        code=stage_code("ica"),
        sources="data/ica/{part}/sources.npz",
        mixtures="data/ica/{part}/mixtures.npz",
    output:
        fit="results/ica/{part}/fit.npz",
        run="results/ica/{part}/mlflow_run.json",
    params:
        job=stage_job("ica_fit", "ica.{part}"),
        settings=stage_settings("ica.{part}"),
    log:
        "logs/ica/{part}/fit.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage ica.fit --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule ica_evaluate:
    input:
        code=stage_code("ica"),
        sources="data/ica/{part}/sources.npz",
        mixtures="data/ica/{part}/mixtures.npz",
        fit="results/ica/{part}/fit.npz",
        run="results/ica/{part}/mlflow_run.json",
    output:
        evaluation="results/ica/{part}/evaluation.json",
    params:
        job=stage_job("ica_evaluate", "ica.{part}"),
        settings=stage_settings("ica.{part}"),
    log:
        "logs/ica/{part}/evaluate.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage ica.evaluate --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule ica_figures:
    input:
        code=stage_code("ica"),
        sources="data/ica/{part}/sources.npz",
        mixtures="data/ica/{part}/mixtures.npz",
        fit="results/ica/{part}/fit.npz",
        run="results/ica/{part}/mlflow_run.json",
    output:
        **{
            f"{kind}_{ext}": f"results/ica/figures/{{part}}_{kind}.{ext}"
            for kind in ICA_FIGURES
            for ext in ("png", "pdf")
        },
    params:
        job=stage_job("ica_figures", "ica.{part}"),
        settings=stage_settings("ica.{part}"),
    log:
        "logs/ica/{part}/figures.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage ica.figures --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule ica_summarize:
    input:
        code=stage_code("ica"),
        **{f"evaluation_{p}": f"results/ica/{p}/evaluation.json" for p in ica_parts()},
    output:
        metrics="results/ica/metrics.json",
    params:
        job=stage_job("ica_summarize", "ica"),
        settings=stage_settings("ica"),
    log:
        "logs/ica/summarize.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage ica.summarize --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"
