"""The Flask extension: pbidentity's endpoints in a Flask app, its services for the app's views.

::

    from pbidentity.flask import PbIdentity

    identity = PbIdentity()              # or PbIdentity(app, database_url=...)
    identity.init_app(app)               # PBIDENTITY_DATABASE_URL from app.config

    @app.post("/settings/scim/token")
    def new_token():
        admin = Admin(identity.scim.storage)
        ...

Flask is WSGI, so the views reuse the WSGI adapter's translation: the same
paths, base URLs (``SCRIPT_NAME`` included), headers and body cap. Flask
never reads the body itself, so ``MAX_CONTENT_LENGTH`` and form parsing do
not apply to these endpoints; CSRF protection must exempt :attr:`PbIdentity.blueprint`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import flask

from pbidentity.exceptions import ConfigurationError
from pbidentity.http import Handler
from pbidentity.http import Response
from pbidentity.http import Router
from pbidentity.saml import SamlService
from pbidentity.wsgi import DEFAULT_PREFIX
from pbidentity.wsgi import read_request

if TYPE_CHECKING:
    from pbidentity.scim import ScimConfig
    from pbidentity.scim import ScimService

__all__ = ["PbIdentity"]

#: Every method goes to the core, which answers 405 itself where it must.
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class PbIdentity:
    """Serve SCIM (and SAML) under their prefixes in a Flask app.

    The SCIM service is ``scim`` if given, else one built on ``database_url``
    or the ``PBIDENTITY_DATABASE_URL`` config key (with ``scim_config``).
    ``saml`` is a SAML handler to serve too, and ``mounts`` more handlers by
    prefix. The prefixes come from the arguments or the
    ``PBIDENTITY_SCIM_PREFIX`` / ``PBIDENTITY_SAML_PREFIX`` keys (``/scim/v2``
    and ``/saml`` by default). The services are built at the first
    :meth:`init_app`; later calls serve the same ones.
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        database_url: str | None = None,
        scim: ScimService | None = None,
        scim_config: ScimConfig | None = None,
        saml: SamlService | None = None,
        mounts: Mapping[str, Handler] | None = None,
        scim_prefix: str | None = None,
        saml_prefix: str | None = None,
        name: str = "pbidentity",
    ) -> None:
        self._scim = scim
        self._saml = saml
        self._mounts = dict(mounts or {})
        self._options = (database_url, scim_config, scim_prefix, saml_prefix)
        self.name = name
        self.router: Router | None = None
        self.blueprint: flask.Blueprint | None = None
        if app is not None:
            self.init_app(app)

    @property
    def scim(self) -> ScimService:
        """The SCIM service, for the host app's own views (settings pages, admin)."""
        if self._scim is None:
            raise ConfigurationError("pbidentity has no SCIM service: call init_app first")
        return self._scim

    @property
    def saml(self) -> SamlService:
        """The SAML service given to the extension."""
        if self._saml is None:
            raise ConfigurationError("pbidentity was given no SAML service (saml=...)")
        return self._saml

    def init_app(self, app: flask.Flask) -> None:
        """Register the endpoints on ``app``; the extension is ``app.extensions["pbidentity"]``."""
        if self.router is None or self.blueprint is None:
            self.router, self.blueprint = self._build(app.config)
        app.register_blueprint(self.blueprint)
        app.extensions["pbidentity"] = self

    def _build(self, config: flask.Config) -> tuple[Router, flask.Blueprint]:
        database_url, scim_config, scim_prefix, saml_prefix = self._options
        database_url = database_url or config.get("PBIDENTITY_DATABASE_URL")
        if self._scim is None and database_url:
            from pbidentity.scim import ScimService
            from pbidentity.storage import open_storage

            self._scim = ScimService(open_storage(database_url), scim_config)
        mounts = dict(self._mounts)
        if self._scim is not None:
            mounts[scim_prefix or config.get("PBIDENTITY_SCIM_PREFIX", DEFAULT_PREFIX)] = self._scim
        if self._saml is not None:
            mounts[saml_prefix or config.get("PBIDENTITY_SAML_PREFIX", "/saml")] = self._saml
        if not mounts:
            raise ConfigurationError(
                "pbidentity has nothing to serve: set PBIDENTITY_DATABASE_URL, or pass "
                "database_url=, scim= or saml= to PbIdentity"
            )
        router = Router(mounts)
        blueprint = flask.Blueprint(self.name, __name__)
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
                    view_func=self._serve,
                    methods=_METHODS,
                    provide_automatic_options=False,
                    strict_slashes=False,
                    merge_slashes=False,
                )
        return router, blueprint

    def _serve(self, rest: str = "") -> flask.Response:
        assert self.router is not None  # noqa: S101 - the rules exist only after init_app
        found = read_request(flask.request.environ, self.router)
        if found is None:
            flask.abort(404)
        mount, request = found
        return _flask_response(mount.handler.handle(request))


def _flask_response(response: Response) -> flask.Response:
    out = flask.current_app.response_class(
        response.body, status=response.status, headers=list(response.headers)
    )
    if response.header("content-type") is None:
        # Flask would add text/html; the core's headers go out as they are.
        del out.headers["Content-Type"]
    return out
