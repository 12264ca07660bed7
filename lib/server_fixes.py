"""Two corrections to MONAI Label 0.8.5's server, made from the app when the server loads it.

- Malformed JSON in a request's `params` (or an info field) is a client's error: MONAI Label parses it inside its
  endpoints with json.loads and answers 500; here it is a 422 naming the problem.
- Authentication: MONAI Label validates bearer tokens with `jwt.decode(token, key, options=...)`, which PyJWT 2
  refuses without `algorithms`, so every token, valid or not, got 401. Tokens are checked here with RS256, the
  algorithm of the realm's public key that MONAI Label reads (Keycloak's realm JSON).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from monailabel.endpoints.user import auth


async def _malformed_json(request: Request, exc: json.JSONDecodeError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": f"malformed JSON in the request: {exc.msg} "
                                                            f"(line {exc.lineno}, column {exc.colno})"})


def _decode_rs256(token: str, key: Any, options: dict | None = None, **kwargs: Any) -> dict:
    return jwt.decode(token, key, algorithms=["RS256"], options=options, **kwargs)


def install(app: FastAPI) -> None:
    app.add_exception_handler(json.JSONDecodeError, _malformed_json)
    # Starlette builds its middleware stack, exception handlers included, at its first call (the lifespan that
    # loads this app): dropping it makes the next request build it again with this handler
    app.middleware_stack = None

    auth.jwt = SimpleNamespace(decode=_decode_rs256)  # the one call MONAI Label makes through `jwt.`
