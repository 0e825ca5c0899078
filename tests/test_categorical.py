"""Categorical latents with a probabilistic encoder (App. A.8): objectives, annealing, same-class pairs,
encoders, clustering evaluation, resumable training and figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from ldm.objectives.categorical import CategoricalAnnealing
from ldm.data.image_transforms import MNIST_MEAN, MNIST_STD, preprocess_images
from ldm.data.pairs import SameClassPairs
from ldm.evaluation.clustering import (
    clustering_accuracy, clustering_report, confusion_matrix, entropy_bits, greedy_assignment,
    hungarian_assignment, reorder_confusion,
)
from ldm.objectives.latent_models import categorical_temperature
from ldm.models.categorical import CategoricalEncoder, build_backbone
from ldm.models.resnet import resnet18
from ldm.models.small_cnn import SmallCNN
from ldm.objectives.registry import build_objective
from ldm.training.loop import NonFiniteLossError

from ldm.experiments.categorical import figures
from ldm.evaluation.clustering import kmeans_baseline
from ldm.training.categorical import (
    OBJECTIVES, PAPER_RUNS, build_categorical_objective, evaluate_encoder, read_prepared, resolve_run,
    train_categorical,
)

N = 10
T08 = categorical_temperature(0.8, N)


def _objective(name: str, p: float = 0.8):
    """Library objective of run type ``name`` taking probabilities (softmax outside)."""
    return build_objective({**OBJECTIVES[name], "p": p, "from_logits": False})


def _one_hot(labels: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels, N).double()


# ----------------------------------------------------------------------------------------------------
# objectives: hand-computable cases (tolerance covers the 1e-6 inside the logs)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,expected", [
    ("dm", -1.0 - T08 * math.log(N)),          # −I − T·H(c1,c2), I = 1, H(c1,c2) = log n
    ("dm_mi", -1.0 - 2 * T08 * math.log(N)),   # −I − T·2·H(c̄)
    ("mi", -math.log(N)),                      # −(2 log n − log n)
])
def test_consistent_one_hot_encoder_balanced(name, expected):
    labels = torch.arange(N).repeat(7)
    s = _one_hot(labels)
    loss, parts = _objective(name)(s, s.clone())
    assert parts["alignment"] == pytest.approx(1.0)
    assert parts["entropy_joint"] == pytest.approx(math.log(N), abs=1e-4)
    assert parts["entropy_single"] == pytest.approx(math.log(N), abs=1e-4)
    assert loss.item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_consistent_one_hot_encoder_unbalanced_gives_analytic_entropies(name):
    """Codes c1 = c2 with class frequencies π: joint and marginal entropy both equal H(π) = −Σ π log π."""
    counts = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 15])
    labels = torch.repeat_interleave(torch.arange(N), counts)
    pi = counts.double() / counts.sum()
    h = float(-(pi * pi.log()).sum())
    s = _one_hot(labels)
    loss, parts = _objective(name)(s, s.clone())
    assert parts["entropy_joint"] == pytest.approx(h, abs=1e-4)
    assert parts["entropy_single"] == pytest.approx(h, abs=1e-4)
    expected = {"dm": -1 - T08 * h, "dm_mi": -1 - 2 * T08 * h, "mi": -h}[name]
    assert loss.item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name,expected", [
    ("dm", -1.0 / N - T08 * 2 * math.log(N)),      # H(c1,c2) = 2 log n for independent uniform codes
    ("dm_mi", -1.0 / N - 2 * T08 * math.log(N)),
    ("mi", 0.0),                                  # no information shared
])
def test_uniform_encoder_gives_log_n(name, expected):
    s = torch.full((40, N), 1.0 / N, dtype=torch.float64)
    loss, parts = _objective(name)(s, s.clone())
    assert parts["entropy_single"] == pytest.approx(math.log(N), abs=1e-4)
    assert parts["entropy_joint"] == pytest.approx(2 * math.log(N), abs=1e-4)
    assert parts["alignment"] == pytest.approx(1.0 / N)
    assert loss.item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_invariant_to_category_relabelling_and_batch_order(name):
    g = torch.Generator().manual_seed(0)
    s1 = torch.softmax(3 * torch.randn(64, N, generator=g, dtype=torch.float64), -1)
    s2 = torch.softmax(3 * torch.randn(64, N, generator=g, dtype=torch.float64), -1)
    obj = _objective(name)
    ref = obj(s1, s2)[0]
    perm_c = torch.randperm(N, generator=g)
    perm_b = torch.randperm(64, generator=g)
    assert torch.allclose(obj(s1[:, perm_c], s2[:, perm_c])[0], ref)
    assert torch.allclose(obj(s1[perm_b], s2[perm_b])[0], ref)
    assert torch.allclose(obj(s2, s1)[0], ref)  # symmetric in the two views


def test_dm_prefers_consistent_codes_over_uniform_and_collapse():
    """At p = 0.8 the DM loss ranks: consistent one-hot < uniform, and < all images in one category."""
    labels = torch.arange(N).repeat(5)
    perfect, uniform = _one_hot(labels), torch.full((50, N), 1.0 / N, dtype=torch.float64)
    collapsed = _one_hot(torch.zeros(50, dtype=torch.long))
    obj = _objective("dm")
    assert obj(perfect, perfect)[0] < obj(uniform, uniform)[0]
    assert obj(perfect, perfect)[0] < obj(collapsed, collapsed)[0]


def test_run_objectives_take_logits_and_follow_the_annealed_temperature():
    cfg = resolve_run({**PAPER_RUNS["dm"], "epochs": 30})
    obj = build_categorical_objective(cfg)
    logits = 40.0 * F.one_hot(torch.arange(N).repeat(3), N).float()
    sched = CategoricalAnnealing(0.8, 0.992, 30)
    sched.apply(obj.model, 29)
    loss, _ = obj(logits, logits)
    assert loss.item() == pytest.approx(-1 - sched.temperature(29) * math.log(N), abs=1e-4)


# ----------------------------------------------------------------------------------------------------
# annealing
# ----------------------------------------------------------------------------------------------------
def test_annealing_schedule_matches_official_update():
    s = CategoricalAnnealing(0.8, 0.992, epochs=30)
    t = s.temperature(0)
    assert t == pytest.approx(0.279, abs=1e-3) and s.p(0) == pytest.approx(0.8)
    for e in range(1, 31):
        t = t - (4 / 30) * (t - s.t_end)  # T <- T - (4/E)(T - T_end) after every epoch
        assert s.temperature(e) == pytest.approx(t)
    assert s.p(30) == pytest.approx(0.991, abs=5e-4)  # images.md §2: final p ≈ 0.991
    ps = [s.p(e) for e in range(31)]
    assert all(a < b for a, b in zip(ps, ps[1:]))


def test_annealing_runs_the_papers_schedule_per_pair_seen():
    from ldm.training.categorical import annealing

    # the paper profile (30 epochs of 60 000 pairs) is the official per-epoch update exactly
    paper = annealing(resolve_run({**PAPER_RUNS["dm"], "pairs_per_epoch": 60000, "epochs": 30}))
    official = CategoricalAnnealing(0.8, 0.992, epochs=30)
    assert paper.pace == 1.0
    assert [paper.temperature(e) for e in range(30)] == pytest.approx([official.temperature(e) for e in range(30)])
    # 8192-pair epochs: epoch e is where the paper's run is after the same number of pairs
    small = annealing(resolve_run({**PAPER_RUNS["dm"], "pairs_per_epoch": 8192, "epochs": 30}))
    gap = official.t_start - official.t_end
    for e in (0, 1, 7, 29):
        assert small.temperature(e) == pytest.approx(official.t_end + gap * (26 / 30) ** (e * 8192 / 60000))
    # the same pairs seen give the same T whatever the epoch length (no per-profile constant)
    half = annealing(resolve_run({**PAPER_RUNS["dm"], "pairs_per_epoch": 4096, "epochs": 60}))
    assert [half.temperature(2 * e) for e in range(30)] == pytest.approx([small.temperature(e) for e in range(30)])
    assert small.p(29) == pytest.approx(0.913, abs=1e-3) and small.p(29) < official.p(29)
    # anneal_pairs null: the official update on this run's own epochs (E = epochs)
    own = annealing(resolve_run({**PAPER_RUNS["dm"], "pairs_per_epoch": 8192, "epochs": 10, "anneal_pairs": None,
                                 "anneal_epochs": None}))
    assert own.temperature(3) == pytest.approx(official.t_end + gap * (1 - 4 / 10) ** 3)
    # no p reached at a constant-p run: T stays at T(p_start)
    const = annealing(resolve_run({**PAPER_RUNS["dm_mi_p08"], "pairs_per_epoch": 8192}))
    assert const.p(29) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="anneal_pairs=0"):
        resolve_run({"anneal_pairs": 0})


def test_constant_p_schedule_and_errors():
    s = CategoricalAnnealing(0.8, None, epochs=30)
    assert {round(s.p(e), 12) for e in range(30)} == {0.8}
    assert CategoricalAnnealing(0.8, 0.992, epochs=2).temperature(1) == pytest.approx(categorical_temperature(0.992))
    with pytest.raises(ValueError, match="p must be in"):
        CategoricalAnnealing(0.05, 0.992)
    with pytest.raises(ValueError, match="epochs"):
        CategoricalAnnealing(0.8, 0.992, epochs=0)


# ----------------------------------------------------------------------------------------------------
# same-class pairs and preprocessing
# ----------------------------------------------------------------------------------------------------
def test_same_class_pairs_are_different_images_of_one_class_and_deterministic():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 30 + [3])  # class 3 has one image: never paired
    pairs = SameClassPairs(labels, seed=3)
    a, b = pairs.sample(4000, epoch=0)
    assert np.all(a != b) and np.all(labels[a] == labels[b])
    assert 3 not in labels[a]
    freq = np.bincount(labels[a], minlength=4)[:3] / 4000  # label drawn uniformly, not by frequency
    assert np.allclose(freq, 1 / 3, atol=0.04)
    assert {(x, y) for x, y in zip(a, b) if labels[x] == 1} == {(5, 6), (6, 5)}
    a2, b2 = SameClassPairs(labels, seed=3).sample(4000, epoch=0)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert not np.array_equal(a, pairs.sample(4000, epoch=1)[0])
    batches = list(pairs.batches(100, 32, epoch=0))
    assert [len(x) for x, _ in batches] == [32, 32, 32]
    with pytest.raises(ValueError, match="two or more"):
        SameClassPairs(np.array([0, 1, 2]))


def test_preprocessing_gray_to_rgb_resize_and_normalise():
    img = np.zeros((2, 28, 28, 1), np.uint8)
    img[1] = 255
    x = preprocess_images(img, size=32, channels=3)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full((3, 32, 32), -MNIST_MEAN[0] / MNIST_STD[0]))
    assert torch.allclose(x[1], torch.full((3, 32, 32), (1 - MNIST_MEAN[0]) / MNIST_STD[0]), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images(img.astype(np.float32))


# ----------------------------------------------------------------------------------------------------
# encoders
# ----------------------------------------------------------------------------------------------------
def test_resnet18_is_torchvision_resnet18_without_fc():
    net = resnet18("imagenet")
    tv = torchvision.models.resnet18()
    ours = {k: v.shape for k, v in net.state_dict().items()}
    theirs = {k: v.shape for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    assert ours == theirs
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


def test_resnet_stems_and_width():
    cifar = resnet18("cifar", width=0.25)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1) and cifar.conv1.padding == (2, 2)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    assert cifar.out_dim == 128 and cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 128)
    assert cifar.layer1[0].conv1.out_channels == 16
    gray = resnet18("imagenet", width=0.5, in_channels=1)
    assert gray(torch.zeros(2, 1, 32, 32)).shape == (2, 256)
    with pytest.raises(ValueError, match="stem"):
        resnet18("tiny")


def test_small_cnn_and_backbone_registry():
    net = SmallCNN(in_channels=1, widths=(8, 16))
    assert net(torch.zeros(3, 1, 32, 32)).shape == (3, 16)
    enc = CategoricalEncoder(build_backbone({"name": "small_cnn", "widths": [8, 16]}, in_channels=3), 10, 32)
    assert enc(torch.zeros(4, 3, 32, 32)).shape == (4, 10)
    assert torch.allclose(enc.probabilities(torch.zeros(4, 3, 32, 32)).sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="unknown backbone name 'vgg'"):
        build_backbone({"name": "vgg"})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['stem'\]"):
        build_backbone({"name": "small_cnn", "stem": "cifar"})


# ----------------------------------------------------------------------------------------------------
# clustering evaluation
# ----------------------------------------------------------------------------------------------------
def _from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, y = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            c += [i] * int(cm[i, j])
            y += [j] * int(cm[i, j])
    return np.array(c), np.array(y)


def test_clustering_accuracy_hand_cases():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_accuracy(np.array([2, 2, 0, 0, 1, 1]), labels) == 1.0  # a relabelling is perfect
    clusters = np.array([0, 0, 0, 1, 1, 2])
    labels = np.array([0, 0, 1, 1, 1, 2])
    cm = confusion_matrix(clusters, labels)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    for method in ("greedy", "hungarian"):
        assert clustering_accuracy(clusters, labels, method) == pytest.approx(5 / 6)
    # everything in one cluster: one label matched
    assert clustering_accuracy(np.zeros(6, int), labels, n_clusters=3) == pytest.approx(3 / 6)


def test_greedy_and_hungarian_differ_on_constructed_case():
    cm = np.array([[10, 9], [8, 0]])
    clusters, labels = _from_confusion(cm)
    assert greedy_assignment(cm) == {0: 0, 1: 1}        # takes the largest cell first: 10 + 0
    assert hungarian_assignment(cm) == {0: 1, 1: 0}     # optimum 9 + 8
    assert clustering_accuracy(clusters, labels, "greedy") == pytest.approx(10 / 27)
    assert clustering_accuracy(clusters, labels, "hungarian") == pytest.approx(17 / 27)
    assert reorder_confusion(cm, greedy_assignment(cm)).tolist() == [[10, 9], [8, 0]]
    assert reorder_confusion(cm, hungarian_assignment(cm)).tolist() == [[8, 0], [10, 9]]


def test_greedy_never_beats_hungarian():
    rng = np.random.default_rng(0)
    for _ in range(50):
        cm = rng.integers(0, 20, size=(6, 6))
        g = sum(cm[c, y] for c, y in greedy_assignment(cm).items())
        h = sum(cm[c, y] for c, y in hungarian_assignment(cm).items())
        assert g <= h and len(greedy_assignment(cm)) == 6


def test_entropy_in_bits_and_report():
    probs = np.array([[1.0] + [0.0] * 9, [0.1] * 10, [0.5, 0.5] + [0.0] * 8])
    assert entropy_bits(probs) == pytest.approx([0.0, math.log2(10), 1.0])
    rep = clustering_report(np.eye(10)[[3, 3, 7, 1]], np.array([0, 0, 1, 2]))
    assert rep["accuracy_greedy"] == rep["accuracy_hungarian"] == 1.0
    assert rep["clusters_used"] == 3 and rep["confusion"].shape == (10, 10)
    assert np.trace(rep["confusion_greedy"]) == 4


# ----------------------------------------------------------------------------------------------------
# training: tiny digits stand-in (sklearn 8×8 digits resized to 28×28, the prepared-file format)
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images[:240].astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    images = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    labels = d.target[:240].astype(np.int64)
    folder = tmp_path_factory.mktemp("mnist")
    np.savez(folder / "train.npz", images=images[:180], labels=labels[:180])
    np.savez(folder / "test.npz", images=images[180:], labels=labels[180:])
    return folder


TINY = {"encoder": {"name": "small_cnn", "widths": [8, 16]}, "head_hidden": 16, "batch_size": 32,
        "pairs_per_epoch": 64, "epochs": 3, "lr": 1e-3, "image_size": 16, "channels": 1,
        "anneal_pairs": None, "anneal_epochs": None}  # the official per-epoch update on 3 epochs: p moves


def _train(digits, ckpt, **kw):
    tr_i, tr_y = read_prepared(digits / "train.npz")
    te_i, te_y = read_prepared(digits / "test.npz")
    trx = preprocess_images(tr_i, TINY["image_size"], TINY["channels"])
    tex = preprocess_images(te_i, TINY["image_size"], TINY["channels"])
    cfg = {**PAPER_RUNS["dm"], **TINY, **kw.pop("cfg", {})}
    return train_categorical(cfg, trx, tr_y, ckpt, eval_x=tex, eval_labels=te_y, progress=False, **kw), tex, te_y


def _comparable(history):
    return [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in history["epochs"]]


def test_kill_and_resume_gives_identical_metrics(digits, tmp_path):
    (enc_a, hist_a), tex, te_y = _train(digits, tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_after_epoch_2(epoch, metrics):
        if epoch == 2:
            raise Killed  # after the epoch-2 checkpoint is written, as a SIGKILL then would leave it

    with pytest.raises(Killed):
        _train(digits, tmp_path / "b", on_epoch=kill_after_epoch_2)
    (enc_b, hist_b), _, _ = _train(digits, tmp_path / "b")
    assert _comparable(hist_a) == _comparable(hist_b)
    for (k, va), vb in zip(enc_a.state_dict().items(), enc_b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert evaluate_encoder(enc_a, tex, te_y)["accuracy_greedy"] == evaluate_encoder(enc_b, tex, te_y)["accuracy_greedy"]
    sched = CategoricalAnnealing(0.8, 0.992, 3)
    assert [e["p"] for e in hist_a["epochs"]] == pytest.approx([sched.p(e) for e in range(3)])
    assert all("test/accuracy_hungarian" in e for e in hist_a["epochs"])


def test_non_finite_loss_names_step_and_term(digits, tmp_path):
    tr_i, tr_y = read_prepared(digits / "train.npz")
    trx = preprocess_images(tr_i, 16, 1)
    trx[7] = float("nan")  # one poisoned image: its batch (through BatchNorm) becomes NaN
    cfg = {**PAPER_RUNS["dm"], **TINY, "epochs": 2}
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step \d+ \(epoch \d+; .*term .*alignment=nan"):
        train_categorical(cfg, trx, tr_y, tmp_path / "nan", progress=False)


def test_read_prepared_errors_name_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_prepared(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(KeyError, match="bad.npz.*'labels'"):
        read_prepared(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", images=np.zeros((2, 28, 28), np.uint8), labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="bad2.npz: images"):
        read_prepared(tmp_path / "bad2.npz")
    np.savez(tmp_path / "bad3.npz", images=np.zeros((2, 28, 28, 1), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="bad3.npz: 'labels'"):
        read_prepared(tmp_path / "bad3.npz")


def test_resolve_run_rejects_bad_keys():
    with pytest.raises(KeyError, match="unknown key"):
        resolve_run({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="objective='simclr'"):
        resolve_run({"objective": "simclr"})
    with pytest.raises(ValueError, match="p_start"):
        resolve_run({"p_start": 0.05})
    assert resolve_run({"encoder": {"name": "small_cnn"}})["encoder"] == {"name": "small_cnn"}


def test_kmeans_baseline_on_separable_blobs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = np.zeros((60, 4, 4, 1), np.uint8)
    for k in range(3):
        images[labels == k, k, :, 0] = 255
    images = np.clip(images + rng.integers(0, 10, images.shape), 0, 255).astype(np.uint8)
    acc = kmeans_baseline(images, images, labels, k=3)
    assert acc["accuracy_greedy"] == acc["accuracy_hungarian"] == 1.0


def test_figures_render(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(10, 0.3), size=40)
    h = entropy_bits(probs)
    labels = rng.integers(0, 10, 40)
    images = rng.integers(0, 255, (40, 28, 28, 1)).astype(np.uint8)
    rep = clustering_report(probs, labels)
    s = CategoricalAnnealing(0.8, 0.992, 5)
    figs = [
        figures.entropy_histograms({"DM": h, "MI": h / 1e4}),
        figures.certain_digits(images, probs, h, labels, rep["assignment_greedy"]),
        figures.annealing_schedule({"DM": (range(5), [s.p(e) for e in range(5)], [s.temperature(e) for e in range(5)])}),
        figures.confusion_matrices({"DM": rep["confusion_greedy"]}, {"DM": rep["accuracy_greedy"]}),
        figures.training_curves({"DM": [{"epoch": 1, "test/accuracy_greedy": 0.5, "test/mean_entropy_bits": 1.0}]}),
    ]
    for i, fig in enumerate(figs):
        fig.savefig(tmp_path / f"f{i}.png")
        assert (tmp_path / f"f{i}.png").stat().st_size > 1000


def test_checkpoint_of_other_data_is_not_resumed(digits, tmp_path):
    (_, hist_a), _, _ = _train(digits, tmp_path / "c", cfg={"epochs": 2})
    tr_i, tr_y = read_prepared(digits / "train.npz")
    trx = preprocess_images(tr_i[::-1].copy(), TINY["image_size"], TINY["channels"])  # other data, same settings
    cfg = {**PAPER_RUNS["dm"], **TINY, "epochs": 2}
    _, hist_b = train_categorical(cfg, trx, tr_y[::-1].copy(), tmp_path / "c", progress=False)
    # the old checkpoint was discarded and training restarted from epoch 1 (a resume would return hist_a)
    assert len(hist_b["epochs"]) == 2 and hist_b["epochs"][0]["train/loss"] != hist_a["epochs"][0]["train/loss"]
    assert hist_b["extra"]["resume_key"] != hist_a["extra"]["resume_key"]


def test_config_schema_fragment_matches_run_defaults():
    from pathlib import Path

    import jsonschema
    import yaml

    import ldm.experiments.categorical as pkg

    schema = yaml.safe_load((Path(pkg.__file__).parent / "config.schema.yaml").read_text())
    run_schema = schema["$defs"]["categorical_run"]
    assert set(run_schema["properties"]) == set(resolve_run({}))
    section = {"dataset": "mnist", "seeds": [1, 2], "defaults": resolve_run({}), "runs": PAPER_RUNS}
    jsonschema.validate(section, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"runs": {"dm": {"objective": "simclr"}}}, schema)
