"""The MuseTalk runtime behind the lipsynckit protocol.

Per source frame (``prepare``, cacheable, audio-independent): crop box, 256x256 crop, masked and
reference VAE latents, the blending mask. Per output frame (``generate``): positional encoding of
the whisper window, one UNet step at t = 0, VAE decode. So a second audio track on the same
template only pays for the UNet and the decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lipsynckit.errors import AudioError
from lipsynckit.model import ModelInfo
from lipsynckit.model_base import StagedLipSyncModel
from lipsynckit.nn.whisper import HOP_LENGTH, WhisperEncoder
from lipsynckit.scheduler import host_to_device
from lipsynckit.types import AudioClip, Face, ModelBatch, PreparedFace
from lipsynckit_musetalk import audio as maudio
from lipsynckit_musetalk import blending, networks
from lipsynckit_musetalk.bisenet import FaceParser
from lipsynckit_musetalk.face import crop_box, crop_face
from lipsynckit_musetalk.options import MuseTalkOptions

log = logging.getLogger(__name__)

FACE_SIZE = 256


class MuseTalkModel(StagedLipSyncModel):
    """MuseTalk v1.0 / v1.5 with the official arithmetic (SPEC sections 4-8)."""

    def __init__(
        self,
        info: ModelInfo,
        unet: nn.Module,
        vae: nn.Module,
        whisper: WhisperEncoder,
        parser: FaceParser | None,
        options: MuseTalkOptions,
    ) -> None:
        self.info = info
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.whisper = whisper.eval()
        self.parser = parser
        self.options = options
        self.scaling_factor = networks.scaling_factor(vae)
        self.generator: torch.Generator | None = None
        if options.seed is not None:
            self.generator = torch.Generator().manual_seed(options.seed)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        if parser is None and options.face_parsing:
            log.warning(
                "MuseTalk: face-parsing weights (79999_iter.pth) not found; blending with lipsynckit's "
                "feathered lower-half mask instead of the official BiSeNet mask"
            )

    # -- device ---------------------------------------------------------------------------------
    def modules(self) -> Sequence[nn.Module]:
        mods: list[nn.Module] = [self.unet, self.vae, self.whisper]
        if self.parser is not None:
            mods.append(self.parser.net)
        return mods

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> MuseTalkModel:
        """Move all networks; float16 (``dtype=torch.float16``, the official ``--use_float16``) only on
        CUDA; None keeps the dtype it has (float32 when built)."""
        self.device = torch.device(device)
        if dtype is None:
            dtype = getattr(self, "dtype", torch.float32)
        if dtype == torch.float16 and self.device.type != "cuda":
            log.warning("MuseTalk: float16 needs CUDA; staying in float32 on %s", self.device)
            dtype = torch.float32
        self.dtype = dtype
        for m in (self.unet, self.vae, self.whisper):
            m.to(self.device)
            if next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
        if self.parser is not None:
            self.parser.net.to(self.device)
            self.parser.device = self.device
        return self

    # -- audio ----------------------------------------------------------------------------------
    @staticmethod
    def _wave16k(audio: AudioClip) -> torch.Tensor:
        clip = audio.mono()
        if clip.sample_rate != maudio.SAMPLE_RATE:
            clip = clip.resample(maudio.SAMPLE_RATE)
        return clip.samples[0]

    def whisper_features(self, audio: AudioClip) -> torch.Tensor:
        """(A, 5, 384) whisper hidden states of the clip (16 kHz mono), per the chosen front end."""
        return self._whisper(self._wave16k(audio), audio.source)

    def _whisper(self, wave: torch.Tensor, source: str | None) -> torch.Tensor:
        if wave.numel() < HOP_LENGTH:
            raise AudioError(
                f"audio too short for MuseTalk ({wave.numel()} samples at 16 kHz)",
                path=source,
                stage="audio",
                remedy="use at least 0.1 s of audio",
            )
        if self.options.audio_frontend == "legacy":
            return maudio.legacy_hidden_states(self.whisper, wave).float().cpu()
        return maudio.head_hidden_states(self.whisper, wave).float().cpu()

    def audio_features(self, audio: AudioClip, fps: float) -> torch.Tensor:
        """(N, 50, 384) whisper windows, one per output frame (N by the official frame rule)."""
        wave = self._wave16k(audio)
        feats = self._whisper(wave, audio.source)
        if self.options.audio_frontend == "legacy":
            idx = maudio.legacy_window_indices(feats.shape[0], fps)
        else:
            idx = maudio.head_window_indices(int(wave.numel()), fps)
        if len(idx) == 0:
            raise AudioError(
                "audio shorter than one video frame",
                path=audio.source,
                stage="audio",
                remedy="use a longer audio clip",
            )
        return maudio.gather_windows(feats, idx)

    # -- faces ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_reference(self, crops_rgb: np.ndarray) -> torch.Tensor:
        """(B, 256, 256, 3) RGB uint8 crops -> (B, 8, 32, 32) UNet input latents (masked first),
        sampled from the posterior as the official inference does (or its mode by option)."""
        bgr = np.ascontiguousarray(np.asarray(crops_rgb)[..., ::-1])
        masked, ref = networks.crops_to_vae_input(bgr)
        post_m = networks.vae_posterior(self.vae, masked)
        post_r = networks.vae_posterior(self.vae, ref)
        out = []
        for i in range(bgr.shape[0]):  # official order: masked draw, then reference draw, per frame
            one_m = networks.Posterior(post_m.mean[i : i + 1], post_m.std[i : i + 1])
            one_r = networks.Posterior(post_r.mean[i : i + 1], post_r.std[i : i + 1])
            lm = networks.sample_latent(
                one_m, self.scaling_factor, self.options.latent_sampling, self.generator
            )
            lr = networks.sample_latent(
                one_r, self.scaling_factor, self.options.latent_sampling, self.generator
            )
            out.append(torch.cat([lm, lr], dim=1))
        return torch.cat(out, dim=0).float().cpu()

    def crop_box(self, frame: np.ndarray, face: Face) -> tuple[int, int, int, int]:
        o = self.options
        return crop_box(face, frame.shape[:2], o.version, o.bbox_shift, o.extra_margin)

    def blend_material(
        self, frame: np.ndarray, box: tuple[int, int, int, int]
    ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Feathered alpha mask over the expanded box (depends on the source frame only)."""
        o = self.options
        parser = self.parser if o.face_parsing else None
        return blending.blend_material(
            frame,
            box,
            parser,
            mode=o.resolved_parsing_mode(),
            expand=o.resolved_expand(),
            blur_ratio=o.resolved_blur(),
            cheek_width=o.cheek_width,
        )

    def prepare(self, frame: np.ndarray, face: Face) -> PreparedFace:
        """Everything audio-independent for one source frame (cached per template in avatar mode)."""
        box = self.crop_box(frame, face)
        crop = crop_face(frame, box, FACE_SIZE)
        latents = self.encode_reference(crop[None])[0]
        mask, blend_box = self.blend_material(frame, box)
        return PreparedFace(
            box=box,
            crop=crop,
            data={
                "latents": latents,
                "blend_mask": torch.from_numpy(np.ascontiguousarray(mask)),
                "blend_box": [int(v) for v in blend_box],
                "parsed": self.parser is not None and self.options.face_parsing,
            },
        )

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, latents: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """One UNet pass at t = 0: (B, 8, 32, 32) latents + (B, 50, 384) windows -> (B, 4, 32, 32)."""
        audio = maudio.positional_encoding(windows.to(self.device, self.dtype))
        t = torch.zeros(1, dtype=torch.int64, device=self.device)  # filled on the device: no host copy
        out = self.unet(latents.to(self.device, self.dtype), t, encoder_hidden_states=audio)
        return out.sample  # type: ignore[no-any-return]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """(B, 4, 32, 32) -> (B, 256, 256, 3) RGB uint8 (official clamp/round)."""
        return networks.decode_latents(self.vae, latents)[1]

    # -- generate, in the three stages the scheduler overlaps on CUDA streams ---------------------
    def to_device(self, batch: ModelBatch, stream: object | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference latents and whisper windows, through pinned memory on CUDA."""
        latents = torch.stack([torch.as_tensor(f.data["latents"]) for f in batch.faces()])
        return host_to_device(latents, self.device), host_to_device(batch.audio(), self.device)

    @torch.no_grad()
    def compute(self, handle: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """UNet step and VAE decode: (B, 256, 256, 3) uint8 RGB left on the device (a quarter of the
        float image's bytes to copy back)."""
        latents, windows = handle
        return networks.decode_latents_on_device(self.vae, self.step(latents, windows))[1]

    def composite(self, frame: np.ndarray, face: PreparedFace, generated: np.ndarray) -> np.ndarray:
        """Official paste: bilinear resize to the crop box, alpha paste through the cached mask."""
        box = tuple(int(v) for v in face.box)
        assert len(box) == 4
        resized = blending.resize_face(generated, box)  # type: ignore[arg-type]
        mask = np.asarray(torch.as_tensor(face.data["blend_mask"]).cpu().numpy(), dtype=np.uint8)
        blend_box = tuple(int(v) for v in face.data["blend_box"])
        return blending.paste_with_mask(frame, resized, box, mask, blend_box)  # type: ignore[arg-type]
