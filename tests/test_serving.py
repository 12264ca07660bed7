"""How the server does its work: endpoints that never await run in worker threads with their interface unchanged,
and inferences take turns per device while background work waits for them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi import APIRouter, Depends, FastAPI, File, Form, UploadFile
from fastapi.testclient import TestClient

from lib.serving.off_loop import awaits, blocking_async_routes, run_endpoints_in_threads, synchronous
from lib.serving.slots import InferenceSlots


def _user(token: str = "") -> str:
    return token or "anonymous"


def make_app() -> FastAPI:
    """Endpoints as MONAI Label declares them: in a router of their own, included in the app."""
    app, router = FastAPI(), APIRouter(prefix="/work")

    @router.post("/{model}", summary="does work", tags=["Work"])
    async def work(model: str, params: str = Form("{}"), file: UploadFile = File(None), user: str = Depends(_user)):
        """Blocks the loop unless run in a thread."""
        try:
            asyncio.get_running_loop()
            where = "event loop"
        except RuntimeError:
            where = "worker thread"
        return {"model": model, "params": params, "bytes": len(file.file.read()) if file else 0, "user": user,
                "where": where}

    @app.get("/awaits")
    async def awaiting() -> dict:
        await asyncio.sleep(0)
        return {"where": "event loop"}

    app.include_router(router)
    return app


def test_endpoints_that_never_await_run_in_worker_threads_with_the_same_interface():
    app = make_app()
    before = app.openapi()
    assert [r.path for r in blocking_async_routes(app)] == ["/work/{model}"]  # /awaits does await
    run_endpoints_in_threads(app)
    assert blocking_async_routes(app) == [] and app.openapi() == before
    with TestClient(app) as client:
        r = client.post("/work/liver?token=ann", data={"params": '{"a": 1}'}, files={"file": ("x.bin", b"1234")})
        assert r.json() == {"model": "liver", "params": '{"a": 1}', "bytes": 4, "user": "ann",
                            "where": "worker thread"}
        assert client.get("/awaits").json() == {"where": "event loop"}
        assert client.post("/work/liver").status_code == 200


def test_a_coroutine_that_suspends_is_not_taken_for_a_plain_function():
    async def plain() -> int:
        return sum(i for i in range(3))

    async def suspends() -> int:
        await asyncio.sleep(0)
        return 1

    assert not awaits(plain.__code__) and awaits(suspends.__code__)
    assert synchronous(plain)() == 3
    with pytest.raises(RuntimeError, match="suspended"):
        synchronous(suspends)()


def test_inferences_take_turns_per_device_and_background_work_waits_for_them():
    slots = InferenceSlots(per_device=1)
    running: dict[str, int] = {"cpu": 0, "cuda": 0}
    most: dict[str, int] = {"cpu": 0, "cuda": 0}
    lock = threading.Lock()

    def work(device: str) -> str:
        with lock:
            running[device] += 1
            most[device] = max(most[device], running[device])
        time.sleep(0.2)
        with lock:
            running[device] -= 1
        return threading.current_thread().name

    names: list[str] = []
    threads = [threading.Thread(target=lambda d=d: names.append(slots.run(d, lambda: work(d))))
               for d in ("cpu", "cpu", "cpu", "cuda", "cuda")]
    for t in threads:
        t.start()
    time.sleep(0.05)
    assert slots.busy() == 5  # queued, not refused
    started = time.monotonic()
    assert slots.wait_idle()
    waited = time.monotonic() - started
    assert slots.busy() == 0 and most == {"cpu": 1, "cuda": 1} and waited >= 0.5  # three cpu turns of 0.2 s
    for t in threads:
        t.join()
    assert len(set(names)) == 2  # one thread per device ran all of its work
    with pytest.raises(ZeroDivisionError):  # the work's exception reaches the caller
        slots.run("cpu", lambda: 1 / 0)
    stop = threading.Event()
    stop.set()
    blocker = threading.Thread(target=slots.run, args=("cpu", lambda: time.sleep(0.3)))
    blocker.start()
    time.sleep(0.05)
    assert slots.wait_idle(stop) is False  # a shutdown ends the wait
    blocker.join()
