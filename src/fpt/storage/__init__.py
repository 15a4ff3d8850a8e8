"""Files on disk: atomic writes and locks, checkpoints, downloads, archives.

Everything here is plain I/O with clear errors; nothing knows about models or runs.
"""
