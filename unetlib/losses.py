"""Training losses: the paper's weighted pixel-wise cross-entropy and the Dice variants.

Paper sec. 3, eq. (1): the energy is a pixel-wise soft-max over the final feature map combined
with the cross-entropy, each pixel weighted by a weight map ``w``::

    E = sum_x w(x) * log(p_{l(x)}(x)),   p_k(x) = exp(a_k(x)) / sum_k' exp(a_k'(x))

(the sign is the usual one: we minimise the negative log-likelihood). The LIVECell-style student
reproductions trained a single foreground logit with BCE-with-logits + soft Dice instead.

With the valid-padding network the logits are smaller than the input tile; targets and weight
maps given at the input size are centre-cropped to the logits (:func:`center_crop`), which is
the crop the network applies to its own skip connections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unetlib.model import center_crop

__all__ = ["weighted_cross_entropy", "soft_dice_loss", "bce_dice_loss", "center_crop"]

_REDUCTIONS = ("mean", "sum", "none")


def _spatial_match(x: torch.Tensor, logits: torch.Tensor, name: str) -> torch.Tensor:
    """Centre-crop ``x`` (..., H, W) to the logits' spatial size; error if it is smaller."""
    h, w = logits.shape[-2], logits.shape[-1]
    H, W = x.shape[-2], x.shape[-1]
    if H < h or W < w:
        raise ValueError(
            f"{name} has spatial size {(H, W)}, smaller than the logits' {(h, w)}"
        )
    if (H - h) % 2 or (W - w) % 2:
        raise ValueError(
            f"{name} of spatial size {(H, W)} cannot be centred on logits of size {(h, w)}: "
            "the size difference must be even"
        )
    return center_crop(x, (h, w)) if (H, W) != (h, w) else x


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must have shape (N, C, H, W), got {shape}")


def _per_pixel(x: torch.Tensor, logits: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as (N, H, W) with the logits' N, accepting (N, 1, H, W) too."""
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{name} must have shape (N, H, W) with N = {logits.shape[0]}, got {tuple(x.shape)}"
        )
    return x


def _class_target(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(N, H, W) int64 class indices, accepting (N, 1, H, W) too."""
    target = _per_pixel(target, logits, "target")
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    return _spatial_match(target, logits, "target").long()


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pixel-wise softmax cross-entropy weighted by a per-pixel weight map (paper eq. 1).

    Args:
        logits: (N, C, h, w) raw network outputs, C >= 2.
        target: (N, H, W) integer class indices (H, W >= h, w; centre-cropped to (h, w)).
        weight: optional (N, H, W) float weight map ``w(x)`` (paper eq. 2), centre-cropped the
            same way; None means all ones (plain cross-entropy).
        reduction: ``"mean"``: ``sum(w * ce) / (N * h * w)``, the weighted energy per pixel, so the
            loss scale does not depend on the tile size and the weights keep their absolute
            meaning (a pixel of weight 10 counts ten times); ``"sum"``: the paper's energy
            ``sum(w * ce)``; ``"none"``: the (N, h, w) map ``w * ce``.

    Returns:
        A scalar (or the per-pixel map), differentiable with respect to ``logits``.
    """
    _check_logits(logits)
    if logits.shape[1] < 2:
        raise ValueError(
            "weighted_cross_entropy needs >= 2 classes (softmax); for a single logit use "
            "bce_dice_loss"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    target = _class_target(target, logits)
    log_p = F.log_softmax(logits.float(), dim=1)
    ce = -log_p.gather(1, target[:, None]).squeeze(1)
    if weight is not None:
        weight = _per_pixel(weight, logits, "weight")
        ce = ce * _spatial_match(weight, logits, "weight").to(ce.dtype)
    if reduction == "mean":
        return ce.mean()
    if reduction == "sum":
        return ce.sum()
    return ce


def _probabilities_and_onehot(
    logits: torch.Tensor, target: torch.Tensor, include_background: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w) probabilities and matching float targets for the Dice classes."""
    if logits.shape[1] == 1:
        t = target[:, 0] if target.ndim == 4 and target.shape[1] == 1 else target
        if t.ndim != 3 or t.shape[0] != logits.shape[0]:
            raise ValueError(
                f"target must have shape (N, H, W) with N = {logits.shape[0]}, "
                f"got {tuple(target.shape)}"
            )
        t = _spatial_match(t, logits, "target")
        return torch.sigmoid(logits.float()), t[:, None].float()
    t = _class_target(target, logits)
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(t, logits.shape[1]).permute(0, 3, 1, 2).float()
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    return probs, onehot


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1.0,
    include_background: bool = False,
) -> torch.Tensor:
    """Soft Dice loss ``1 - mean_k (2 sum p t + eps) / (sum p + sum t + eps)``.

    Sums run over the whole batch and the image (one Dice per class, then the mean over classes).
    ``eps`` smooths the ratio (and makes an empty class with an empty prediction score 1).

    Args:
        logits: (N, 1, h, w) single foreground logit (sigmoid) or (N, C, h, w) with C >= 2
            (softmax).
        target: (N, H, W) (or (N, 1, H, W)), centre-cropped to (h, w): foreground in {0, 1}
            (float or int) for one logit, integer class indices for C >= 2.
        include_background: for C >= 2, whether class 0 enters the mean (default: foreground
            classes only, which for C = 2 is the Dice of class 1).
    """
    _check_logits(logits)
    probs, onehot = _probabilities_and_onehot(logits, target, include_background)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice.mean()


def bce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    eps: float = 1.0,
) -> torch.Tensor:
    """``bce_weight * BCEWithLogits + dice_weight * soft Dice`` on the foreground (LIVECell-style).

    Args:
        logits: (N, 1, h, w) foreground logit, or (N, 2, h, w) two-class logits, which are
            reduced to the foreground logit ``a_1 - a_0`` (``softmax(a)_1 = sigmoid(a_1 - a_0)``,
            so the BCE term then equals the unweighted two-class cross-entropy).
        target: (N, H, W) or (N, 1, H, W) foreground mask in {0, 1} (bool, int or float),
            centre-cropped to (h, w).
        bce_weight, dice_weight: term weights. ``eps``: Dice smoothing.

    The BCE term is the mean over pixels; the Dice term is :func:`soft_dice_loss` over the batch.
    """
    _check_logits(logits)
    if logits.shape[1] == 2:
        logits = logits[:, 1:2] - logits[:, 0:1]
    elif logits.shape[1] != 1:
        raise ValueError(
            f"bce_dice_loss needs 1 or 2 logit channels (foreground), got {logits.shape[1]}"
        )
    t = target[:, 0] if target.ndim == 4 and target.shape[1] == 1 else target
    if t.ndim != 3 or t.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must have shape (N, H, W) with N = {logits.shape[0]}, "
            f"got {tuple(target.shape)}"
        )
    t = _spatial_match(t, logits, "target").float()
    bce = F.binary_cross_entropy_with_logits(logits[:, 0].float(), t)
    dice = soft_dice_loss(logits, t, eps=eps)
    return bce_weight * bce + dice_weight * dice
