# Paper Fig. 4A–D, A3, A4 — predictive LDM with a Kalman filter (experiment `kalman`):
# videos (per data set) → train → evaluate → figures (per run × seed) → summarize.
# Settings: config key `kalman` (each job reads only its run/data set, see
# src/ldm/experiments/kalman/settings.py); code: src/ldm/experiments/kalman/.
# An interrupted training resumes from results/kalman/runs/<run>/seed<seed>/checkpoints/ when its
# settings, code and inputs are unchanged; a finished training deletes its checkpoints.


wildcard_constraints:
    dataset="[A-Za-z0-9]+(_[A-Za-z0-9]+)*",
    run="[A-Za-z0-9]+(_[A-Za-z0-9]+)*",
    seed="[0-9]+",


from ldm.experiments.kalman import settings as kalman_settings

KALMAN_RUNS = kalman_settings.runs_and_seeds(config)

RUN_DIR = "results/kalman/runs/{run}/seed{seed}"


rule kalman:
    """Every output of the `kalman` experiment."""
    input:
        "results/kalman/metrics.json",
        "results/kalman/tables/runs.csv",
        "results/kalman/figures/fig4d_grad_cos.png",
        expand("results/kalman/figures/{run}_seed{seed}", zip, run=[r for r, _ in KALMAN_RUNS], seed=[s for _, s in KALMAN_RUNS]),


rule kalman_videos:
    input:
        **stage_inputs("kalman.videos"),
    output:
        train="data/kalman/{dataset}/train.npz",
        test="data/kalman/{dataset}/test.npz",
    params:
        **stage_params("kalman.videos"),
    log:
        "logs/kalman/videos_{dataset}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule kalman_train:
    input:
        **stage_inputs("kalman.train", train=kalman_settings.videos_of(config, "train"), test=kalman_settings.videos_of(config, "test")),
    output:
        model=f"{RUN_DIR}/model.pt",
        history=f"{RUN_DIR}/history.json",
        summary=f"{RUN_DIR}/train_metrics.json",
    params:
        **stage_params("kalman.train"),
    log:
        "logs/kalman/train_{run}_seed{seed}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule kalman_evaluate:
    input:
        **stage_inputs(
            "kalman.evaluate",
            train=kalman_settings.videos_of(config, "train"),
            test=kalman_settings.videos_of(config, "test"),
            model=f"{RUN_DIR}/model.pt",
            history=f"{RUN_DIR}/history.json",
            summary=f"{RUN_DIR}/train_metrics.json",
        ),
    output:
        eval=f"{RUN_DIR}/eval.json",
        latents=f"{RUN_DIR}/latents_test.npz",
    params:
        **stage_params("kalman.evaluate"),
    log:
        "logs/kalman/evaluate_{run}_seed{seed}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule kalman_figures:
    input:
        **stage_inputs(
            "kalman.figures",
            eval=f"{RUN_DIR}/eval.json",
            latents=f"{RUN_DIR}/latents_test.npz",
            history=f"{RUN_DIR}/history.json",
        ),
    output:
        figures=report(
            directory("results/kalman/figures/{run}_seed{seed}"),
            patterns=["{name}.png"],
            caption="../report/kalman_run.rst",
            category="kalman (Fig. 4, A3, A4)",
            subcategory="{run} seed {seed}",
            labels={"figure": "{name}"},
        ),
    params:
        **stage_params("kalman.figures"),
    log:
        "logs/kalman/figures_{run}_seed{seed}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule kalman_summarize:
    input:
        **stage_inputs(
            "kalman.summarize",
            **{f"eval_{run}_seed{seed}": f"results/kalman/runs/{run}/seed{seed}/eval.json" for run, seed in KALMAN_RUNS},
            **{f"history_{run}_seed{seed}": f"results/kalman/runs/{run}/seed{seed}/history.json" for run, seed in KALMAN_RUNS},
        ),
    output:
        metrics="results/kalman/metrics.json",
        table="results/kalman/tables/runs.csv",
        paper_table=report(
            "results/kalman/tables/paper_comparison.csv",
            caption="../report/kalman_table.rst",
            category="kalman (Fig. 4, A3, A4)",
            labels={"table": "paper vs ours"},
        ),
        epochs="results/kalman/tables/epochs.csv",
        grad_cos_png=report(
            "results/kalman/figures/fig4d_grad_cos.png",
            caption="../report/kalman_fig4d.rst",
            category="kalman (Fig. 4, A3, A4)",
            labels={"figure": "Fig. 4D gradient cosine"},
        ),
        grad_cos_pdf="results/kalman/figures/fig4d_grad_cos.pdf",
    params:
        **stage_params("kalman.summarize"),
    log:
        "logs/kalman/summarize.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE
