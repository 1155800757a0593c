"""Loss terms as pure functions of tensors, each tested against hand-computed values."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from datafree.errors import DatafreeError


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Each sample's logits z-scored (mean 0, std 1): what is left is their shape, not their scale."""
    return (logits - logits.mean(1, keepdim=True)) / logits.std(1, keepdim=True).clamp_min(1e-6)


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
          standardize: bool = False) -> torch.Tensor:
    """Hinton's soft-target term ``T^2 * KL(p_T^T || p_S^T)``, averaged over the batch.

    The ``T^2`` factor keeps the gradient scale independent of the temperature, so ``alpha``
    means the same thing at every ``T``. ``standardize`` z-scores both sides first (Sun et al.
    2024): the student matches the teacher's logit shape without having to copy its scale,
    which on synthetic images is several times that on real ones.
    """
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def kd_logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor, standardize: bool = False) -> torch.Tensor:
    """``||(s - mean s) - (t - mean t)||^2 / (2K)`` over ``K`` classes, averaged over the batch: the limit of
    :func:`kd_kl` (``T^2 * KL``) as ``T`` grows (Hinton et al. 2015, section 2.1), so ``alpha`` keeps its meaning.

    Every class's logit gap counts alike, where a finite temperature weighs the teacher's minor classes by their
    softened probability: on synthetic images that the teacher reads with one large logit, how it ranks the other
    classes (which real images of a neighbouring class need) carries little weight in the KL. DFAD distils with an
    L1 logit loss for a related reason; Kim et al. (2021) find logit matching at least as good as KL with real data.
    """
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    centred = lambda z: z - z.mean(1, keepdim=True)  # noqa: E731
    gap = centred(student_logits) - centred(teacher_logits.detach())
    return gap.pow(2).sum(1).mean() / (2 * student_logits.shape[1])


def decoupled_kd_parts(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the two parts of Hinton's KL at ``temperature`` that Zhao et al. (CVPR 2022) decouple, around
    the teacher's top class ``k``: TCKD, the KL of the binary split (``k`` / the rest), and NCKD, the KL among the
    other classes renormalised. ``KL = TCKD + (1 - p_T[k]) * NCKD`` exactly, so a teacher that is sure of ``k`` (as
    it is on synthetic images made to be ``k``) all but mutes what it says about the other classes."""
    t = temperature
    s, tl = student_logits / t, teacher_logits.detach() / t
    k = tl.argmax(1, keepdim=True)
    target = torch.zeros_like(s, dtype=torch.bool).scatter_(1, k, True)

    def split(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(k), log p(not k) and the log-softmax over the classes other than k."""
        whole = z.logsumexp(1, keepdim=True)
        others = z.masked_fill(target, float("-inf"))
        rest = others.logsumexp(1, keepdim=True)
        binary = torch.cat([z.gather(1, k) - whole, rest - whole], 1)
        return binary, (others - rest).masked_fill(target, 0.0)

    b_s, n_s = split(s)
    b_t, n_t = split(tl)
    tckd = (b_t.exp() * (b_t - b_s)).sum(1)
    nckd = (n_t.exp().masked_fill(target, 0.0) * (n_t - n_s)).sum(1)
    return tckd, nckd


def kd_decoupled(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                 beta: float = 8.0, standardize: bool = False) -> torch.Tensor:
    """Decoupled KD: ``T^2 * (TCKD + beta * NCKD)``, averaged over the batch (:func:`decoupled_kd_parts`).

    The target class is the teacher's top class, since a data-free image has no label of its own. ``beta`` > 1
    gives the teacher's ranking of the other classes (which real images of a neighbouring class need: a shirt
    the teacher reads as part coat) the weight a confident teacher takes from it; the paper's default is 8.
    ``standardize`` z-scores both sides first, as in :func:`kd_kl`.
    """
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    tckd, nckd = decoupled_kd_parts(student_logits, teacher_logits, temperature)
    return (tckd + beta * nckd).mean() * (temperature * temperature)


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


def kept_channel_hint(student_inputs: Sequence[torch.Tensor], teacher_inputs: Sequence[torch.Tensor],
                      kept: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the MSE between what each student layer reads and what its teacher layer reads at the
    ``kept`` channels (dim 1; :func:`datafree.models.inherit.kept_inputs`).

    A student started by weight selection holds, in each layer, a subset of the teacher's channels. Pulling those
    channels toward the teacher's own, at every layer, keeps the half-width student reading the images by the
    teacher's evidence rather than by whatever else separates the synthetic images; a FitNets hint through a
    learned regressor lets the student's features be any linear mix of the teacher's.
    """
    if not student_inputs or len(student_inputs) != len(teacher_inputs) or len(kept) != len(student_inputs):
        raise DatafreeError("the kept-channel hint needs one teacher input and one kept index per student layer")
    terms = []
    for s, t, k in zip(student_inputs, teacher_inputs, kept):
        t = t.detach().index_select(1, k.to(t.device))
        if s.shape != t.shape:
            raise DatafreeError(f"the kept-channel hint pairs a student layer input of shape {tuple(s.shape[1:])} "
                                f"with the teacher's {tuple(t.shape[1:])}: it needs a thinner student of the "
                                "teacher's architecture (as --inherit does)")
        terms.append(F.mse_loss(s.float(), t.float()))
    return torch.stack(terms).mean()


def jacobian_match(student_grad: torch.Tensor, teacher_grad: torch.Tensor) -> torch.Tensor:
    """Jacobian matching (Srinivas & Fleuret 2018): squared distance between the unit-normalised
    input gradients of student and teacher, summed over the input and averaged over the batch.

    Each synthetic image then teaches the student the teacher's local slope as well as its
    output, which is where a small transfer set runs short.
    """
    s = F.normalize(student_grad.flatten(1), dim=1)
    t = F.normalize(teacher_grad.detach().flatten(1), dim=1)
    return (s - t).pow(2).sum(1).mean()


# ---------------------------------------------------------------- synthesis terms
class _Moments(torch.autograd.Function):
    """Mean and biased variance over ``dims``, two-pass, with a closed-form backward.

    On CPU ``x.var`` and ``torch.var_mean`` (Welford) take 3.7 ms on a (128, 6, 28, 28) first-layer output
    where the mean and then the mean square of ``x - mean`` take 0.7-1.3 ms; autograd's backward of the
    two is a few passes more than the single ``x * a + b`` here.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        mean = x.mean(dims, keepdim=True)
        var = (x - mean).square_().mean(dims)
        ctx.save_for_backward(x, mean)
        ctx.dims = dims
        return mean.squeeze(dims), var

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor):  # type: ignore[override]
        x, mean = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the saved mean has no graph, so x's second derivative needs one
            mean = x.mean(ctx.dims, keepdim=True)
        n = x.numel() // max(mean.numel(), 1)
        # d mean / dx = 1/n; d var / dx = 2 (x - mean) / n: one fused pass, x * a + b
        a = (grad_var * (2.0 / n)).reshape(mean.shape)
        b = (grad_mean / n).reshape(mean.shape) - a * mean
        return torch.addcmul(b, x, a), None


def batch_moments(x: torch.Tensor, dims: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x.mean(dims), x.var(dims, unbiased=False))``, the statistics a BatchNorm layer normalises with,
    at a third to a half of their cost with the gradient (the BN-statistics term runs on every synthesis step)."""
    dims = tuple(sorted(d % x.dim() for d in dims))
    return _Moments.apply(x, dims)


def bn_stat_distance(mean: torch.Tensor, var: torch.Tensor, running_mean: torch.Tensor,
                     running_var: torch.Tensor) -> torch.Tensor:
    """DeepInversion's per-layer term ``||mu - mu_BN||_2 + ||var - var_BN||_2`` (one per row of
    ``(groups, channels)`` statistics)."""
    return (torch.linalg.vector_norm(mean - running_mean, dim=-1)
            + torch.linalg.vector_norm(var - running_var, dim=-1))


def class_balance(logits: torch.Tensor) -> torch.Tensor:
    """DAFL's information-entropy term ``sum_k pbar_k log pbar_k`` (minimise -> balanced classes)."""
    p_bar = F.softmax(logits, dim=1).mean(0)
    return (p_bar * torch.log(p_bar.clamp_min(1e-12))).sum()


def activation_norm(features: torch.Tensor) -> torch.Tensor:
    """DAFL's activation term ``-mean |f|`` (minimise -> strongly activated teacher features)."""
    return -features.abs().mean()


def disagreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str,
                 temperature: float = 1.0) -> torch.Tensor:
    """Per-sample teacher-student disagreement that an adversarial generator maximises.

    ``l1`` (DFAD): mean |z_T - z_S| over logits; ``kl`` (ZSKT): KL(p_T || p_S); ``js`` (ADI):
    Jensen-Shannon divergence; ``cmi``: KL(p_T || p_S) only where the two agree on the class,
    so the generator is not rewarded for pushing samples across the teacher's boundary.
    """
    if kind == "l1":
        return (student_logits - teacher_logits).abs().mean(1)
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    if kind in ("kl", "cmi"):
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)
        if kind == "cmi":
            kl = kl * (student_logits.argmax(1) == teacher_logits.argmax(1)).float()
        return kl
    if kind == "js":
        log_m = torch.log((log_p_s.exp() + log_p_t.exp()) / 2).clamp_min(-1e4)
        return 0.5 * ((log_p_t.exp() * (log_p_t - log_m)).sum(1) + (log_p_s.exp() * (log_p_s - log_m)).sum(1))
    raise ValueError(f"unknown disagreement {kind!r} (l1, kl, js, cmi)")


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None,
             temperature: float = 0.1, labels: torch.Tensor | None = None,
             negative_labels: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over L2-normalised embeddings: each query against its positive and all negatives.

    Negatives are the other positives in the batch plus an optional memory bank (CMI). With ``labels``
    (one class per query and its positive) and ``negative_labels`` (one per bank row), a query's negatives
    are only those of its own class: the push is towards images unlike those of the same class already
    made (within-class diversity), not away from other classes, which the class term keeps apart anyway.
    """
    q, k = F.normalize(query, dim=1), F.normalize(positive, dim=1)
    keys = k if negatives is None else torch.cat([k, F.normalize(negatives, dim=1)])
    logits = q @ keys.t() / temperature
    if labels is not None:
        key_labels = labels if negatives is None else torch.cat([labels, negative_labels])  # type: ignore[list-item]
        other = labels.unsqueeze(1) != key_labels.unsqueeze(0)  # the diagonal (each positive) is never masked
        logits = logits.masked_fill(other, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def class_mean_alignment(features: torch.Tensor, targets: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between each class's mean feature and its classifier row, both centred, averaged over classes.

    A trained network's class means of penultimate features, centred on their mean, line up with the rows of its
    last layer, centred likewise (neural collapse, Papyan et al. 2020). So the rows say where each class's
    real images sit on average, which BatchNorm statistics (pooled over classes) cannot. The term asks that of a
    batch's *mean* per class only, leaving single images free to spread around it. ``features``: (B, D);
    ``targets``: (B,) class indices; ``prototypes``: (K, D). Classes absent from the batch do not count.
    """
    onehot = F.one_hot(targets, len(prototypes)).to(features.dtype)
    counts = onehot.sum(0)
    present = counts > 0
    means = (onehot.t() @ features)[present] / counts[present].unsqueeze(1)
    rows = prototypes[present]
    return (1 - F.cosine_similarity(means - means.mean(0), rows - prototypes.mean(0), dim=1)).mean()


def input_statistics(x: torch.Tensor) -> torch.Tensor:
    """Distance of a normalised batch's per-channel mean and std from 0 and 1.

    The teacher's input normalisation is the one statistic of its training data that every
    checkpoint carries (an input BatchNorm, in effect); a teacher without BN layers has no other.
    """
    per_channel = x.transpose(0, 1).flatten(1)
    return per_channel.mean(1).pow(2).sum() + (per_channel.std(1, unbiased=False) - 1).pow(2).sum()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (an image-smoothness prior)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def l2_prior(x: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel value in normalised space (keeps images near the data's range)."""
    return x.pow(2).mean()


def gradient_match_distance(real: Sequence[torch.Tensor], synthetic: Sequence[torch.Tensor]) -> torch.Tensor:
    """DC's layer-wise gradient distance: ``sum_layers sum_rows (1 - cos(g_real_row, g_syn_row))``.

    Each weight gradient is viewed as one row per output unit (``flatten(1)``); 1-D gradients
    (biases, norm scales) are skipped, as the reference 'ours' metric does, because a per-unit
    cosine of a scalar carries only its sign.
    """
    total = torch.zeros((), device=synthetic[0].device)
    for gr, gs in zip(real, synthetic):
        if gr.dim() < 2:
            continue
        gr, gs = gr.flatten(1), gs.flatten(1)
        cos = (gr * gs).sum(1) / (gr.norm(dim=1) * gs.norm(dim=1) + 1e-6)
        total = total + (1 - cos).sum()
    return total


def mean_embedding_distance(real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """DM's loss for class-grouped embeddings ``(C, n, D)``: ``sum_c ||mean_n real - mean_n syn||^2``."""
    return (real.mean(1) - synthetic.mean(1)).pow(2).sum()
