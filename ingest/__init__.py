"""Ingest: the audio entry service and the stream simulator."""
