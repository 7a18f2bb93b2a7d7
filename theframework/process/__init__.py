"""Processes: the pre-fork supervisor (its loop in ``supervisor``, its policy as pure functions in
``slots``), the worker entry, and what they share (ipc, heartbeat, pid file, systemd, process
titles, metrics). The supervisor process never loads the engine (``theframework._core``)."""
