"""Media I/O: streaming video/image input, audio loading and resampling, atomic video output.

Everything is PyAV (FFmpeg in-process) plus soundfile; no subprocess, no torchaudio.
"""

from __future__ import annotations

from lipsynckit.media.audio import SILENCE_PEAK, load_audio, read_audio_track
from lipsynckit.media.index_map import IndexMode, index_map
from lipsynckit.media.resample import resample
from lipsynckit.media.sink import VideoSink, as_fraction
from lipsynckit.media.video import IMAGE_EXTENSIONS, VideoSource, is_image_file, probe, read_video_frames

__all__ = [
    "IMAGE_EXTENSIONS",
    "SILENCE_PEAK",
    "IndexMode",
    "VideoSink",
    "VideoSource",
    "as_fraction",
    "index_map",
    "is_image_file",
    "load_audio",
    "probe",
    "read_audio_track",
    "read_video_frames",
    "resample",
]
