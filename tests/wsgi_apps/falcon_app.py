"""A Falcon application for the WSGI tests: resources, media (JSON) and query parameters."""

from __future__ import annotations

import falcon

ITEMS: dict[str, dict[str, object]] = {}


class ItemResource:
    def on_get(self, request: falcon.Request, response: falcon.Response, name: str) -> None:
        item = ITEMS.get(name)
        if item is None:
            raise falcon.HTTPNotFound(title="no such item", description=name)
        response.media = item

    def on_put(self, request: falcon.Request, response: falcon.Response, name: str) -> None:
        ITEMS[name] = request.get_media()
        response.status = falcon.HTTP_201
        response.media = {"stored": name}


class HelloResource:
    def on_get(self, request: falcon.Request, response: falcon.Response) -> None:
        response.content_type = falcon.MEDIA_TEXT
        response.text = f"hello {request.get_param('who', default='falcon')}"


app = falcon.App()
app.add_route("/hello", HelloResource())
app.add_route("/items/{name}", ItemResource())
