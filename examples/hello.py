"""The smallest theframework application.

python -m theframework examples.hello:app --port 8000
curl localhost:8000/hello
curl localhost:8000/users/42
curl -d '{"a": 1}' localhost:8000/echo
"""

from __future__ import annotations

from theframework import Framework, Request, Response

app = Framework()


@app.get("/hello")
def hello(request: Request, response: Response) -> None:
    response.set_header("Content-Type", "text/plain")
    response.write("hello world")


@app.get("/users/{id}")
def user(request: Request, response: Response) -> None:
    response.json({"id": request.params["id"]})


@app.post("/echo")
def echo(request: Request, response: Response) -> None:
    # Invalid JSON makes request.json() raise HTTPError(400), answered by the framework.
    response.json(request.json())


if __name__ == "__main__":
    app.run()
