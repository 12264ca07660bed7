"""Which studies a strategy may offer: unlabelled, and not served to another client within the serve window.

The app records every study it serves in the image info ("served": {"ts", "client_id"}) under a lock as it
answers (apps/liver_tumor/main.py), so that concurrent requests see each other. (MONAI Label's own record,
"strategy", is written after the answer, for the first study only, and with the user name when the client sends
no id.)
"""

from __future__ import annotations

import time

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import ImageNotFoundException

from ..settings import Settings, request_options

SERVED_KEY = "served"
DEFAULTS = Settings()  # the activelearning options are request-only: no --conf value reaches them


def served_to_others(info: dict, client_id: str | None, window_s: float, now: float | None = None) -> bool:
    """True when this study was served to another client less than window_s seconds ago."""
    now = time.time() if now is None else now
    served = info.get(SERVED_KEY)
    return isinstance(served, dict) and now - served.get("ts", 0) < window_s and served.get("client_id") != client_id


def split_unlabelled(request: dict, datastore: Datastore, window_s: float) -> tuple[list[str], list[str]]:
    """Unlabelled studies (no final label) in one pass: (free to offer, held by another client within the window)."""
    client = request.get("client_id")
    free, held = [], []
    for i in datastore.get_unlabeled_images():
        (held if served_to_others(datastore.get_image_info(i), client, window_s) else free).append(i)
    return free, held


def requested_count(request: dict) -> int:
    """How many studies the request asks for ("count", default 1), read as every option is (lib.settings)."""
    return request_options(request, "activelearning", DEFAULTS)["count"]


def answer(name: str, picks: list[tuple[str, dict]], **why) -> dict:
    """The strategy's answer: the first pick as MONAI Label expects, every pick with its scores in `ids`/`why`."""
    first_id, first_scores = picks[0]
    return {"id": first_id, **first_scores, "ids": [i for i, _ in picks],
            "why": {"strategy": name, **why, "picks": [{"id": i, **s} for i, s in picks]}}


def record_served(datastore: Datastore, image_ids: list[str], client_id: str | None, strategy: str) -> None:
    now = time.time()
    for image_id in image_ids:
        served = {SERVED_KEY: {"ts": now, "client_id": client_id, "strategy": strategy}}
        try:
            datastore.update_image_info(image_id, served)
        except ImageNotFoundException:  # a DICOMweb series not fetched yet: its info lives in the local cache
            datastore.get_image_uri(image_id)
            datastore.update_image_info(image_id, served)
