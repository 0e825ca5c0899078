# Paper Sec. 6.1, Fig. 4E–G, A4C — Kalman LDM on hc-11 place-cell spikes with position decoding and 95 %
# intervals (experiment `hippocampus`): data/hc11/<variant>/spikes.npz (rule datasets_hc11) → train →
# evaluate → figures (per seed) → summarize. Settings: config key `hippocampus` (each job reads only what
# it uses, see src/ldm/experiments/hippocampus/stages.py); code: src/ldm/experiments/hippocampus/.
# An interrupted training resumes from results/hippocampus/runs/seed<seed>/checkpoints/ when its settings,
# code and inputs are unchanged; a finished training deletes its checkpoints.


wildcard_constraints:
    seed="[0-9]+",


HIPPO = section("hippocampus")
HIPPO_SEEDS = list(HIPPO.get("seeds", [1]))
HIPPO_DATA = f"data/hc11/{HIPPO.get('variant', 'running')}"
HIPPO_RUN_DIR = "results/hippocampus/runs/seed{seed}"


rule hippocampus:
    """Every output of the `hippocampus` experiment."""
    input:
        "results/hippocampus/metrics.json",
        "results/hippocampus/tables/decoding.csv",
        "results/hippocampus/tables/paper_comparison.csv",
        expand("results/hippocampus/figures/seed{seed}", seed=HIPPO_SEEDS),


rule hippocampus_train:
    input:
        **stage_inputs("hippocampus.train", spikes=f"{HIPPO_DATA}/spikes.npz", meta=f"{HIPPO_DATA}/meta.json"),
    output:
        model=f"{HIPPO_RUN_DIR}/model.pt",
        history=f"{HIPPO_RUN_DIR}/history.json",
        summary=f"{HIPPO_RUN_DIR}/train_metrics.json",
    params:
        **stage_params("hippocampus.train"),
    log:
        "logs/hippocampus/train_seed{seed}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule hippocampus_evaluate:
    input:
        **stage_inputs(
            "hippocampus.evaluate",
            spikes=f"{HIPPO_DATA}/spikes.npz",
            meta=f"{HIPPO_DATA}/meta.json",
            model=f"{HIPPO_RUN_DIR}/model.pt",
        ),
    output:
        eval=f"{HIPPO_RUN_DIR}/eval.json",
        latents=f"{HIPPO_RUN_DIR}/latents_test.npz",
    params:
        **stage_params("hippocampus.evaluate"),
    log:
        "logs/hippocampus/evaluate_seed{seed}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule hippocampus_figures:
    input:
        **stage_inputs("hippocampus.figures", eval=f"{HIPPO_RUN_DIR}/eval.json", latents=f"{HIPPO_RUN_DIR}/latents_test.npz"),
    output:
        figures=report(
            directory("results/hippocampus/figures/seed{seed}"),
            patterns=["{name}.png"],
            caption="../report/hippocampus_figures.rst",
            category="hippocampus (Fig. 4E–G, A4C)",
            subcategory="seed {seed}",
            labels={"figure": "{name}"},
        ),
    params:
        **stage_params("hippocampus.figures"),
    log:
        "logs/hippocampus/figures_seed{seed}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule hippocampus_summarize:
    input:
        **stage_inputs(
            "hippocampus.summarize",
            **{f"eval_seed{seed}": f"results/hippocampus/runs/seed{seed}/eval.json" for seed in HIPPO_SEEDS},
        ),
    output:
        metrics="results/hippocampus/metrics.json",
        table=report(
            "results/hippocampus/tables/decoding.csv",
            caption="../report/hippocampus_table.rst",
            category="hippocampus (Fig. 4E–G, A4C)",
            labels={"table": "decoding (ours, baselines, CEBRA band)"},
        ),
        paper_table="results/hippocampus/tables/paper_comparison.csv",
    params:
        **stage_params("hippocampus.summarize"),
    log:
        "logs/hippocampus/summarize.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE
