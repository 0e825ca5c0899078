# Dataset acquisition (issue 8): every dataset becomes a prepared artifact under data/<dataset>/ (the file
# contract of docs/datasets.md), written by one rule here; experiments depend on those files. Settings:
# config key `datasets.<dataset>` (standin: true = the offline stand-in); code: src/ldm/experiments/datasets/
# (glue) and src/ldm/data/ (clients, stand-ins, verification). Raw downloads and hand-placed copies live in
# data/raw/<dataset>/ (a cache, not an output: never DVC-tracked).
#
# The acquisition rules that download are local rules: on a cluster they run where `snakemake` runs
# (typically the login node, which has network), not on compute nodes.

DATASETS_IMAGES = ["cifar10", "cifar100", "svhn", "mnist"]
DATASETS_HC11_VARIANTS = ["running", "maze"]
DATASETS_MANIFEST = "src/ldm/data/manifest.yaml"


wildcard_constraints:
    dataset="|".join(DATASETS_IMAGES),
    variant="|".join(DATASETS_HC11_VARIANTS),


localrules:
    datasets_images,
    datasets_hc11,


# The files of each entry of `datasets.build` (a dataset name, or hc11/<variant>).
DATASETS_ARTIFACTS = {
    **{d: [f"data/{d}/{f}" for f in ("train.npz", "test.npz", "meta.json")] for d in DATASETS_IMAGES},
    "imagenet100": [f"data/imagenet100/{f}" for f in ("classes.txt", "train_index.csv", "val_index.csv", "meta.json")],
    **{f"hc11/{v}": [f"data/hc11/{v}/spikes.npz", f"data/hc11/{v}/meta.json"] for v in DATASETS_HC11_VARIANTS},
}


rule datasets:
    """Every prepared dataset named in config `datasets.build`."""
    input:
        [path for item in section("datasets").get("build", []) for path in DATASETS_ARTIFACTS[item]],


rule datasets_images:
    input:
        **stage_inputs("datasets.images", manifest=DATASETS_MANIFEST),
    output:
        train="data/{dataset}/train.npz",
        test="data/{dataset}/test.npz",
        meta="data/{dataset}/meta.json",
    params:
        **stage_params("datasets.images"),
    log:
        "logs/datasets/{dataset}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule datasets_imagenet100:
    input:
        **stage_inputs(
            "datasets.imagenet100",
            manifest=DATASETS_MANIFEST,
            classes="src/ldm/data/imagenet100_classes.txt",
        ),
    output:
        classes="data/imagenet100/classes.txt",
        train="data/imagenet100/train_index.csv",
        val="data/imagenet100/val_index.csv",
        meta="data/imagenet100/meta.json",
    params:
        **stage_params("datasets.imagenet100"),
    log:
        "logs/datasets/imagenet100.log",
    threads: 2
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE


rule datasets_hc11:
    input:
        **stage_inputs("datasets.hc11", manifest=DATASETS_MANIFEST),
    output:
        spikes="data/hc11/{variant}/spikes.npz",
        meta="data/hc11/{variant}/meta.json",
    params:
        **stage_params("datasets.hc11"),
    log:
        "logs/datasets/hc11_{variant}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        STAGE
