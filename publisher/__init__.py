"""Publisher: caption fan-out, history replay, export and the display page."""
