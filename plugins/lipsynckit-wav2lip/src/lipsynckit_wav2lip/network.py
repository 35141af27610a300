"""The Wav2Lip generator, laid out so the official checkpoints load with ``strict=True``.

Attribute names (``face_encoder_blocks``, ``audio_encoder``, ``face_decoder_blocks``,
``output_block`` and each unit's ``conv_block``) are the official state-dict names
(``manifest_wav2lip.json``, 352 keys, 36,298,035 parameters). The module is TorchScript-scriptable,
which is how the ``Wav2Lip-SD-*.pt`` files are distributed.
"""

from __future__ import annotations

import torch
from torch import nn

# forward()'s arguments by name, as the ONNX export names its inputs (onnx_export, onnx_quantize)
INPUT_NAMES = ("audio", "face")


class ConvUnit(nn.Module):
    """Conv (with bias) → BatchNorm → optional residual add of the input → ReLU.

    The residual is added before the ReLU, as in the official ``models/conv.py``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class DeconvUnit(nn.Module):
    """Transposed conv → BatchNorm → ReLU (never residual)."""

    def __init__(
        self, cin: int, cout: int, kernel_size: int, stride: int, padding: int, output_padding: int = 0
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _res(ch: int, n: int) -> list[nn.Module]:
    """``n`` residual 3x3 units keeping ``ch`` channels."""
    return [ConvUnit(ch, ch, 3, 1, 1, residual=True) for _ in range(n)]


class Wav2LipNet(nn.Module):
    """The official 96x96 Wav2Lip generator.

    ``forward(audio (B,1,80,16), face (B,6,96,96)) -> (B,3,96,96)`` in [0, 1], BGR. The face input
    is ``[masked, reference]`` on the channel axis, each BGR/255. 5-D inputs ``(B,T,1,80,16)`` /
    ``(B,6,T,96,96)`` are folded T-major and returned as ``(B,3,T,96,96)`` (the training path).
    """

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvUnit(6, 16, 7, 1, 3)),
                nn.Sequential(ConvUnit(16, 32, 3, 2, 1), *_res(32, 2)),
                nn.Sequential(ConvUnit(32, 64, 3, 2, 1), *_res(64, 3)),
                nn.Sequential(ConvUnit(64, 128, 3, 2, 1), *_res(128, 2)),
                nn.Sequential(ConvUnit(128, 256, 3, 2, 1), *_res(256, 2)),
                nn.Sequential(ConvUnit(256, 512, 3, 2, 1), *_res(512, 1)),
                nn.Sequential(ConvUnit(512, 512, 3, 1, 0), ConvUnit(512, 512, 1, 1, 0)),
            ]
        )
        self.audio_encoder = nn.Sequential(
            ConvUnit(1, 32, 3, 1, 1),
            *_res(32, 2),
            ConvUnit(32, 64, 3, (3, 1), 1),
            *_res(64, 2),
            ConvUnit(64, 128, 3, 3, 1),
            *_res(128, 2),
            ConvUnit(128, 256, 3, (3, 2), 1),
            *_res(256, 1),
            ConvUnit(256, 512, 3, 1, 0),
            ConvUnit(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvUnit(512, 512, 1, 1, 0)),
                nn.Sequential(DeconvUnit(1024, 512, 3, 1, 0), *_res(512, 1)),
                nn.Sequential(DeconvUnit(1024, 512, 3, 2, 1, 1), *_res(512, 2)),
                nn.Sequential(DeconvUnit(768, 384, 3, 2, 1, 1), *_res(384, 2)),
                nn.Sequential(DeconvUnit(512, 256, 3, 2, 1, 1), *_res(256, 2)),
                nn.Sequential(DeconvUnit(320, 128, 3, 2, 1, 1), *_res(128, 2)),
                nn.Sequential(DeconvUnit(160, 64, 3, 2, 1, 1), *_res(64, 2)),
            ]
        )
        # official: Sequential(Conv2d unit, nn.Conv2d, nn.Sigmoid); the Sigmoid has no state, so it is
        # applied in forward() and logits() stays reachable for checks and for mixed precision.
        self.output_block = nn.Sequential(
            ConvUnit(80, 32, 3, 1, 1), nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0)
        )

    def logits(self, audio: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output for 4-D inputs ``(B,1,80,16)``, ``(B,6,96,96)``."""
        x = self.audio_encoder(audio)
        skips: list[torch.Tensor] = []
        f = face
        for block in self.face_encoder_blocks:
            f = block(f)
            skips.append(f)
        for block in self.face_decoder_blocks:
            x = block(x)
            x = torch.cat((x, skips.pop()), dim=1)
        return self.output_block(x)

    def forward(self, audio: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        if face.dim() > 4:
            b = audio.size(0)
            t = audio.size(1)
            # fold T into the batch, T-major (all items of t=0 first), as the official code does
            audio = torch.cat([audio[:, i] for i in range(t)], dim=0)
            face = torch.cat([face[:, :, i] for i in range(t)], dim=0)
            out = torch.sigmoid(self.logits(audio, face))
            return torch.stack(torch.split(out, b, dim=0), dim=2)
        return torch.sigmoid(self.logits(audio, face))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (36,298,035 for the generator)."""
    return sum(p.numel() for p in module.parameters())
