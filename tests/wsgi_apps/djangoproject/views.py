from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello from django at {request.path}", content_type="text/plain")


@csrf_exempt
def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "method": request.method,
            "body": json.loads(request.body or b"null"),
            "query": request.GET.get("q"),
            "script_name": request.META["SCRIPT_NAME"],
            "absolute": request.build_absolute_uri(),
        }
    )
