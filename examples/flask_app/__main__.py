"""``python -m examples.flask_app``: the Flask reference app on werkzeug's development server."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence

from examples.common.run import options
from examples.common.run import startup_lines
from examples.flask_app import EXTENSION
from examples.flask_app import create_app
from pbidentity.saml import local_dev_hosts


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the app until interrupted."""
    args = options("python -m examples.flask_app", "Run the Flask reference app.", argv)
    public_url = f"http://{args.host}:{args.port}"
    app = create_app(
        args.database,
        public_url=public_url,
        dev_hosts=local_dev_hosts(args.host, public_url),
        owner_token=secrets.token_urlsafe(24),
        demo=args.demo,
    )
    for line in startup_lines(app.extensions[EXTENSION]):
        print(line, flush=True)
    # The reloader would start a second process with another owner token.
    app.run(host=args.host, port=args.port, use_reloader=False, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
