"""The Redis data contract: the only code that knows how the services' shared data is stored.

Ingest, workers and publishers meet only here, and may run different versions during a rolling update,
so every key name, field name and Lua script is written once, in the module that owns it:

- :mod:`~common.contract.keys`: every key and channel name.
- :mod:`~common.contract.sessions`: the session hash (record, status, audio counters, token hashes), the
  set of active sessions, the scripts that start, append and end a session's audio, and the close.
- :mod:`~common.contract.audio`: the audio stream's entries, their reading, the fenced trim.
- :mod:`~common.contract.captions`: the caption stream, the live channel, sequence numbers, checkpoints
  and the fenced commit script; the caption codec both sides use.
- :mod:`~common.contract.leases`: leases, the fencing check every worker write begins with, and the
  workers' advertisements.
- :mod:`~common.contract.links`: short display links (a code a person can type, and where it leads).
- :mod:`~common.contract.scripts`: how the scripts are written and run.
"""
