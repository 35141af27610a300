"""lipsynckit plugin: wav2lip."""
