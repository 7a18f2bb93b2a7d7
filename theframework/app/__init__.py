"""The application layer: Framework (routing, middleware, lifecycle hooks). It knows nothing of
sockets, processes or WSGI; ``Framework.run()`` hands over to ``theframework.main.serve``."""

from .framework import Framework, Handler, Hook, Middleware, Next

__all__ = ["Framework", "Handler", "Hook", "Middleware", "Next"]
