"""The LatentSync runtime on the lipsynckit protocol (written from ``LipsyncPipeline.__call__``).

Per job (``WorkItem.job_id``) the official pipeline draws ONE noise tensor ``(1, 4, 1, h, w)`` and
repeats it over every frame; then, for each 16-frame chunk in order, it draws the VAE posterior
samples of the masked faces and of the reference faces from the same generator, runs DDIM with
classifier-free guidance over the audio windows, decodes, and keeps the generated pixels only under
the mouth mask. :class:`LatentSyncRuntime` keeps that generator and noise per job (chunks of a job
must arrive in order, as the scheduler hands them), so a run chunk by chunk equals the official
run over the whole video.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lipsynckit.errors import ModelUnavailableError
from lipsynckit.model import ModelInfo
from lipsynckit.model_base import BaseLipSyncModel
from lipsynckit.nn.whisper import SAMPLE_RATE
from lipsynckit.types import AudioClip, Face, FaceTrack, ModelBatch, PreparedFace, WorkItem

from .audio import WhisperEncoder, feature_chunks, quantize_int16, whisper_features
from .face import AlignedFace, Aligner, face_anchors, load_mask, smooth_track
from .options import SCHEDULER_CONFIG, VAE_SHIFT, LatentSyncOptions
from .unet import DeepCacheState, UNet3DConditionModel

log = logging.getLogger(__name__)

MAX_JOBS = 64  # per-job noise states kept (oldest dropped first)
CHUNK = 16  # frames denoised together (configs: data.num_frames)


@dataclass
class _JobState:
    generator: torch.Generator
    noise: torch.Tensor  # (1, 4, 1, h, w), shared by every frame of the job
    next_chunk: int = 0  # index // 16 of the chunk expected next


@dataclass
class ChunkResult:
    """What one chunk produced: the raw decoder output and the mask-pasted faces, (F, 3, H, W) in [-1, 1]."""

    decoded: torch.Tensor
    pasted: torch.Tensor


class LatentSyncRuntime(BaseLipSyncModel):
    """LatentSync 1.5 (256 px) / 1.6 (512 px) on the lipsynckit protocol (``chunk_frames`` = 16)."""

    def __init__(
        self,
        info: ModelInfo,
        unet: UNet3DConditionModel,
        vae: Any,
        encoder: WhisperEncoder | None,
        resolution: int,
        options: LatentSyncOptions | None = None,
        device: torch.device | str = "cpu",
        vae_scaling: float = 0.18215,
        dtype: torch.dtype | None = None,
    ) -> None:
        from diffusers import DDIMScheduler

        self.info = info
        self.options = options or LatentSyncOptions()
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.encoder = encoder.eval() if encoder is not None else None
        self.resolution = resolution
        self.vae_scaling = vae_scaling
        self.vae_shift = VAE_SHIFT
        blocks = getattr(getattr(vae, "config", None), "block_out_channels", (0, 0, 0, 0))
        self.latent_size = resolution // (2 ** (len(blocks) - 1))
        self.scheduler = DDIMScheduler.from_config(dict(SCHEDULER_CONFIG))
        align_dtype = torch.float16 if self.options.align_dtype == "float16" else torch.float32
        self.aligner = Aligner(resolution, dtype=align_dtype)
        self.mask = load_mask(resolution)  # (res, res, 3) uint8, 255 = keep the source
        self._mask64 = torch.from_numpy(self.mask / 255.0).permute(2, 0, 1)  # float64, as the official
        self._jobs: OrderedDict[int, _JobState] = OrderedDict()
        self._lock = threading.Lock()
        self.last_chunk: ChunkResult | None = None
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        dev = torch.device(device)
        if dtype is None:  # the official rule: float16 on CUDA GPUs with compute capability > 7
            official_fp16 = (
                dev.type == "cuda"
                and torch.cuda.is_available()
                and torch.cuda.get_device_capability(dev)[0] > 7
            )
            dtype = torch.float16 if official_fp16 else torch.float32
        self.to(dev, dtype)

    # -- protocol: housekeeping --------------------------------------------------------------------

    def modules(self) -> Sequence[torch.nn.Module]:
        return [m for m in (self.unet, self.vae, self.encoder) if m is not None]

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> LatentSyncRuntime:
        self.device = torch.device(device)
        if dtype is not None:
            if self.device.type == "cpu" and dtype == torch.float16:
                log.warning("float16 on CPU is slow and not what the official code runs; keeping float32")
                dtype = torch.float32
            self.dtype = dtype
        for m in self.modules():
            p = next(m.parameters())
            if p.device != self.device:
                m.to(self.device)
            if p.dtype != self.dtype:
                m.to(self.dtype)
        return self

    def end_job(self, job_id: int) -> None:
        """Forget a job's noise state (optional: states are also dropped oldest-first)."""
        with self._lock:
            self._jobs.pop(job_id, None)

    # -- audio ---------------------------------------------------------------------------------------

    def whisper_features(self, audio: AudioClip) -> torch.Tensor:
        """Whisper-tiny encoder states at 50 per second, (T, 5, 384)."""
        if self.encoder is None:
            raise ModelUnavailableError(
                "this LatentSync instance was built without the Whisper encoder",
                stage="audio",
                remedy="load it with the whisper/tiny.pt checkpoint (official checkpoints/ layout)",
            )
        clip = audio.mono().resample(SAMPLE_RATE)
        wave = quantize_int16(clip.samples[0].numpy())
        return whisper_features(self.encoder, wave, dtype=self.dtype)

    def audio_features(self, audio: AudioClip, fps: float) -> torch.Tensor:
        """Per-frame audio windows (N, 50, 384); N follows the official ``feature2chunks`` rule."""
        return feature_chunks(self.whisper_features(audio), fps)

    # -- faces -----------------------------------------------------------------------------------------

    def adjust_track(self, track: FaceTrack, frame_size: tuple[int, int]) -> FaceTrack:
        """Alignment matrices for the whole source track, with the official frame-to-frame smoothing."""
        faces = smooth_track(
            list(track.faces), self.aligner, self.options.round_landmarks, self.options.approximate_landmarks
        )
        return FaceTrack(faces, detector=track.detector)

    def affine_for(self, face: Face) -> np.ndarray:
        """The face's alignment matrix: the smoothed one from :meth:`adjust_track`, else computed alone."""
        if isinstance(face, AlignedFace) and face.affine is not None:
            return np.asarray(face.affine, dtype=np.float32)
        anchors = face_anchors(face, self.options.round_landmarks, self.options.approximate_landmarks)
        m, _ = self.aligner.transform(anchors, None)
        return m

    def prepare(self, frame: np.ndarray, face: Face) -> PreparedFace:
        """The aligned face (res × res uint8 RGB), its affine matrix and the fixed mouth mask."""
        affine = self.affine_for(face)
        crop = self.aligner.align(frame, affine)
        box = self.aligner.region(affine, frame.shape[:2])
        return PreparedFace(box=box, crop=crop, data={"affine": affine, "mask": self.mask[..., 0].copy()})

    # -- generation ------------------------------------------------------------------------------------

    def _new_state(self) -> _JobState:
        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        gen = torch.Generator(device=gen_device)
        if self.options.seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(self.options.seed))
        lat = self.latent_size
        noise = torch.randn((1, 4, 1, lat, lat), generator=gen, device=gen_device, dtype=self.dtype).to(
            self.device
        )
        noise = noise * self.scheduler.init_noise_sigma
        return _JobState(gen, noise)

    def _state(self, job_id: int, first_index: int) -> _JobState:
        chunk = first_index // CHUNK
        with self._lock:
            st = self._jobs.get(job_id)
            if st is None or chunk == 0:
                st = self._new_state()
                self._jobs[job_id] = st
                while len(self._jobs) > MAX_JOBS:
                    self._jobs.popitem(last=False)
            elif chunk != st.next_chunk:
                # a later chunk is normal when whole chunks had no face or were silent (the gate skips
                # them); an earlier one means out-of-order delivery, which the scheduler should never do
                log.log(
                    logging.DEBUG if chunk > st.next_chunk else logging.WARNING,
                    "job %d: chunk %d arrived, expected chunk %d; the noise is still shared but the "
                    "posterior draws no longer follow the official order",
                    job_id,
                    chunk,
                    st.next_chunk,
                )
            st.next_chunk = chunk + 1
            self._jobs.move_to_end(job_id)
            return st

    def generate(self, batch: ModelBatch) -> list[np.ndarray]:
        """Generated aligned faces for the items of a batch, chunk by chunk of each job."""
        out: list[np.ndarray] = []
        groups: list[list[WorkItem]] = []
        for it in batch.items:
            # the official chunks are output frames [16k, 16k + 16) of a job (frames without a face
            # are simply absent from their chunk)
            same_chunk = (
                groups
                and groups[-1][-1].job_id == it.job_id
                and it.index > groups[-1][-1].index
                and it.index // CHUNK == groups[-1][-1].index // CHUNK
            )
            if same_chunk:
                groups[-1].append(it)
            else:
                groups.append([it])
        for items in groups:
            st = self._state(items[0].job_id, items[0].index)
            faces = np.stack([it.face.crop for it in items])
            audio = torch.stack([it.audio for it in items])
            res = self.run_chunk(st.generator, st.noise, faces, audio)
            self.last_chunk = res
            if self.options.exact_restore:
                out.extend(list(res.pasted.float().permute(0, 2, 3, 1).cpu().numpy()))
            else:
                img = ((res.pasted.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
                out.extend(list(img.permute(0, 2, 3, 1).cpu().numpy()))
        return out

    def _encode(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        lat = self.vae.encode(x).latent_dist.sample(generator=gen)
        lat = (lat - self.vae_shift) * self.vae_scaling
        return lat.permute(1, 0, 2, 3)[None]  # f c h w -> 1 c f h w

    @torch.no_grad()
    def run_chunk(
        self, gen: torch.Generator, noise: torch.Tensor, faces: np.ndarray, audio: torch.Tensor
    ) -> ChunkResult:
        """Denoise one chunk: ``faces`` (F, res, res, 3) uint8 aligned faces, ``audio`` (F, 50, 384)."""
        dev, dt = self.device, self.dtype
        n = faces.shape[0]
        lat_hw = self.latent_size
        imgs = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2)
        pixel_values = (imgs / 255.0 - 0.5) / 0.5
        masked = pixel_values * self._mask64  # float64, as the official arithmetic
        masks = self._mask64[0:1].expand(n, 1, -1, -1)
        mask_lat = F.interpolate(masks, size=(lat_hw, lat_hw)).to(dev, dt).permute(1, 0, 2, 3)[None]
        masked_lat = self._encode(masked.to(dev, dt), gen)
        ref_lat = self._encode(pixel_values.to(dev, dt), gen)
        cfg = self.options.guidance > 1.0
        ctx = audio.to(dev, dt)
        if cfg:
            ctx = torch.cat([torch.zeros_like(ctx), ctx])
            mask_lat, masked_lat, ref_lat = (torch.cat([t] * 2) for t in (mask_lat, masked_lat, ref_lat))
        latents = noise.repeat(1, 1, n, 1, 1)
        with self._lock:
            self.scheduler.set_timesteps(self.options.steps, device=dev)
            timesteps = self.scheduler.timesteps.clone()
        cache = DeepCacheState(self.options.deepcache_interval) if self.options.deepcache else None
        for t in timesteps:
            x = torch.cat([latents] * 2) if cfg else latents
            x = self.scheduler.scale_model_input(x, t)
            x = torch.cat([x, mask_lat, masked_lat, ref_lat], dim=1)
            pred = self.unet(x, t, encoder_hidden_states=ctx, cache=cache)
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + self.options.guidance * (cond - uncond)
            latents = self.scheduler.step(pred, t, latents, eta=self.options.eta, generator=gen).prev_sample
        z = latents / self.vae_scaling + self.vae_shift
        z = z[0].permute(1, 0, 2, 3)  # 1 c f h w -> f c h w
        decoded = self.vae.decode(z).sample
        keep = (1 - masks).to(dev, dt)
        pasted = decoded * keep + pixel_values.to(dev, dt) * (1 - keep)
        return ChunkResult(decoded=decoded, pasted=pasted)

    # -- compositing -------------------------------------------------------------------------------------

    def composite(self, frame: np.ndarray, face: PreparedFace, generated: np.ndarray) -> np.ndarray:
        """The official restoration: inverse affine warp and the eroded, blurred soft mask."""
        g = torch.from_numpy(np.ascontiguousarray(generated)).permute(2, 0, 1)
        if g.dtype == torch.uint8:
            g = g.float() / 255.0 * 2 - 1
        return self.aligner.restore(frame, g.float(), face.data["affine"])
