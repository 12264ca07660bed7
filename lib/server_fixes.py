"""Three corrections to MONAI Label 0.8.5's server, made from the app when the server loads it.

- Malformed JSON in a request's `params` (or an info field) is a client's error: MONAI Label parses it inside its
  endpoints with json.loads and answers 500; here it is a 422 naming the problem.
- Authentication: MONAI Label validates bearer tokens with `jwt.decode(token, key, options=...)`, which PyJWT 2
  refuses without `algorithms`, so every token, valid or not, got 401. Tokens are checked here with RS256, the
  algorithm of the realm's public key that MONAI Label reads (Keycloak's realm JSON).
- `PUT /model/{model}` copied any uploaded file over the model in use, in place: a wrong file, or a copy cut short,
  broke /infer. Here the upload must load as the model's network, and it is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
from fastapi import Depends, FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse
from monailabel.config import settings
from monailabel.endpoints.user import auth
from monailabel.utils.others.generic import file_checksum

from .data.atomic import copy_file
from .errors import InvalidInput, NotFound


async def _malformed_json(request: Request, exc: json.JSONDecodeError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": f"malformed JSON in the request: {exc.msg} "
                                                            f"(line {exc.lineno}, column {exc.colno})"})


def _decode_rs256(token: str, key: Any, options: dict | None = None, **kwargs: Any) -> dict:
    return jwt.decode(token, key, algorithms=["RS256"], options=options, **kwargs)


async def _update_model(model: str, file: UploadFile,
                        user: auth.User = Depends(auth.RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))) -> dict:
    from monailabel.interfaces.utils.app import app_instance

    from .model.checkpoint import load_network

    dest = app_instance().model_file(model, validate=False)
    if not dest:
        raise NotFound(f"no model {model!r}")
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / f"upload{''.join(Path(file.filename or 'model.pt').suffixes)}"
        with open(upload, "wb") as f:
            shutil.copyfileobj(file.file, f)
        try:
            load_network(upload)
        except Exception as e:  # torch.load and the checks raise many kinds for a file that is not this model
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InvalidInput(f"the uploaded file is not a {model} model: {message}") from e
        copy_file(upload, Path(dest))
    return {"checksum": file_checksum(dest), "modified_time": int(os.stat(dest).st_mtime)}


def install(app: FastAPI) -> None:
    app.add_exception_handler(json.JSONDecodeError, _malformed_json)
    # Starlette builds its middleware stack, exception handlers included, at its first call (the lifespan that
    # loads this app): dropping it makes the next request build it again with this handler
    app.middleware_stack = None

    auth.jwt = SimpleNamespace(decode=_decode_rs256)  # the one call MONAI Label makes through `jwt.`

    # first in the list, so that it answers before MONAI Label's own route (Starlette takes the first match)
    app.router.add_api_route(f"{settings.MONAI_LABEL_API_STR}/model/{{model}}", _update_model, methods=["PUT"],
                             tags=["Model"], summary="Upload a model file (it must load; written atomically)")
    app.router.routes.insert(0, app.router.routes.pop())
