"""lipsynckit plugin: musetalk."""
