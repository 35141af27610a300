"""Band-limited audio resampling in plain torch.

Implements the algorithm of ``torchaudio.functional.resample`` with its defaults
(``sinc_interp_hann``, ``lowpass_filter_width=6``, ``rolloff=0.99``): the two rates are reduced by
their gcd, one windowed-sinc filter per output phase is built, and a strided ``conv1d`` applies all
phases at once (a polyphase filter bank). torchaudio itself is not a dependency because PyPI has no
CPU build of it that loads with our torch; the models were trained on audio resampled this way, so
we reproduce it rather than use another resampler.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = ["resample", "sinc_resample_kernel"]


@lru_cache(maxsize=16)
def _kernel_cpu(
    orig: int, new: int, lowpass_filter_width: int, rolloff: float, dtype: torch.dtype
) -> tuple[torch.Tensor, int]:
    base = min(orig, new) * rolloff
    # Zero crossings of the sinc are spaced 1/base apart in input samples; keep `lowpass_filter_width` of them.
    width = math.ceil(lowpass_filter_width * orig / base)
    # Input sample offsets (in units of the reduced input period) every output phase looks at.
    taps = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    # Output phase k sits k/new input periods later: shift the taps back by that much.
    phases = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new
    t = (phases + taps) * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * (math.pi / lowpass_filter_width / 2)) ** 2  # Hann, zero at the filter edges
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones((), dtype=dtype), torch.sin(t) / t)
    kernel = sinc * window * (base / orig)  # unit gain in the pass band
    return kernel, width


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
    """
    g = math.gcd(int(orig_sr), int(new_sr))
    kernel, width = _kernel_cpu(
        int(orig_sr) // g, int(new_sr) // g, int(lowpass_filter_width), float(rolloff), dtype
    )
    return kernel.to(device) if device is not None else kernel, width


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
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    kernel, width = sinc_resample_kernel(
        orig_sr, new_sr, lowpass_filter_width, rolloff, samples.dtype, samples.device
    )

    shape = samples.shape
    length = int(shape[-1])
    flat = samples.reshape(-1, length)
    # Pad so that every output sample sees a full filter; the extra `orig` on the right lets the last
    # block of phases run, and the surplus is cut below.
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig)  # (B, new, blocks): phase-major
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)  # interleave phases in time order
    target = math.ceil(new * length / orig)
    return out[..., :target].reshape(*shape[:-1], -1)
