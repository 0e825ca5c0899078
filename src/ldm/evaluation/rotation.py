"""Rotation angles of a learned linear transition A (paper Fig. 4: the Kalman dynamics learn the
motion's rotation per step)."""

from __future__ import annotations

import torch
from torch import Tensor



def rotation_angles_deg(A: Tensor) -> list[float]:
    """Rotation angles per step (degrees, in (0, 180)) of the complex eigenvalue pairs of A, by modulus
    (one entry per pair; real eigenvalues, including negative ones, are not rotations)."""
    ev = torch.linalg.eigvals(A.detach().double())
    order = torch.argsort(ev.abs(), descending=True)
    angles = []
    for lam in ev[order]:
        if float(lam.imag) > 1e-9 * max(1.0, float(lam.abs())):
            angles.append(float(torch.rad2deg(torch.angle(lam))))
    return angles


def dominant_rotation_deg(A: Tensor) -> float:
    """Angle of the largest-modulus complex eigenvalue pair of A (0 if A has only real eigenvalues)."""
    angles = rotation_angles_deg(A)
    return angles[0] if angles else 0.0
