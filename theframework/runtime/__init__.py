"""The runtime under handlers: ``offload`` (threads and processes for blocking or CPU-bound
calls). ``theframework.monkey`` (the cooperative standard library) belongs to this layer too and
keeps its public path. Both stand on the engine alone."""
