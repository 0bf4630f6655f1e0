import io
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def chunked_bodies(app):
    """Gunicorn de-chunks a `Transfer-Encoding: chunked` body and says so with
    `wsgi.input_terminated`, but Django reads only CONTENT_LENGTH bytes of it: none, as
    there is no Content-Length. Such a body is read here (one byte past the largest the
    API accepts, so the 413 still holds) and handed on with its length."""
    from django.conf import settings

    def application(environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and environ.get("wsgi.input_terminated") and not environ.get("CONTENT_LENGTH"):
            body = environ["wsgi.input"].read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        return app(environ, start_response)

    return application


def _application():
    django_app = get_wsgi_application()
    from billing.balance_hot_path import balance_hot_path  # needs the apps loaded

    return chunked_bodies(balance_hot_path(django_app))


application = _application()
