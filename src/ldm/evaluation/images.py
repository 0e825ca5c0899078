"""Evaluation of an image SSL network (paper Sec. 6, Table A1, Fig. 3, A2): every probe of one network on
the same splits, for trained models and the random-init baseline alike."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from ldm.data.image_transforms import normalise_batch
from ldm.evaluation import image_probes as ip
from ldm.objectives.registry import build_objective
from ldm.training import images as ti


def probe_network(model: Any, cfg: Mapping[str, Any], ev: Mapping[str, Any], train: tuple[Any, Any],
                  test: tuple[Any, Any], n_classes: int) -> dict[str, Any]:
    """Every probe of one network (trained or at random init): online linear probe, offline linear probe and
    weighted kNN probe (top-1/top-5) on un-augmented views of ``train`` / ``test`` = (uint8 images, labels);
    the spectrum of the test embeddings in the latent space (Fig. 3) and log det(J Jᵀ) of the encoder on
    ``ev["jacobian_images"]`` test images (Fig. A2). ``_test_z`` / ``_test_y`` carry the test embeddings."""
    aug = cfg["augment"]
    (xtr, ytr), (xte, yte) = train, test
    crop = aug["size"]

    def view(x):
        out = []
        for i in range(0, len(x), 2048):
            out.append(normalise_batch(torch.as_tensor(np.asarray(x[i:i + 2048])), aug["mean"], aug["std"], crop))
        return torch.cat(out)

    vtr, vte = view(xtr), view(xte)
    htr, _ = ti.embed(model, vtr, batch=int(ev["batch"]))
    hte, zte = ti.embed(model, vte, batch=int(ev["batch"]))
    lin = ip.linear_probe(htr, ytr, hte, yte, n_classes, l2=float(ev["probe_l2"]), max_iter=int(ev["probe_max_iter"]))
    knn = ip.knn_probe(htr, ytr, hte, yte, k=int(ev["knn_k"]), temperature=float(ev["knn_temperature"]), n_classes=n_classes)
    latent = getattr(build_objective(cfg["objective"]), "model", None)
    if latent is not None and hasattr(latent, "embed"):
        zte = latent.embed(zte)  # the latent space's embedding (sphere: L2-normalised, simplex: softmax)
    logits = ti.predict_logits(model, vte, batch=int(ev["batch"]))
    on1, on5 = ti.topk_accuracy(logits, yte, (1, 5))
    spec = ip.spectrum_stats(zte.numpy())
    res: dict[str, Any] = {
        "online_top1": on1, "online_top5": on5,
        "linear_top1": lin["top1"], "linear_top5": lin["top5"], "linear_train_top1": lin["train_top1"],
        "knn_top1": knn["top1"], "knn_top5": knn["top5"],
        "participation_ratio": spec["participation_ratio"], "pcs_90": spec["pcs_90"], "pcs_99": spec["pcs_99"],
        "eigenvalues": spec["eigenvalues"][:200], "embedding_dim": int(zte.shape[1]), "n_classes": n_classes,
    }
    n_jac = int(ev["jacobian_images"])
    if n_jac > 0:
        space = cfg["space"]

        def fn(x):
            return model.projector(model.backbone(x.unsqueeze(0)))[0]  # sphere/simplex: before normalisation

        with torch.enable_grad():
            ld = ip.jacobian_logdet(fn, vte[:n_jac])
        res["jacobian_logdet"] = ld.tolist()
        res["jacobian_logdet_mean"] = float(np.mean(ld))
        res["jacobian_space"] = space
    res["_test_z"] = zte.numpy().astype(np.float32)
    res["_test_y"] = yte.numpy()
    return res
