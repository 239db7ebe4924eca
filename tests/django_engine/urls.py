"""Views the engine tests drive through Django's real session middleware."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path


def read(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"data": dict(request.session.items())})


def write(request: HttpRequest) -> HttpResponse:
    for key, value in request.GET.items():
        request.session[key] = value
    return JsonResponse({"ok": True})


def remove(request: HttpRequest) -> HttpResponse:
    for key in request.GET:
        request.session.pop(key, None)
    return JsonResponse({"ok": True})


def login(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()
    request.session["_auth_user_id"] = request.GET["user"]
    return JsonResponse({"key": request.session.session_key})


def count(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"views": request.session.increment("views")})  # type: ignore[attr-defined]


def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return JsonResponse({"ok": True})


urlpatterns = [
    path("read", read),
    path("write", write),
    path("remove", remove),
    path("login", login),
    path("logout", logout),
    path("count", count),
]
