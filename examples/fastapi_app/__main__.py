"""``python -m examples.fastapi_app``: the FastAPI reference app under uvicorn."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence

import uvicorn

from examples.common.run import options
from examples.common.run import startup_lines
from examples.fastapi_app import create_app
from pbidentity.saml import local_dev_hosts


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the app until interrupted."""
    args = options("python -m examples.fastapi_app", "Run the FastAPI reference app.", argv)
    public_url = f"http://{args.host}:{args.port}"
    app = create_app(
        args.database,
        public_url=public_url,
        dev_hosts=local_dev_hosts(args.host, public_url),
        owner_token=secrets.token_urlsafe(24),
        demo=args.demo,
    )
    for line in startup_lines(app.state.context):
        print(line, flush=True)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
