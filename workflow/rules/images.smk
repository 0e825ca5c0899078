# Paper Sec. 6, Table 2 / A1, Fig. 3, Fig. A2 — image SSL as latent distribution matching (experiment `images`):
# [decode (ImageNet-100)] -> train -> evaluate (per dataset x row x seed); baselines (per dataset x seed: the
# random-init network and raw pixels); summarize (Table A1 CSV + markdown) and figures (all runs).
# Settings: config key `images` (each job reads only its dataset / row / seed, see
# src/ldm/experiments/images/stages.py); code: src/ldm/experiments/images/, ldm.training.images.
# An interrupted training resumes from results/images/<dataset>/<row>/seed<seed>/checkpoints/ when its
# settings, code and inputs are unchanged; a finished training deletes its checkpoints.


wildcard_constraints:
    row="[a-z0-9]+(_[a-z0-9]+)*",
    seed="[0-9]+",


IMAGES = section("images")
IMAGES_RUNS = [(d, r, s) for d in IMAGES.get("datasets", []) for r in IMAGES.get("rows", []) for s in IMAGES.get("seeds", [1])]
IMAGES_BASES = [(d, s) for d in IMAGES.get("datasets", []) for s in IMAGES.get("seeds", [1])]
IMAGES_RUN_DIR = "results/images/{dataset}/{row}/seed{seed}"
IMAGES_EVALS = {f"eval_{d}_{r}_seed{s}": f"results/images/{d}/{r}/seed{s}/eval.json" for d, r, s in IMAGES_RUNS}
IMAGES_EMBS = {f"emb_{d}_{r}_seed{s}": f"results/images/{d}/{r}/seed{s}/embeddings.npz" for d, r, s in IMAGES_RUNS}
IMAGES_BASELINES = {f"baselines_{d}_seed{s}": f"results/images/{d}/baselines/seed{s}/baselines.json" for d, s in IMAGES_BASES}


# The splits a job reads: the prepared npz artifact (labels inside), or ImageNet-100 decoded to .npy arrays.
IMAGES_NPY = {"train": "train_images", "train_labels": "train_labels", "test": "test_images", "test_labels": "test_labels"}
IMAGES_DATA = {
    k: (lambda wc, k=k: (f"data/{wc.dataset}/meta.json" if k == "meta" else
                         f"data/imagenet100/decoded/{IMAGES_NPY[k]}.npy" if wc.dataset == "imagenet100" else
                         f"data/{wc.dataset}/{k.split('_')[0]}.npz"))
    for k in ("train", "train_labels", "test", "test_labels", "meta")
}


rule images:
    """Every output of the `images` experiment."""
    input:
        "results/images/metrics.json",
        "results/images/tables/runs.csv",
        "results/images/tables/table_a1.csv",
        "results/images/tables/table_a1.md",
        "results/images/tables/paper_comparison.csv",
        "results/images/figures",


rule images_decode:
    input:
        **stage_inputs(
            "images.decode",
            meta="data/imagenet100/meta.json",
            train_index="data/imagenet100/train_index.csv",
            val_index="data/imagenet100/val_index.csv",
        ),
    output:
        train="data/imagenet100/decoded/train_images.npy",
        train_labels="data/imagenet100/decoded/train_labels.npy",
        test="data/imagenet100/decoded/test_images.npy",
        test_labels="data/imagenet100/decoded/test_labels.npy",
    params:
        **stage_params("images.decode"),
    log:
        "logs/images/decode_imagenet100.log",
    threads: 8
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule images_train:
    input:
        **stage_inputs("images.train", **IMAGES_DATA),
    output:
        model=f"{IMAGES_RUN_DIR}/model.pt",
        history=f"{IMAGES_RUN_DIR}/history.json",
    params:
        **stage_params("images.train"),
    log:
        "logs/images/train_{dataset}_{row}_seed{seed}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule images_evaluate:
    input:
        **stage_inputs("images.evaluate", **IMAGES_DATA, model=f"{IMAGES_RUN_DIR}/model.pt",
                       history=f"{IMAGES_RUN_DIR}/history.json"),
    output:
        eval=f"{IMAGES_RUN_DIR}/eval.json",
        embeddings=f"{IMAGES_RUN_DIR}/embeddings.npz",
    params:
        **stage_params("images.evaluate"),
    log:
        "logs/images/evaluate_{dataset}_{row}_seed{seed}.log",
    threads: 1
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule images_baselines:
    input:
        **stage_inputs("images.baselines", **IMAGES_DATA),
    output:
        baselines="results/images/{dataset}/baselines/seed{seed}/baselines.json",
    params:
        **stage_params("images.baselines"),
    log:
        "logs/images/baselines_{dataset}_seed{seed}.log",
    threads: 1
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule images_summarize:
    input:
        **stage_inputs("images.summarize", **IMAGES_EVALS, **IMAGES_BASELINES),
    output:
        metrics="results/images/metrics.json",
        table="results/images/tables/runs.csv",
        table_a1="results/images/tables/table_a1.csv",
        table_a1_md="results/images/tables/table_a1.md",
        claims="results/images/tables/claims.csv",
        claims_md="results/images/tables/claims.md",
        paper_table=report(
            "results/images/tables/paper_comparison.csv",
            caption="../report/images_table.rst",
            category="images (Table 2 / A1, Fig. 3, A2)",
            labels={"table": "paper vs ours"},
        ),
    params:
        **stage_params("images.summarize"),
    log:
        "logs/images/summarize.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule images_figures:
    input:
        **stage_inputs("images.figures", **IMAGES_EVALS, **IMAGES_EMBS),
    output:
        figures=report(
            directory("results/images/figures"),
            patterns=["{name}.png"],
            caption="../report/images_figures.rst",
            category="images (Table 2 / A1, Fig. 3, A2)",
            labels={"figure": "{name}"},
        ),
    params:
        **stage_params("images.figures"),
    log:
        "logs/images/figures.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE
