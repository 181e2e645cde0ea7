"""Shared pieces of the Whisper Streaming Pipeline: settings, wire schemas, audio helpers, errors."""
