"""A plain ``handler(request, response)`` (no Framework): reads the whole body and answers with
its length. Used by the security tests, whose requests all hit this one handler."""

from __future__ import annotations

from theframework import Request, Response


def app(request: Request, response: Response) -> None:
    body = request.body
    response.set_header("Content-Type", "text/plain")
    response.write(f"{request.method} {request.raw_path} body={len(body)}")
