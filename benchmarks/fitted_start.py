"""A student's start fitted layer by layer to its teacher on synthetic images (a screen, not a library feature).

Weight selection (``distill --inherit``) copies evenly spaced channels of the teacher's layers; the student it
makes answers at chance before training (its layers read only part of what the teacher's next layers were
built for). This screen refits each student layer in turn by ridge least squares so that, fed the student's
own activations, it reproduces the teacher's pre-activations of the channels it stands for, on the images of
a stored data-free set. The result starts far above chance. Whether that start survives distillation is the
question; the student runs are plain ``datafree distill --student-init OUT`` commands (docs/datafree_recipes.md,
"Thirty-second round").

    python -m benchmarks.fitted_start --teacher T --transfer SET [SET ...] --channels importance --out OUT

Only for networks that are one chain of layers (LeNet-5 -> LeNet-5-half): both models, BatchNorm folded, must be
the same sequence of leaf modules. Accuracies are on the selection split (never the test split).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.selection import SELECTION_SEED, SELECTION_SIZE, selection_split
from datafree.api import evaluate, load_dataset
from datafree.audit import gather
from datafree.checkpoint import ModelInfo, load_model, save_model
from datafree.data.transfer import TransferSet, TransferSets
from datafree.models import build_model, inherit_weights
from datafree.models.fold import fold_batchnorm
from datafree.models.inherit import evenly_spaced

WEIGHTED = (nn.Conv2d, nn.Linear)


def chain(model: nn.Module) -> list[nn.Module]:
    """The model's leaf modules in registration order (forward order for a chain), identities left out."""
    return [m for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]


def kept_channels(layers: list[nn.Module], i: int, n_student: int, how: str) -> torch.Tensor:
    """Which of teacher layer ``i``'s output channels the student's layer stands for."""
    n_teacher = layers[i].weight.shape[0]
    if n_student == n_teacher:
        return torch.arange(n_teacher)
    if how == "even":
        return evenly_spaced(n_teacher, n_student)
    # importance from the weights alone: a channel's filter norm times the norm of what the next layer reads from it
    following = next(m for m in layers[i + 1:] if isinstance(m, WEIGHTED)).weight.detach()
    reads = following.reshape(following.shape[0], n_teacher, -1).pow(2).sum((0, 2)).sqrt()
    score = layers[i].weight.detach().reshape(n_teacher, -1).norm(dim=1) * reads
    return score.topk(n_student).indices.sort().values


def ridge(x: torch.Tensor, y: torch.Tensor, strength: float) -> torch.Tensor:
    """``argmin_w |x w - y|^2 + strength * mean(diag(x'x)) |w|^2``."""
    gram = x.T @ x
    gram += strength * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    return torch.linalg.solve(gram, x.T @ y)


@torch.no_grad()
def fitted_start(teacher: nn.Module, student: nn.Module, images: torch.Tensor, *, how: str = "importance",
                 strength: float = 1e-3, fit: bool = True) -> nn.Module:
    """``student`` (in place) fitted layer by layer to ``teacher`` on ``images`` (float64 inside); without ``fit``,
    the kept channels' own teacher weights (weight selection with ``how``'s channels)."""
    folded = fold_batchnorm(teacher).double()
    t_chain, s_chain = chain(folded), chain(student.double().eval())
    if [type(m) for m in t_chain] != [type(m) for m in s_chain]:
        raise SystemExit("fitted_start needs two chains of the same layers (e.g. lenet5_bn or lenet5 -> lenet5_half)")
    xt = xs = images.double()
    keep_in = None
    for i, (t, s) in enumerate(zip(t_chain, s_chain)):
        if not isinstance(t, WEIGHTED):
            xt, xs = t(xt), s(xs)
            continue
        zt = t(xt)
        keep = kept_channels(t_chain, i, s.weight.shape[0], how)
        if keep_in is None or not fit:  # the first layer reads the image itself: its kept filters are exact
            weight = t.weight[keep] if keep_in is None else t.weight[keep][:, keep_in]
            s.weight.copy_(weight), s.bias.copy_(t.bias[keep])
        else:
            target = zt[:, keep]
            if isinstance(t, nn.Conv2d):
                cols = F.unfold(xs, t.kernel_size, padding=t.padding, stride=t.stride)
                x, y = cols.transpose(1, 2).reshape(-1, cols.shape[1]), target.flatten(2).transpose(1, 2).reshape(-1, len(keep))
            else:
                x, y = xs, target
            solution = ridge(torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1), y, strength)
            s.weight.copy_(solution[:-1].T.reshape(s.weight.shape)), s.bias.copy_(solution[-1])
        xt, xs, keep_in = zt, s(xs), keep
    return student.float()


def make_start(teacher: nn.Module, info: ModelInfo, images: torch.Tensor, *, student: str, how: str,
               strength: float = 1e-3, fit: bool = True, out: str | Path | None = None) -> nn.Module:
    """A ``student`` architecture's :func:`fitted_start`, saved in ``out`` (for ``distill --student-init``) if given."""
    start = fitted_start(teacher, build_model(student, info.spec), images, how=how, strength=strength, fit=fit).eval()
    if out is not None:
        save_model(Path(out) / "model.safetensors", start, ModelInfo(student, info.spec, {}))
    return start


def stored_images(directories: list[str]) -> torch.Tensor:
    """Every image of the stored sets (a set made in parts is read part by part)."""
    sets = []
    for d in directories:
        parts = sorted(Path(d).glob("rank-*"))
        sets += [TransferSet(p) for p in parts] if parts else [TransferSet(d)]
    data = TransferSets(sets) if len(sets) > 1 else sets[0]
    return data.get_batch(torch.arange(len(data)))[0].float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--transfer", nargs="+", required=True, help="the stored sets whose images the fit reads")
    p.add_argument("--student", default="lenet5_half")
    p.add_argument("--channels", choices=["even", "importance"], default="importance")
    p.add_argument("--ridge", type=float, default=1e-3)
    p.add_argument("--no-fit", action="store_true", help="keep the chosen channels' teacher weights (no least squares)")
    p.add_argument("--real", action="store_true", help="diagnostic: fit on as many real training images "
                   "(outside the selection split) instead")
    p.add_argument("--out", help="save the fitted start here (a checkpoint for distill --student-init)")
    args = p.parse_args()
    teacher, info = load_model(args.teacher)
    teacher.eval()
    images = stored_images(args.transfer)
    if args.real:
        train = load_dataset("fashion-mnist", "train")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SELECTION_SEED))
        images = gather(train, order[SELECTION_SIZE:SELECTION_SIZE + len(images)])[0]
    split = selection_split()
    selected = build_model(args.student, info.spec)
    inherit_weights(selected, teacher)
    student = make_start(teacher, info, images, student=args.student, how=args.channels, strength=args.ridge,
                         fit=not args.no_fit, out=args.out)
    kind = "selected" if args.no_fit else "fitted"
    print(f"selection split: teacher {evaluate(teacher, split).accuracy:.2f}, weight selection "
          f"{evaluate(selected.eval(), split).accuracy:.2f}, {kind} start ({args.channels}, {len(images)} "
          f"{'real' if args.real else 'synthetic'} images) {evaluate(student, split).accuracy:.2f}")


if __name__ == "__main__":
    main()
