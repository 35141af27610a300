"""lipsynckit: lip-sync a video or a still image to new audio."""
__version__ = "0.1.0"
