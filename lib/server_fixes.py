"""Corrections to MONAI Label's server, each written against and checked on one MONAI Label release.

The app applies them explicitly (`LiverTumorApp.server_mode`, when MONAI Label's server starts it) through
`install`, which first checks the MONAI Label version: each patch replaces a detail inside that release (a module
attribute, a route, the exception handlers), so on another release the app refuses to start, naming both, rather
than patch what it does not know. Everything else the app changes in MONAI Label is a subclass in plain sight
(the datastore, the tasks, the strategies).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import jwt
import monailabel
from fastapi import BackgroundTasks, Depends, FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse
from monailabel.config import settings
from monailabel.endpoints.user import auth
from monailabel.utils.others.generic import file_checksum, remove_file

from .data.atomic import copy_file
from .errors import InvalidInput, NotFound
from .serving.off_loop import run_endpoints_in_threads

MONAI_LABEL_VERSION = "0.8.5"  # the release every patch below was written for and tested on


@dataclass(frozen=True)
class Patch:
    name: str
    fixes: str  # what goes wrong in MONAI Label MONAI_LABEL_VERSION without it
    apply: Callable[[FastAPI], None]


# ---- malformed JSON
async def _malformed_json(request: Request, exc: json.JSONDecodeError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": f"malformed JSON in the request: {exc.msg} "
                                                            f"(line {exc.lineno}, column {exc.colno})"})


def _answer_malformed_json(app: FastAPI) -> None:
    app.add_exception_handler(json.JSONDecodeError, _malformed_json)
    # Starlette builds its middleware stack, exception handlers included, at its first call (the lifespan that
    # loads this app): dropping it makes the next request build it again with this handler
    app.middleware_stack = None


# ---- bearer tokens
def _decode_rs256(token: str, key: Any, options: dict | None = None, **kwargs: Any) -> dict:
    return jwt.decode(token, key, algorithms=["RS256"], options=options, **kwargs)


def _validate_tokens_with_rs256(app: FastAPI) -> None:
    auth.jwt = SimpleNamespace(decode=_decode_rs256)  # the one call MONAI Label makes through `jwt.`


# ---- model upload
def _update_model(model: str, file: UploadFile,
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


def _checked_model_upload(app: FastAPI) -> None:
    # first in the list, so that it answers before MONAI Label's own route (Starlette takes the first match)
    app.router.add_api_route(f"{settings.MONAI_LABEL_API_STR}/model/{{model}}", _update_model, methods=["PUT"],
                             tags=["Model"], summary="Upload a model file (it must load; written atomically)")
    app.router.routes.insert(0, app.router.routes.pop())


# ---- train requests
def _train_model(model: str, params: dict | None = None, run_sync: bool = False, enqueue: bool = False,
                       user: auth.User = Depends(auth.RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))) -> dict:
    from monailabel.endpoints.train import run_model
    from monailabel.interfaces.utils.app import app_instance

    app_instance().check_train_request(model, params or {})
    return run_model(model, params, run_sync, enqueue)


def _checked_train_request(app: FastAPI) -> None:
    app.router.add_api_route(f"{settings.MONAI_LABEL_API_STR}/train/{{model}}", _train_model, methods=["POST"],
                             tags=["Train"], summary="Run training for a model (its options are checked first)")
    app.router.routes.insert(0, app.router.routes.pop())


# ---- uploads removed when the request is refused
def _removing_uploads_when_refused(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """The endpoint, with the removals it queued run at once when it raises: MONAI Label writes each upload to a
    temporary file and queues its removal as a background task, which Starlette runs only after a response that
    succeeded."""
    @functools.wraps(endpoint)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        except BaseException:
            for tasks in (a for a in (*args, *kwargs.values()) if isinstance(a, BackgroundTasks)):
                for task in tasks.tasks:
                    if task.func is remove_file:
                        task.func(*task.args, **task.kwargs)
            raise
    return wrapped


def _remove_refused_uploads(app: FastAPI) -> None:
    from monailabel.endpoints import datastore, infer

    datastore.add_image = _removing_uploads_when_refused(datastore.add_image)
    datastore.save_label = _removing_uploads_when_refused(datastore.save_label)
    infer.run_inference = _removing_uploads_when_refused(infer.run_inference)


PATCHES = (
    Patch("endpoints in worker threads",
          "the endpoints are `async def` yet do their work synchronously (inference, label checks, next-sample), so "
          "they run on the event loop and one inference held every other request, /info included, for its whole "
          "length; here those that never await run in FastAPI's thread pool (lib.serving.off_loop)",
          run_endpoints_in_threads),
    Patch("malformed JSON is a 422",
          "malformed JSON in a request's `params` (or an info field) is parsed inside the endpoints with "
          "json.loads and answered 500; here it is a 422 naming the problem", _answer_malformed_json),
    Patch("bearer tokens checked with RS256",
          "tokens are validated with `jwt.decode(token, key, options=...)`, which PyJWT 2 refuses without "
          "`algorithms`: every token, valid or not, got 401; here they are checked with RS256, the algorithm of "
          "the realm's public key that MONAI Label reads (Keycloak's realm JSON)", _validate_tokens_with_rs256),
    Patch("model upload checked and atomic",
          "`PUT /model/{model}` copied any uploaded file over the model in use, in place: a wrong file, or a copy "
          "cut short, broke /infer; here the upload must load as the model's network, and is renamed into place",
          _checked_model_upload),
    Patch("train options checked before the run is queued",
          "`POST /train/{model}` queues any request and the training process reads its options: a bad value "
          "(`{\"max_epochs\": 0}`, `{\"resume\": \"maybe\"}`) was answered 200 and failed later, seen only in "
          "/train/'s ERROR; here the app reads them first, as the run will, and a bad one is a 422 naming it",
          _checked_train_request),
    Patch("refused uploads removed",
          "`PUT /datastore/image`, `PUT /datastore/label` and `POST /infer` with a file write the upload to a "
          "temporary file and remove it in a background task, which runs only when the answer is a success: every "
          "upload the app refused (a 4xx) stayed in the server's temporary folder; here it is removed then too",
          _remove_refused_uploads),
)


def check_version() -> None:
    """RuntimeError, naming both releases, unless MONAI Label is the release the patches were written for."""
    version = monailabel.__version__
    if version != MONAI_LABEL_VERSION:
        raise RuntimeError(
            f"this app patches MONAI Label {MONAI_LABEL_VERSION} ({', '.join(p.name for p in PATCHES)}; "
            f"lib/server_fixes.py) and MONAI Label {version} is installed: install monailabel=={MONAI_LABEL_VERSION} "
            f"(requirements.txt), or check each patch against {version} and update MONAI_LABEL_VERSION")


def install(app: FastAPI) -> None:
    """Every patch, on MONAI Label's running FastAPI app, after the version check."""
    check_version()
    for patch in PATCHES:
        patch.apply(app)
