"""The same small Falcon app for every WSGI server (scenario 12): one plaintext resource."""

from __future__ import annotations

import falcon
from payloads import PLAINTEXT


class Plaintext:
    def on_get(self, request: falcon.Request, response: falcon.Response) -> None:
        response.data = PLAINTEXT
        response.content_type = falcon.MEDIA_TEXT


app = falcon.App()
app.add_route("/falcon/plaintext", Plaintext())
