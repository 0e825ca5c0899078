# Paper Sec. 7.1, Fig. 5B/C, A6, A7 — identifiability of predictive LDM on the wobbly system (experiment
# `identifiability`): data (per data set) → train → evaluate (per run × seed) → figures, summarize.
# Settings: config key `identifiability` (each job reads only its data set / run, see
# src/ldm/experiments/identifiability/stages.py); code: src/ldm/experiments/identifiability/.
# An interrupted training resumes from results/identifiability/runs/<run>/seed<seed>/checkpoints/ when its
# settings, code and inputs are unchanged; a finished training deletes its checkpoints.


wildcard_constraints:
    dataset="[A-Za-z0-9]+(_[A-Za-z0-9]+)*",
    run="[A-Za-z0-9]+(_[A-Za-z0-9]+)*",
    seed="[0-9]+",


IDENT = section("identifiability")
IDENT_RUNS = [(run, seed) for run in IDENT.get("runs", {}) for seed in IDENT.get("seeds", [1])]
IDENT_RUN_DIR = "results/identifiability/runs/{run}/seed{seed}"
IDENT_EVALS = {f"eval_{run}_seed{seed}": f"results/identifiability/runs/{run}/seed{seed}/eval.json" for run, seed in IDENT_RUNS}
IDENT_HISTORIES = {f"history_{run}_seed{seed}": f"results/identifiability/runs/{run}/seed{seed}/history.json" for run, seed in IDENT_RUNS}
IDENT_LATENTS = {f"latents_{run}_seed{seed}": f"results/identifiability/runs/{run}/seed{seed}/latents.npz" for run, seed in IDENT_RUNS}
# Input functions: the train/test split of the data set a run trains on.
IDENT_DATA = {s: (lambda wc, s=s: f"data/identifiability/{IDENT['runs'][wc.run]['dataset']}/{s}.npz") for s in ("train", "test")}


rule identifiability:
    """Every output of the `identifiability` experiment."""
    input:
        "results/identifiability/metrics.json",
        "results/identifiability/tables/runs.csv",
        "results/identifiability/tables/paper_comparison.csv",
        "results/identifiability/figures",


rule identifiability_data:
    input:
        **stage_inputs("identifiability.data"),
    output:
        train="data/identifiability/{dataset}/train.npz",
        test="data/identifiability/{dataset}/test.npz",
    params:
        **stage_params("identifiability.data"),
    log:
        "logs/identifiability/data_{dataset}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule identifiability_train:
    input:
        **stage_inputs("identifiability.train", train=IDENT_DATA["train"], test=IDENT_DATA["test"]),
    output:
        model=f"{IDENT_RUN_DIR}/model.pt",
        history=f"{IDENT_RUN_DIR}/history.json",
        summary=f"{IDENT_RUN_DIR}/train_metrics.json",
    params:
        **stage_params("identifiability.train"),
    log:
        "logs/identifiability/train_{run}_seed{seed}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule identifiability_evaluate:
    input:
        **stage_inputs(
            "identifiability.evaluate",
            train=IDENT_DATA["train"],
            test=IDENT_DATA["test"],
            model=f"{IDENT_RUN_DIR}/model.pt",
            summary=f"{IDENT_RUN_DIR}/train_metrics.json",
        ),
    output:
        eval=f"{IDENT_RUN_DIR}/eval.json",
        latents=f"{IDENT_RUN_DIR}/latents.npz",
    params:
        **stage_params("identifiability.evaluate"),
    log:
        "logs/identifiability/evaluate_{run}_seed{seed}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule identifiability_figures:
    input:
        **stage_inputs("identifiability.figures", **IDENT_EVALS, **IDENT_HISTORIES, **IDENT_LATENTS),
    output:
        figures=report(
            directory("results/identifiability/figures"),
            patterns=["{name}.png"],
            caption="../report/identifiability_figures.rst",
            category="identifiability (Fig. 5, A6, A7)",
            labels={"figure": "{name}"},
        ),
    params:
        **stage_params("identifiability.figures"),
    log:
        "logs/identifiability/figures.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule identifiability_summarize:
    input:
        **stage_inputs("identifiability.summarize", **IDENT_EVALS),
    output:
        metrics="results/identifiability/metrics.json",
        table="results/identifiability/tables/runs.csv",
        paper_table=report(
            "results/identifiability/tables/paper_comparison.csv",
            caption="../report/identifiability_table.rst",
            category="identifiability (Fig. 5, A6, A7)",
            labels={"table": "paper vs ours"},
        ),
    params:
        **stage_params("identifiability.summarize"),
    log:
        "logs/identifiability/summarize.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE
