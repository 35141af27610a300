"""BiSeNet face parsing (zllrunning/face-parsing.PyTorch) as MuseTalk uses it for blending.

Module names follow the released ``79999_iter.pth`` so that it loads strictly; the ResNet-18
backbone is part of that file (the separate ``resnet18-5c106cde.pth`` only initialises it
upstream and is fully overwritten, so it is accepted but not needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

NUM_CLASSES = 19
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x if self.downsample is None else self.downsample(x)
        return F.relu(short + r)


def _layer(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class Resnet18(nn.Module):
    """ResNet-18 trunk returning the 1/8, 1/16 and 1/32 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        f8 = self.layer2(self.layer1(x))
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        att = torch.sigmoid(self.bn_atten(self.conv_atten(F.avg_pool2d(feat, feat.shape[2:]))))
        return feat * att


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.resnet(x)
        avg = self.conv_avg(F.avg_pool2d(f32, f32.shape[2:]))
        s32 = self.arm32(f32) + F.interpolate(avg, f32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(s32, f16.shape[2:], mode="nearest"))
        s16 = self.arm16(f16) + up32
        up16 = self.conv_head16(F.interpolate(s16, f8.shape[2:], mode="nearest"))
        return f8, up16, up32


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([a, b], dim=1))
        att = torch.sigmoid(self.conv2(F.relu(self.conv1(F.avg_pool2d(feat, feat.shape[2:])))))
        return feat * att + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, cin: int, mid: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """Face parsing network; ``forward`` returns the main logits at input size (the only output
    inference uses; the two auxiliary heads exist so the checkpoint loads strictly)."""

    def __init__(self, n_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, cp8, _ = self.cp(x)
        out = self.conv_out(self.ffm(f8, cp8))
        return F.interpolate(out, x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(path: str | Path) -> BiSeNet:
    """Load ``79999_iter.pth`` strictly (``module.`` prefixes of DataParallel saves are stripped)."""
    from lipsynckit.weights import load_checkpoint, load_strict, unwrap_state_dict

    net = BiSeNet()
    load_strict(net, unwrap_state_dict(load_checkpoint(path)), path=path, what="BiSeNet face-parsing")
    return net.eval()


class FaceParser:
    """Callable ``PIL RGB image -> (512, 512) labels`` (official preprocessing: PIL bilinear to
    512, ToTensor, ImageNet normalisation, argmax of the main head)."""

    def __init__(self, net: BiSeNet, device: torch.device | str = "cpu") -> None:
        self.net = net.to(device).eval()
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> np.ndarray:
        img = image.convert("RGB").resize((512, 512), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(_MEAN).view(3, 1, 1)
        std = torch.tensor(_STD).view(3, 1, 1)
        x = ((x - mean) / std)[None].to(self.device, next(self.net.parameters()).dtype)
        return self.net(x)[0].float().argmax(0).cpu().numpy()
