# Paper Fig. 2 — linear ICA as LDM (experiment `ica`): sources → mixtures → fit → evaluate → figures,
# then summarize. Settings: config key `ica.<part>` (one source set per part); code: src/ldm/experiments/ica/.

ICA_FIGURES = ["histograms", "recovered", "objective"]

ICA_PARTS = list(section("ica").get("parts", []))
_ica_missing = [p for p in ICA_PARTS if p not in section("ica")]
if _ica_missing:
    raise WorkflowError(f"ica.parts lists {_ica_missing} but the config has no section ica.<part> for them")


wildcard_constraints:
    part="|".join(ICA_PARTS) or "images|ou",


rule ica:
    """Every output of the `ica` experiment: metrics.json and the Fig. 2 panels (PNG + PDF)."""
    input:
        "results/ica/metrics.json",
        expand("results/ica/figures/{part}_{kind}.{ext}", part=ICA_PARTS, kind=ICA_FIGURES, ext=["png", "pdf"]),


rule ica_sources:
    input:
        **stage_inputs("ica.sources"),
    output:
        sources="data/ica/{part}/sources.npz",
    params:
        **stage_params("ica.sources"),
    log:
        "logs/ica/{part}/sources.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule ica_mixtures:
    input:
        **stage_inputs("ica.mixtures", sources="data/ica/{part}/sources.npz"),
    output:
        mixtures="data/ica/{part}/mixtures.npz",
    params:
        **stage_params("ica.mixtures"),
    log:
        "logs/ica/{part}/mixtures.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule ica_fit:
    input:
        **stage_inputs("ica.fit", sources="data/ica/{part}/sources.npz", mixtures="data/ica/{part}/mixtures.npz"),
    output:
        fit="results/ica/{part}/fit.npz",
    params:
        **stage_params("ica.fit"),
    log:
        "logs/ica/{part}/fit.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule ica_evaluate:
    input:
        **stage_inputs(
            "ica.evaluate",
            sources="data/ica/{part}/sources.npz",
            mixtures="data/ica/{part}/mixtures.npz",
            fit="results/ica/{part}/fit.npz",
        ),
    output:
        evaluation="results/ica/{part}/evaluation.json",
    params:
        **stage_params("ica.evaluate"),
    log:
        "logs/ica/{part}/evaluate.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule ica_figures:
    input:
        **stage_inputs(
            "ica.figures",
            sources="data/ica/{part}/sources.npz",
            mixtures="data/ica/{part}/mixtures.npz",
            fit="results/ica/{part}/fit.npz",
        ),
    output:
        **{
            f"{kind}_png": report(
                f"results/ica/figures/{{part}}_{kind}.png",
                caption=f"../report/ica_{kind}.rst",
                category="ica (Fig. 2)",
                labels={"part": "{part}", "panel": kind},
            )
            for kind in ICA_FIGURES
        },
        **{f"{kind}_pdf": f"results/ica/figures/{{part}}_{kind}.pdf" for kind in ICA_FIGURES
        },
    params:
        **stage_params("ica.figures"),
    log:
        "logs/ica/{part}/figures.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule ica_summarize:
    input:
        **stage_inputs("ica.summarize", **{f"evaluation_{p}": f"results/ica/{p}/evaluation.json" for p in ICA_PARTS}),
    output:
        metrics="results/ica/metrics.json",
        ica_table=report(
            "results/ica/tables/ica_table.csv",
            caption="../report/ica_methods_table.rst",
            category="ica (Fig. 2)",
            labels={"table": "source sets x PCA/ICA"},
        ),
        table=report(
            "results/ica/tables/paper_comparison.csv",
            caption="../report/ica_table.rst",
            category="ica (Fig. 2)",
            labels={"table": "paper vs ours"},
        ),
    params:
        **stage_params("ica.summarize"),
    log:
        "logs/ica/summarize.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE
