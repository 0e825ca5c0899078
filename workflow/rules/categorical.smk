# Paper App. A.8, Fig. A8/A9 — categorical latents with a probabilistic encoder on MNIST (experiment
# `categorical`): data/<dataset>/{train,test}.npz (rule datasets_images) → train (per run × seed; it also
# evaluates the trained encoder on the test split), baselines (per seed) → figures, summarize. Settings:
# config key `categorical` (each job reads only its run, see src/ldm/experiments/categorical/stages.py);
# code: src/ldm/experiments/categorical/ (glue), ldm.training.categorical, ldm.evaluation.categorical. An interrupted training resumes from
# results/categorical/runs/<run>/seed<seed>/checkpoints/ when its settings, code and inputs are unchanged; a
# finished training deletes its checkpoints.


wildcard_constraints:
    run="[A-Za-z0-9]+(_[A-Za-z0-9]+)*",
    seed="[0-9]+",


CAT = section("categorical")
CAT_SEEDS = CAT.get("seeds", [1])
CAT_RUNS = [(run, seed) for run in CAT.get("runs", {}) for seed in CAT_SEEDS]
CAT_DATA = {s: f"data/{CAT.get('dataset', 'mnist')}/{s}.npz" for s in ("train", "test")}
CAT_META = f"data/{CAT.get('dataset', 'mnist')}/meta.json"
CAT_RUN_DIR = "results/categorical/runs/{run}/seed{seed}"
CAT_EVALS = {f"eval_{run}_seed{seed}": f"results/categorical/runs/{run}/seed{seed}/eval.json" for run, seed in CAT_RUNS}
CAT_CODES = {f"codes_{run}_seed{seed}": f"results/categorical/runs/{run}/seed{seed}/codes.npz" for run, seed in CAT_RUNS}
CAT_HISTORIES = {f"history_{run}_seed{seed}": f"results/categorical/runs/{run}/seed{seed}/history.json" for run, seed in CAT_RUNS}
CAT_BASELINES = {f"baseline_seed{seed}": f"results/categorical/baselines/seed{seed}/eval.json" for seed in CAT_SEEDS}


rule categorical:
    """Every output of the `categorical` experiment."""
    input:
        "results/categorical/metrics.json",
        "results/categorical/tables/runs.csv",
        "results/categorical/tables/paper_comparison.csv",
        "results/categorical/figures",


rule categorical_train:
    input:
        **stage_inputs("categorical.train", **CAT_DATA),
    output:
        model=f"{CAT_RUN_DIR}/model.pt",
        history=f"{CAT_RUN_DIR}/history.json",
        summary=f"{CAT_RUN_DIR}/train_metrics.json",
        eval=f"{CAT_RUN_DIR}/eval.json",
        codes=f"{CAT_RUN_DIR}/codes.npz",
    params:
        **stage_params("categorical.train"),
    log:
        "logs/categorical/train_{run}_seed{seed}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule categorical_baselines:
    input:
        **stage_inputs("categorical.baselines", **CAT_DATA),
    output:
        eval="results/categorical/baselines/seed{seed}/eval.json",
    params:
        **stage_params("categorical.baselines"),
    log:
        "logs/categorical/baselines_seed{seed}.log",
    threads: 1
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule categorical_figures:
    input:
        **stage_inputs("categorical.figures", test=CAT_DATA["test"], **CAT_EVALS, **CAT_CODES, **CAT_HISTORIES),
    output:
        figures=report(
            directory("results/categorical/figures"),
            patterns=["{name}.png"],
            caption="../report/categorical_figures.rst",
            category="categorical (Fig. A8, A9)",
            labels={"figure": "{name}"},
        ),
    params:
        **stage_params("categorical.figures"),
    log:
        "logs/categorical/figures.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule categorical_summarize:
    input:
        **stage_inputs("categorical.summarize", meta=CAT_META, **CAT_EVALS, **CAT_BASELINES),
    output:
        metrics="results/categorical/metrics.json",
        table="results/categorical/tables/runs.csv",
        paper_table=report(
            "results/categorical/tables/paper_comparison.csv",
            caption="../report/categorical_table.rst",
            category="categorical (Fig. A8, A9)",
            labels={"table": "paper vs ours"},
        ),
    params:
        **stage_params("categorical.summarize"),
    log:
        "logs/categorical/summarize.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE
