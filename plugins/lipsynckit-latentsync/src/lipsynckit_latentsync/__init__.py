"""lipsynckit plugin: latentsync."""
