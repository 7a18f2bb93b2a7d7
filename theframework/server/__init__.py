"""One serving process: loading the application, sockets, the one boot sequence, logs, signals,
serving. It knows nothing of supervisors. Import the submodules (this package imports nothing,
so that the supervisor can use ``server.sockets`` without loading the engine)."""
