"""The Flask integration: a :class:`~pbidentity.PbIdentity`'s endpoints in a Flask app.

::

    import pbidentity
    import pbidentity.flask

    identity = pbidentity.PbIdentity("sqlite:///pbidentity.db")
    pbidentity.flask.init_app(app, identity)      # /scim/v2 (and /saml)

    @app.post("/settings/scim/token")
    def new_token():
        admin = pbidentity.flask.get_identity().admin
        ...

``init_app(app)`` without an identity builds one on the app's
``PBIDENTITY_DATABASE_URL`` (the application-factory style).

Flask is WSGI, so the views reuse the WSGI adapter's translation: the same
paths, base URLs (``SCRIPT_NAME`` included), headers and body cap. Flask
never reads the body itself, so ``MAX_CONTENT_LENGTH`` and form parsing do
not apply to these endpoints; CSRF protection must exempt the blueprint
(``app.blueprints["pbidentity"]``).
"""

from __future__ import annotations

from collections.abc import Mapping

import flask

from pbidentity._front import SCIM_PREFIX
from pbidentity._front import PbIdentity
from pbidentity.exceptions import ConfigurationError
from pbidentity.http import Handler
from pbidentity.http import Response
from pbidentity.http import Router
from pbidentity.wsgi import read_request

__all__ = ["get_identity", "init_app"]

#: Every method goes to the core, which answers 405 itself where it must.
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

#: Where the identity is kept, in ``app.extensions``.
_EXTENSION = "pbidentity"


def init_app(
    app: flask.Flask,
    identity: PbIdentity | None = None,
    *,
    scim_prefix: str | None = None,
    mounts: Mapping[str, Handler] | None = None,
    name: str = "pbidentity",
) -> PbIdentity:
    """Serve ``identity``'s endpoints in ``app`` as the blueprint ``name``; returns the identity.

    SCIM is served under ``scim_prefix`` (else the ``PBIDENTITY_SCIM_PREFIX``
    config key, else ``/scim/v2``), SAML (when configured) under its
    configuration's prefix, and ``mounts`` are more handlers by prefix.
    Without ``identity``, one is built on the ``PBIDENTITY_DATABASE_URL``
    config key. :func:`get_identity` gives it back to the app's views.
    """
    if identity is None:
        database_url = app.config.get("PBIDENTITY_DATABASE_URL")
        if not database_url:
            raise ConfigurationError(
                "pbidentity has nothing to serve: set PBIDENTITY_DATABASE_URL, or pass "
                "a PbIdentity to pbidentity.flask.init_app"
            )
        identity = PbIdentity(database_url)
    prefix = scim_prefix or app.config.get("PBIDENTITY_SCIM_PREFIX", SCIM_PREFIX)
    app.register_blueprint(_blueprint(identity.router(scim_prefix=prefix, mounts=mounts), name))
    app.extensions[_EXTENSION] = identity
    return identity


def get_identity(app: flask.Flask | None = None) -> PbIdentity:
    """The :class:`~pbidentity.PbIdentity` served in ``app`` (the current app by default)."""
    identity = (app or flask.current_app).extensions.get(_EXTENSION)
    if not isinstance(identity, PbIdentity):
        raise ConfigurationError(
            "pbidentity is not set up in this app: call pbidentity.flask.init_app(app, identity)"
        )
    return identity


def _blueprint(router: Router, name: str) -> flask.Blueprint:
    blueprint = flask.Blueprint(name, __name__)

    def serve(rest: str = "") -> flask.Response:
        found = read_request(flask.request.environ, router)
        if found is None:
            flask.abort(404)
        mount, request = found
        return _flask_response(mount.handler.handle(request))

    for mount in router.mounts:
        # The prefix itself, the prefix with a slash, and everything below:
        # the core answers all three. No slash merging or redirects, and no
        # automatic OPTIONS answer: the core decides.
        rules = dict.fromkeys(
            (mount.prefix or "/", mount.prefix + "/", mount.prefix + "/<path:rest>")
        )
        for rule in rules:
            blueprint.add_url_rule(
                rule,
                endpoint=f"serve{mount.prefix.replace('/', '_').replace('.', '_')}",
                view_func=serve,
                methods=_METHODS,
                provide_automatic_options=False,
                strict_slashes=False,
                merge_slashes=False,
            )
    return blueprint


def _flask_response(response: Response) -> flask.Response:
    out = flask.current_app.response_class(
        response.body, status=response.status, headers=list(response.headers)
    )
    if response.header("content-type") is None:
        # Flask would add text/html; the core's headers go out as they are.
        del out.headers["Content-Type"]
    return out
