"""The U-Net of Ronneberger, Fischer & Brox (2015), section 2 and Fig. 1, plus student variants.

``UNet.paper()`` is the 2015 network: 23 convolutional layers, 31,030,658 parameters for one input
channel and two classes, a 572x572 input tile giving a 388x388 output. The constructor also builds
the variants that later reproductions used (BatchNorm in the double convolutions, "same" padding,
bilinear upsampling, other depths and widths).

Size arithmetic (valid padding, ``L = depth - 1`` pooling steps): every 3x3 convolution removes two
pixels and every 2x2 max-pool must see an even size. With ``b`` the size entering the bottom level,
the valid inputs are ``2**L * b + 4 * (2**L - 1)`` and the output is ``2**L * (b - 4) - 4 *
(2**L - 1)``; input minus output is the constant ``4 * (3 * 2**L - 2)`` (184 for depth 5), so the
prediction of the output centre uses a context margin of 92 pixels on each side (paper Fig. 2).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unetlib.provenance import write_atomic

__all__ = [
    "UNet",
    "output_size",
    "valid_input_size",
    "receptive_field",
    "center_crop",
    "save_checkpoint",
    "load_checkpoint",
]

_PADDINGS = ("valid", "same")
_UP_MODES = ("transpose", "bilinear")
_CHECKPOINT_FORMAT = "unetlib.UNet/1"


# --------------------------------------------------------------------------------------------
# size arithmetic
# --------------------------------------------------------------------------------------------


def _check_depth_padding(depth: int, padding: str) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")


def _trace_sizes(input_size: int, depth: int, padding: str) -> int | None:
    """Output size for ``input_size``, or None when some layer would see an invalid size."""
    s = input_size
    if padding == "same":
        return s if s >= 1 and s % 2 ** (depth - 1) == 0 else None
    for _ in range(depth - 1):  # contracting path: two 3x3 convs, then 2x2 pool
        s -= 4
        if s < 2 or s % 2:
            return None
        s //= 2
    s -= 4  # bottom level
    if s < 1:
        return None
    for _ in range(depth - 1):  # expansive path: 2x2 up-convolution, then two 3x3 convs
        s = 2 * s - 4
        if s < 1:
            return None
    return s


def output_size(input_size: int, depth: int = 5, padding: str = "valid") -> int:
    """Spatial output size of the network for a square input of side ``input_size``.

    ``output_size(572) == 388`` (paper Fig. 1). For ``padding="same"`` the output equals the input,
    which must be divisible by ``2 ** (depth - 1)``. Raises ValueError naming ``input_size`` when a
    2x2 max-pool would see an odd size or a feature map would vanish; the message gives the nearest
    valid sizes.
    """
    _check_depth_padding(depth, padding)
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise TypeError(f"input_size must be an int, got {type(input_size).__name__}")
    out = _trace_sizes(input_size, depth, padding)
    if out is None:
        hint = _nearest_hint(input_size, depth, padding)
        rule = (
            f"divisible by 2**(depth-1) = {2 ** (depth - 1)}"
            if padding == "same"
            else "such that every 2x2 max-pool sees an even size and no feature map vanishes"
        )
        raise ValueError(
            f"input_size={input_size} is not valid for a depth-{depth} U-Net with "
            f"{padding!r} padding: it must be {rule}. {hint}"
        )
    return out


def _min_valid_input(depth: int, padding: str) -> int:
    if padding == "same":
        return 2 ** (depth - 1)
    step = 2 ** (depth - 1)
    offset = 4 * (step - 1)
    b = 5  # size entering the bottom level; search upward from the smallest conceivable value
    while _trace_sizes(step * b + offset, depth, padding) is None:
        b += 1
    return step * b + offset


def _nearest_hint(size: int, depth: int, padding: str) -> str:
    up = valid_input_size(size, depth, padding, mode="up")
    lo = _min_valid_input(depth, padding)
    if size < lo:
        return f"The smallest valid input is {lo}."
    down = valid_input_size(size, depth, padding, mode="down")
    return f"Nearest valid sizes: {down} and {up}."


def valid_input_size(
    size: int, depth: int = 5, padding: str = "valid", mode: str = "up"
) -> int:
    """A valid network input size near ``size``.

    ``mode="up"``: the smallest valid size >= ``size``; ``"down"``: the largest valid size <=
    ``size`` (ValueError naming ``size`` if there is none); ``"nearest"``: the closer of the two
    (ties go up). Valid sizes form the arithmetic progression ``2**L * b + 4 * (2**L - 1)`` for
    valid padding and the multiples of ``2**L`` for same padding (``L = depth - 1``).
    """
    _check_depth_padding(depth, padding)
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if mode not in ("up", "down", "nearest"):
        raise ValueError(f"mode must be 'up', 'down' or 'nearest', got {mode!r}")
    step = 2 ** (depth - 1)
    offset = 0 if padding == "same" else 4 * (step - 1)
    lo = _min_valid_input(depth, padding)
    up = max(lo, offset + step * math.ceil((size - offset) / step))
    if mode == "up":
        return up
    down = offset + step * math.floor((size - offset) / step)
    if down < lo:
        if mode == "nearest":
            return up
        raise ValueError(
            f"size={size} is smaller than the smallest valid input ({lo}) of a depth-{depth} "
            f"U-Net with {padding!r} padding"
        )
    if mode == "down":
        return down
    return down if size - down < up - size else up


def receptive_field(depth: int = 5, padding: str = "valid",
                    up_mode: str = "transpose") -> tuple[int, int]:
    """The field of view of one output pixel along one axis, in input pixels: the fewest and the
    most input rows (or columns) an output pixel away from the image border depends on.

    Every 3x3 convolution ``l`` levels below the top widens the field by ``2 * 2**l`` (184 in
    all for five levels: the size arithmetic above). The 2x2 max-pools and up-convolutions add
    more, by where an output pixel sits in their ``2**(depth - 1)`` grid (a pool window and the
    two fine pixels one coarse pixel makes need not be centred on it): 188 to 204 for the
    paper's five levels, 92 to 100 for four, either padding (with valid padding more than the
    185 = 572 - 388 + 1 of Fig. 2, and fields not centred on their pixel). Traced exactly
    through the layers in one dimension, each pixel's dependence kept as an interval (tested
    against autograd)."""
    _check_depth_padding(depth, padding)
    if up_mode not in _UP_MODES:
        raise ValueError(f"up_mode must be one of {_UP_MODES}, got {up_mode!r}")
    period = 2 ** (depth - 1)
    n = period * 64 if padding == "same" else valid_input_size(period * 64, depth, padding)
    lo = hi = torch.arange(n)

    def conv3(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if padding == "valid":
            return lo[:-2], hi[2:]
        left, right = torch.cat([lo[:1], lo[:-1]]), torch.cat([hi[1:], hi[-1:]])
        return torch.minimum(lo, left), torch.maximum(hi, right)

    skips = []
    for level in range(depth):
        lo, hi = conv3(*conv3(lo, hi))
        if level < depth - 1:
            skips.append((lo, hi))
            lo, hi = lo[0::2], hi[1::2]  # a 2x2 pool: both pixels of its window
    for _ in range(depth - 1):
        if up_mode == "transpose":  # coarse pixel k makes fine pixels 2k and 2k + 1
            lo, hi = lo.repeat_interleave(2), hi.repeat_interleave(2)
        else:  # bilinear (align_corners=False): fine 2k mixes k-1 and k, 2k + 1 mixes k and k+1
            k = torch.arange(2 * len(lo)) // 2
            odd = torch.arange(2 * len(lo)) % 2 == 1
            below, above = torch.where(odd, k, (k - 1).clamp(min=0)), torch.where(
                odd, (k + 1).clamp(max=len(lo) - 1), k)
            lo, hi = lo[below], hi[above]
        s_lo, s_hi = skips.pop()
        top = (len(s_lo) - len(lo)) // 2  # center_crop
        lo = torch.minimum(lo, s_lo[top:top + len(lo)])
        hi = torch.maximum(hi, s_hi[top:top + len(hi)])
        lo, hi = conv3(*conv3(lo, hi))
    width = hi - lo + 1
    mid = len(width) // 2  # away from the border: ``period`` pixels, one of each position
    width = width[mid:mid + period]
    return int(width.min()), int(width.max())


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The centre ``size`` (int or (h, w)) of the last two dimensions of ``x`` ("crop" in Fig. 1).

    When the size difference is odd the extra row/column is dropped at the bottom/right.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    H, W = x.shape[-2], x.shape[-1]
    if h > H or w > W or h < 0 or w < 0:
        raise ValueError(f"size={(h, w)} cannot be cropped from a tensor of spatial size {(H, W)}")
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top : top + h, left : left + w]


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by a ReLU (optionally BatchNorm before the ReLU)."""

    def __init__(self, in_ch: int, out_ch: int, pad: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_ch, out_ch):
            layers.append(nn.Conv2d(c_in, out_ch, 3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Up(nn.Module):
    """The paper's "up-convolution": upsample by 2 and halve the channels.

    ``"transpose"``: ConvTranspose2d(2x2, stride 2) (as in the authors' Caffe model and the
    parameter count 31,030,658). ``"bilinear"``: bilinear upsampling followed by a 1x1 convolution
    that halves the channels (a common student variant; a 2x2 convolution would shift the grid).
    """

    def __init__(self, in_ch: int, out_ch: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        else:
            self.up = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, in_ch, H, W) up-sampled to (N, out_ch, 2H, 2W)."""
        if self.mode == "transpose":
            return self.up(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.up(x)


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015, Fig. 1).

    Args:
        in_channels: image channels (1 for the paper's gray-value images).
        num_classes: output channels; the paper's energy function applies a pixel-wise softmax to
            them. Use 1 for a single sigmoid foreground logit (BCE/Dice training).
        depth: resolution levels (5 in the paper: 4 max-pools).
        base_channels: feature channels of the first level (64); they double at every level.
        padding: ``"valid"`` (unpadded convolutions, output smaller than input; the paper) or
            ``"same"`` (zero-padded, output size = input size).
        batch_norm: BatchNorm2d after every 3x3 convolution (not in the paper).
        dropout: drop probability of the dropout layers "at the end of the contracting path"
            (sec. 3.1). The paper gives neither the rate nor the exact position; we apply it to the
            outputs of the two deepest levels (the paper says "layers", plural), so the deepest
            skip connection sees it as well. 0 disables it.
        up_mode: ``"transpose"`` (2x2 up-convolution) or ``"bilinear"``.
        input_mean, input_std: the network sees ``(x - input_mean) / input_std``. Set them to the
            training images' statistics: a network without BatchNorm (the paper's) hardly learns
            from low-contrast images such as DIC (HeLa frames: mean 0.46, std 0.04 in [0, 1]).
            Fixed numbers, not per-tile statistics, so that overlap-tile prediction still equals
            one pass over the whole image; saved with the model's configuration.

    Weights: Gaussian with std ``sqrt(2 / N)``, ``N = k * k * C_in`` incoming nodes (sec. 3),
    applied to every convolution including the 2x2 up-convolution (read as the "2x2
    convolution" of sec. 2) and the final 1x1 layer; biases zero.

    ``forward(x)`` takes (N, in_channels, H, W) and returns logits (N, num_classes, H_out,
    W_out) with ``H_out = self.output_size(H)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 5,
        base_channels: int = 64,
        padding: str = "valid",
        batch_norm: bool = False,
        dropout: float = 0.5,
        up_mode: str = "transpose",
        input_mean: float = 0.0,
        input_std: float = 1.0,
    ) -> None:
        super().__init__()
        if not (math.isfinite(input_std) and input_std > 0 and math.isfinite(input_mean)):
            raise ValueError(
                f"input_mean must be finite and input_std > 0, got {input_mean!r}, {input_std!r}"
            )
        _check_depth_padding(depth, padding)
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("base_channels", base_channels),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if up_mode not in _UP_MODES:
            raise ValueError(f"up_mode must be one of {_UP_MODES}, got {up_mode!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "depth": depth,
            "base_channels": base_channels,
            "padding": padding,
            "batch_norm": bool(batch_norm),
            "dropout": float(dropout),
            "up_mode": up_mode,
            "input_mean": float(input_mean),
            "input_std": float(input_std),
        }
        self.input_mean, self.input_std = float(input_mean), float(input_std)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.padding = padding
        pad = 1 if padding == "same" else 0
        chans = [base_channels * 2**i for i in range(depth)]

        self.down = nn.ModuleList()
        c_prev = in_channels
        for c in chans:
            self.down.append(DoubleConv(c_prev, c, pad, batch_norm))
            c_prev = c
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # dropout at the end of the contracting path: the two deepest levels (one if depth == 1)
        self._dropout_levels = set(range(max(0, depth - 2), depth))

        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for c in reversed(chans[:-1]):
            self.ups.append(Up(2 * c, c, up_mode))
            self.up_convs.append(DoubleConv(2 * c, c, pad, batch_norm))
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        self.reset_parameters()

    @classmethod
    def paper(cls, in_channels: int = 1, num_classes: int = 2) -> UNet:
        """The 2015 network exactly: depth 5, 64 base channels, valid padding, transposed
        up-convolutions, no BatchNorm, dropout 0.5 (the rate is our choice; the paper gives
        none)."""
        return cls(in_channels=in_channels, num_classes=num_classes)

    def reset_parameters(self) -> None:
        """Gaussian init with std sqrt(2/N), N = k*k*C_in (He et al. 2015, paper sec. 3)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                k = m.kernel_size[0] * m.kernel_size[1]
                n = k * m.in_channels
                nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / n))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def output_size(self, input_size: int) -> int:
        """Output side length for an input of side ``input_size`` (ValueError if invalid)."""
        return output_size(input_size, self.depth, self.padding)

    def valid_input_size(self, size: int, mode: str = "up") -> int:
        """A valid input side length near ``size``; see :func:`valid_input_size`."""
        return valid_input_size(size, self.depth, self.padding, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N, n_classes, H', W') of images ``x`` (N, in_channels, H, W); with valid
        convolutions the output is smaller than the input (:meth:`output_size`)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        for dim_name, s in (("height", x.shape[2]), ("width", x.shape[3])):
            if _trace_sizes(int(s), self.depth, self.padding) is None:
                raise ValueError(
                    f"input {dim_name} {int(s)} is not valid for this U-Net: "
                    f"{_nearest_hint(int(s), self.depth, self.padding)}"
                )
        if self.input_mean != 0.0 or self.input_std != 1.0:
            x = (x - self.input_mean) / self.input_std
        skips: list[torch.Tensor] = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level in self._dropout_levels:
                x = self.drop(x)
            if level < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for up, conv in zip(self.ups, self.up_convs, strict=True):
            x = up(x)
            skip = center_crop(skips.pop(), (x.shape[2], x.shape[3]))
            x = conv(torch.cat([skip, x], dim=1))
        return self.head(x)


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------

_PLAIN = (type(None), bool, int, float, str)


def _check_plain(value: Any, where: str) -> None:
    """Checkpoints must load with ``weights_only=True``: tensors and plain containers only."""
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; use str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; checkpoints hold only tensors, None, bool, int, "
        "float, str, lists, tuples and dicts so that they load with weights_only=True"
    )


def save_checkpoint(path: str | os.PathLike, model: UNet, **extra: Any) -> Path:
    """Write ``model``'s config and weights plus ``extra`` (e.g. epoch, optimizer state) to
    ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    if not isinstance(model, UNet):
        raise TypeError(f"model must be a unetlib UNet, got {type(model).__name__}")
    _check_plain(extra, "extra")
    payload = {
        "format": _CHECKPOINT_FORMAT,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    return write_atomic(path, lambda f: torch.save(payload, f), fsync=True)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = None
) -> tuple[UNet, dict[str, Any]]:
    """Rebuild the UNet saved by :func:`save_checkpoint`; returns ``(model, extra)``.

    Loads with ``torch.load(..., weights_only=True)``. The model is moved to ``map_location``
    when that is a device (string or ``torch.device``) and is returned in eval mode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a unetlib UNet checkpoint ({_CHECKPOINT_FORMAT})")
    # the stored config is checked against the stored weights on the meta device first, so that
    # a corrupt or hostile config cannot allocate gigabytes before it is found out
    state = payload.get("state_dict")
    try:
        with torch.device("meta"):
            probe = UNet(**payload["config"])
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: its stored network configuration is invalid ({err})") from None
    shapes = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    if not isinstance(state, dict) or {k: tuple(getattr(v, "shape", ())) for k, v in
                                       state.items()} != shapes:
        raise ValueError(f"{path}: its weights do not match its stored network configuration")
    model = UNet(**payload["config"])
    model.load_state_dict(state)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    return model, payload["extra"]
