"""A minimal Django settings module for the WSGI tests: no database, no apps."""

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "wsgi_apps.django_app"
MIDDLEWARE = []
INSTALLED_APPS = []
DATABASES = {}
USE_TZ = True
