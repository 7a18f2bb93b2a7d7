"""Server-Sent Events: the response is streamed while the generator produces events.

    python -m theframework examples.sse:app
    curl -N localhost:8000/events

While one client waits between events (``sleep`` switches greenlets), the others are served.
"""

from __future__ import annotations

from collections.abc import Iterator

from theframework import Framework, Request, Response
from theframework._core import sleep

app = Framework()


def ticks(count: int) -> Iterator[str]:
    for number in range(1, count + 1):
        yield f"id: {number}\ndata: tick {number}\n\n"
        if number < count:
            sleep(0.1)


@app.get("/events")
def events(request: Request, response: Response) -> None:
    count = int(request.query_params.get("count", "5"))
    response.set_header("Content-Type", "text/event-stream")
    response.set_header("Cache-Control", "no-cache")
    response.stream(ticks(max(1, min(count, 100))))


if __name__ == "__main__":
    app.run()
