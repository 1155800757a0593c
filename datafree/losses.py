"""Loss terms as pure functions of tensors, each tested against hand-computed values."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target term ``T^2 * KL(p_T^T || p_S^T)``, averaged over the batch.

    The ``T^2`` factor keeps the gradient scale independent of the temperature, so ``alpha``
    means the same thing at every ``T``.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD distance loss: Huber between pairwise distances, each normalised by its mean."""
    def normalised_pdist(e: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(e, e)
        off_diag = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
        return d / d[off_diag].mean().clamp_min(1e-12)

    s, t = student.flatten(1), teacher.flatten(1).detach()
    return F.smooth_l1_loss(normalised_pdist(s), normalised_pdist(t))


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD angle loss: Huber between cosines of the angles formed by every triplet."""
    def angles(e: torch.Tensor) -> torch.Tensor:
        diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # (B, B, D): e_j - e_i
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()  # cos angle at i between j, k

    s, t = student.flatten(1), teacher.flatten(1).detach()
    return F.smooth_l1_loss(angles(s), angles(t))


def hint_mse(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """FitNets hint: MSE between (regressed) student and teacher features of equal shape."""
    return F.mse_loss(student_feature, teacher_feature.detach())
