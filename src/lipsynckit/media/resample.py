"""Band-limited audio resampling in bounded memory.

:func:`resample` implements the algorithm of ``torchaudio.functional.resample`` with its defaults
(``sinc_interp_hann``, ``lowpass_filter_width=6``, ``rolloff=0.99``): the two rates are reduced by
their gcd, one windowed-sinc filter per output phase is built, and a strided ``conv1d`` applies all
phases at once (a polyphase filter bank). torchaudio itself is not a dependency because PyPI has no
CPU build of it that loads with our torch; the models were trained on audio resampled this way, so
their front ends use this exact filter.

The bank holds ``new' x (2*width + orig')`` taps for the reduced rates: tiny for the usual rates
(44100 -> 16000 is 160 x 475), but for rates with a gcd of 1 (44101 -> 16000) it is 16000 x 44135
floats, 2.8 GB, almost all zeros. Above :data:`KERNEL_BUDGET_BYTES` the same filter is evaluated
directly, block by block of output samples, on only the ``2*width + 2`` taps each output sample
sees: the same kernel values, the same sums up to float rounding, and memory bounded by
:data:`DIRECT_BLOCK_BYTES` whatever the rates.

:func:`resample_soxr` is the maintained resampler (libsoxr, very high quality) for audio no model
hears: the output's own sound track.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DIRECT_BLOCK_BYTES",
    "KERNEL_BUDGET_BYTES",
    "ResamplePlan",
    "resample",
    "resample_plan",
    "resample_soxr",
    "sinc_resample_kernel",
]

#: The largest polyphase filter bank :func:`resample` builds (bytes); above it, the direct path.
KERNEL_BUDGET_BYTES = 32 * 2**20
#: Working memory of one block of the direct path (bytes, all temporaries counted).
DIRECT_BLOCK_BYTES = 16 * 2**20
# bytes per (output sample, tap) in the direct path: int64 offsets, the float kernel and its
# temporaries (t, window, sinc), the gathered input per channel
_DIRECT_BYTES_PER_TAP = 8 + 6 * 4


@dataclass(frozen=True)
class ResamplePlan:
    """How :func:`resample` will run between two rates, and the memory its filter takes."""

    orig: int  # rates reduced by their gcd
    new: int
    width: int  # half width of the filter, in input samples of the reduced rate
    method: Literal["bank", "direct"]
    kernel_bytes: int  # the bank's size (built only with method "bank")
    block_outputs: int  # output samples per block of the direct path
    work_bytes: int  # the filter memory actually allocated: the bank, or one direct block


def _width(orig: int, new: int, lowpass_filter_width: int, rolloff: float) -> int:
    base = min(orig, new) * rolloff
    # Zero crossings of the sinc are spaced 1/base apart in input samples; keep `lowpass_filter_width` of them.
    return math.ceil(lowpass_filter_width * orig / base)


def resample_plan(
    orig_sr: int,
    new_sr: int,
    channels: int = 1,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
    itemsize: int = 4,
) -> ResamplePlan:
    """The plan for ``orig_sr -> new_sr``: the filter bank when it fits :data:`KERNEL_BUDGET_BYTES`,
    else the direct path in blocks of :data:`DIRECT_BLOCK_BYTES`."""
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    width = _width(orig, new, lowpass_filter_width, rolloff)
    kernel_bytes = new * (2 * width + orig) * itemsize
    taps = 2 * width + 2
    per_output = taps * (_DIRECT_BYTES_PER_TAP + 4 * max(1, channels))
    block = max(1, DIRECT_BLOCK_BYTES // per_output)
    if kernel_bytes <= KERNEL_BUDGET_BYTES:
        return ResamplePlan(orig, new, width, "bank", kernel_bytes, block, kernel_bytes)
    return ResamplePlan(orig, new, width, "direct", kernel_bytes, block, block * per_output)


def _taps_to_kernel(
    t: torch.Tensor, lowpass_filter_width: int, base: float, orig: int, dtype: torch.dtype
) -> torch.Tensor:
    """torchaudio's Hann-windowed sinc at positions ``t`` (in zero crossings), with unit pass-band gain."""
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * (math.pi / lowpass_filter_width / 2)) ** 2  # Hann, zero at the filter edges
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones((), dtype=dtype), torch.sin(t) / t)
    return sinc * window * (base / orig)


@lru_cache(maxsize=16)
def _kernel_cpu(
    orig: int, new: int, lowpass_filter_width: int, rolloff: float, dtype: torch.dtype
) -> tuple[torch.Tensor, int]:
    base = min(orig, new) * rolloff
    width = _width(orig, new, lowpass_filter_width, rolloff)
    # Input sample offsets (in units of the reduced input period) every output phase looks at.
    taps = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    # Output phase k sits k/new input periods later: shift the taps back by that much.
    phases = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new
    t = (phases + taps) * base
    return _taps_to_kernel(t, lowpass_filter_width, base, orig, dtype), width


def sinc_resample_kernel(
    orig_sr: int,
    new_sr: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, int]:
    """The polyphase filter bank ``(new', 1, 2*width + orig')`` and its half width, for reduced rates.

    Exposed so that callers resampling many clips between the same rates can see what is cached.
    Refused (``MemoryError``) above :data:`KERNEL_BUDGET_BYTES`: such rates take the direct path.
    """
    plan = resample_plan(orig_sr, new_sr, 1, lowpass_filter_width, rolloff, torch.finfo(dtype).bits // 8)
    if plan.method != "bank":
        raise MemoryError(
            f"the filter bank for {orig_sr} -> {new_sr} Hz would take {plan.kernel_bytes / 2**20:.0f} MiB "
            f"(budget {KERNEL_BUDGET_BYTES / 2**20:.0f} MiB); resample() evaluates it directly instead"
        )
    kernel, width = _kernel_cpu(plan.orig, plan.new, int(lowpass_filter_width), float(rolloff), dtype)
    return kernel.to(device) if device is not None else kernel, width


def _resample_direct(
    flat: torch.Tensor, plan: ResamplePlan, target: int, lowpass_filter_width: int, rolloff: float
) -> torch.Tensor:
    """The bank's result, block by block: output ``j`` is phase ``k = j % new`` of block ``b = j // new``
    and sees input ``b*orig + d`` for the bank's tap offsets ``d`` where its kernel is non-zero."""
    orig, new, width = plan.orig, plan.new, plan.width
    dtype, device = flat.dtype, flat.device
    base = min(orig, new) * rolloff
    n_ch, length = flat.shape
    # zeros around the input, as the bank's padding: index i is stored at i + lo
    lo, hi = width + 1, width + orig + 1
    padded = F.pad(flat, (lo, hi))
    rel = torch.arange(-width, width + 2, device=device)  # taps around q = floor(k * orig / new)
    out = torch.empty(n_ch, target, dtype=dtype, device=device)
    for j0 in range(0, target, plan.block_outputs):
        j = torch.arange(j0, min(target, j0 + plan.block_outputs), device=device)
        b, k = j // new, j % new
        d = (k * orig // new)[:, None] + rel[None]  # (J, T) tap offsets, as in the bank
        # the bank's tap values: (phase + tap) * base, computed in the same dtype and order
        t = ((-k).to(dtype)[:, None] / new + d.to(dtype) / orig) * base
        kernel = _taps_to_kernel(t, lowpass_filter_width, base, orig, dtype)
        kernel = torch.where((d >= -width) & (d < width + orig), kernel, torch.zeros((), dtype=dtype))
        idx = (b * orig)[:, None] + d + lo  # (J, T) into padded
        out[:, j0 : j0 + len(j)] = (padded[:, idx] * kernel[None]).sum(-1)
    return out


def resample(
    samples: torch.Tensor,
    orig_sr: int,
    new_sr: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
) -> torch.Tensor:
    """Resample ``samples`` (``(..., N)``, usually ``(C, N)``) from ``orig_sr`` to ``new_sr`` Hz.

    Output length is ``ceil(N * new_sr / orig_sr)``, as torchaudio returns it. Integer-valued tensors are
    converted to float32 first (torchaudio refuses them; we accept them because decoders hand them out).
    Memory beyond input and output stays within :data:`KERNEL_BUDGET_BYTES` for any pair of rates.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if lowpass_filter_width <= 0:
        raise ValueError("lowpass_filter_width must be positive")
    if int(orig_sr) != orig_sr or int(new_sr) != new_sr:
        raise ValueError(f"sample rates must be integers, got {orig_sr} -> {new_sr}")
    if not samples.is_floating_point():
        samples = samples.to(torch.float32)
    if orig_sr == new_sr:
        return samples
    shape = samples.shape
    length = int(shape[-1])
    flat = samples.reshape(-1, length)
    plan = resample_plan(
        orig_sr, new_sr, flat.shape[0], lowpass_filter_width, rolloff, samples.element_size()
    )
    orig, new = plan.orig, plan.new
    target = math.ceil(new * length / orig)
    if plan.method == "direct":
        out = _resample_direct(flat, plan, target, lowpass_filter_width, rolloff)
        return out.reshape(*shape[:-1], -1)
    kernel, width = sinc_resample_kernel(
        orig_sr, new_sr, lowpass_filter_width, rolloff, samples.dtype, samples.device
    )
    # Pad so that every output sample sees a full filter; the extra `orig` on the right lets the last
    # block of phases run, and the surplus is cut below.
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig)  # (B, new, blocks): phase-major
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)  # interleave phases in time order
    return out[..., :target].reshape(*shape[:-1], -1)


def resample_soxr(samples: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``(C, N)`` float audio with libsoxr (very high quality), for audio no model hears.

    Same output length as :func:`resample` (``ceil(N * new / orig)``); memory is the input and output.
    """
    import soxr

    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return samples
    x = samples.detach().cpu().to(torch.float32).reshape(-1, int(samples.shape[-1])).numpy()
    y = soxr.resample(np.ascontiguousarray(x.T), int(orig_sr), int(new_sr), quality="VHQ")
    y = np.asarray(y, dtype=np.float32).reshape(-1, x.shape[0]).T
    target = math.ceil(int(new_sr) * x.shape[1] / int(orig_sr))
    if y.shape[1] < target:
        y = np.pad(y, ((0, 0), (0, target - y.shape[1])))
    out = torch.from_numpy(np.ascontiguousarray(y[:, :target]))
    return out.reshape(*samples.shape[:-1], -1)
