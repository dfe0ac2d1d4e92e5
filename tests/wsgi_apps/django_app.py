"""A Django app for the WSGI tests (settings: wsgi_apps.django_settings)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wsgi_apps.django_settings")

from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse, JsonResponse
from django.urls import path


def index(request):
    return HttpResponse("hello from django")


def echo(request):
    return JsonResponse({"method": request.method, "length": len(request.body),
                         "query": request.GET.get("q")})


urlpatterns = [path("", index), path("echo", echo)]
application = get_wsgi_application()
