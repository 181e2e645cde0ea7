"""``wsp send``: a venue's audio source (a sound card, or any stream or file FFmpeg reads) into a session.

:mod:`~wsp.send.sources` says what a source is; :mod:`~wsp.send.media` and :mod:`~wsp.send.device` are the
two kinds, both resampled by :mod:`~wsp.send.resample`; :mod:`~wsp.send.meter` judges the level;
:mod:`~wsp.send.sender` moves the audio from a source to the ingest service (through :mod:`wsp.uplink`);
:mod:`~wsp.send.display` shows it in the terminal; :mod:`~wsp.send.commands` is the command.
"""
