# Paper Fig. 4A–D, A3, A4 — predictive LDM with a Kalman filter (experiment `kalman`):
# videos (per data set) → train → evaluate → figures (per run × seed) → summarize.
# Settings: config key `kalman` (datasets, runs, seeds); code: ldm.experiments.kalman (stages),
# ldm.videos, ldm.kalman_filter, ldm.predictive_ssl, ldm.probes, ldm.figures.kalman.
# Training checkpoints every epoch in
# <run dir>/checkpoints/ and resumes from there when rerun after a kill.


wildcard_constraints:
    dataset="[A-Za-z0-9]+(_[A-Za-z0-9]+)*",
    run="[A-Za-z0-9]+(_[A-Za-z0-9]+)*",
    seed="[0-9]+",


rule kalman_videos:
    input:
        code=stage_code("kalman"),
    output:
        train="data/kalman/{dataset}/train.npz",
        test="data/kalman/{dataset}/test.npz",
    params:
        job=stage_job("kalman_videos", "kalman"),
        settings=stage_settings("kalman"),
    log:
        "logs/kalman/videos_{dataset}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage kalman.videos --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule kalman_train:
    input:
        code=stage_code("kalman"),
        train=kalman_videos_of("train"),
        test=kalman_videos_of("test"),
    output:
        model="results/kalman/runs/{run}/seed{seed}/model.pt",
        history="results/kalman/runs/{run}/seed{seed}/history.json",
        summary="results/kalman/runs/{run}/seed{seed}/train_metrics.json",
    params:
        job=stage_job("kalman_train", "kalman"),
        settings=stage_settings("kalman"),
    log:
        "logs/kalman/train_{run}_seed{seed}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage kalman.train --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule kalman_evaluate:
    input:
        code=stage_code("kalman"),
        train=kalman_videos_of("train"),
        test=kalman_videos_of("test"),
        model="results/kalman/runs/{run}/seed{seed}/model.pt",
        history="results/kalman/runs/{run}/seed{seed}/history.json",
        summary="results/kalman/runs/{run}/seed{seed}/train_metrics.json",
    output:
        eval="results/kalman/runs/{run}/seed{seed}/eval.json",
        latents="results/kalman/runs/{run}/seed{seed}/latents_test.npz",
    params:
        job=stage_job("kalman_evaluate", "kalman"),
        settings=stage_settings("kalman"),
    log:
        "logs/kalman/evaluate_{run}_seed{seed}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage kalman.evaluate --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule kalman_figures:
    input:
        code=stage_code("kalman"),
        train=kalman_videos_of("train"),
        eval="results/kalman/runs/{run}/seed{seed}/eval.json",
        latents="results/kalman/runs/{run}/seed{seed}/latents_test.npz",
        history="results/kalman/runs/{run}/seed{seed}/history.json",
    output:
        figures=directory("results/kalman/figures/{run}_seed{seed}"),
    params:
        job=stage_job("kalman_figures", "kalman"),
        settings=stage_settings("kalman"),
    log:
        "logs/kalman/figures_{run}_seed{seed}.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage kalman.figures --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"


rule kalman_summarize:
    input:
        code=stage_code("kalman"),
        **kalman_run_files("eval.json"),
        **kalman_run_files("history.json"),
    output:
        metrics="results/kalman/metrics.json",
        table="results/kalman/tables/runs.csv",
        grad_cos_png="results/kalman/figures/fig4d_grad_cos.png",
        grad_cos_pdf="results/kalman/figures/fig4d_grad_cos.pdf",
    params:
        job=stage_job("kalman_summarize", "kalman"),
        settings=stage_settings("kalman"),
    log:
        "logs/kalman/summarize.log",
    conda:
        "../envs/ldm.yaml"
    shell:
        "python -m ldm.cli stage kalman.summarize --job {params.job:q} --settings {params.settings:q} 2>&1 | tee {log}"
