"""MONAI Label's endpoints in FastAPI's worker threads, off the event loop.

MONAI Label 0.8.5 declares nearly every endpoint `async def` and then does all its work synchronously inside it
(inference, label checks, next-sample), so FastAPI runs it on the event loop and one 20 s inference holds every
other request, /info included. An `async def` that never awaits is a plain function in disguise: here each such
route is rebuilt around a plain function that runs the coroutine to its end, which FastAPI runs in its thread
pool. Routes that do await (the DICOMweb proxy, login) stay as they are. FastAPI has no switch for this, hence
the rebuild; the routes keep their paths, parameters, dependencies and OpenAPI description.
"""

from __future__ import annotations

import dis
import inspect
from types import CodeType
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute

# what a coroutine's code holds when it awaits, iterates or enters asynchronously
_ASYNC_OPS = frozenset({"GET_AWAITABLE", "SEND", "YIELD_VALUE", "BEFORE_ASYNC_WITH", "GET_AITER", "GET_ANEXT",
                        "END_ASYNC_FOR", "ASYNC_GEN_WRAP"})


def awaits(code: CodeType) -> bool:
    """True when a coroutine's code may suspend: await, async for, async with (an async comprehension inside it
    is awaited there too; a nested generator or function does not suspend it)."""
    return any(i.opname in _ASYNC_OPS for i in dis.get_instructions(code))


def synchronous(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A plain function with the endpoint's signature that runs the never-suspending coroutine to its end.
    (Not functools.wraps: FastAPI follows __wrapped__ and would see a coroutine function again.)"""

    def run(*args: Any, **kwargs: Any) -> Any:
        coroutine = endpoint(*args, **kwargs)
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value
        coroutine.close()
        raise RuntimeError(f"{endpoint.__qualname__} suspended: it cannot run in a worker thread")

    run.__signature__ = inspect.signature(endpoint, eval_str=True)  # type: ignore[attr-defined]
    for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(run, attribute, getattr(endpoint, attribute))
    return run


def _rebuilt(route: APIRoute) -> APIRoute:
    names = [n for n in inspect.signature(APIRoute.__init__).parameters if n not in ("self", "path", "endpoint")]
    return APIRoute(route.path, synchronous(route.endpoint), **{n: getattr(route, n) for n in names
                                                                 if hasattr(route, n)})


def _routers(router: Any) -> list[Any]:
    """The router and those included in it (FastAPI 0.165 keeps an included router whole, behind an
    `original_router`; older releases copied its routes)."""
    found = [router]
    for route in router.routes:
        if getattr(route, "original_router", None) is not None:
            found += _routers(route.original_router)
    return found


def _blocking(route: Any) -> bool:
    return (isinstance(route, APIRoute) and inspect.iscoroutinefunction(route.endpoint)
            and not awaits(route.endpoint.__code__))


def blocking_async_routes(app: FastAPI) -> list[APIRoute]:
    """The routes, included routers' too, whose endpoint is `async def` and never awaits."""
    return [r for router in _routers(app.router) for r in router.routes if _blocking(r)]


def run_endpoints_in_threads(app: FastAPI) -> None:
    """Rebuild, in place and in order, every route of `blocking_async_routes`."""
    for router in _routers(app.router):
        if any(_blocking(r) for r in router.routes):
            router.routes[:] = [_rebuilt(r) if _blocking(r) else r for r in router.routes]
            if hasattr(router, "_mark_routes_changed"):  # FastAPI 0.165 caches what it derives from the routes
                router._mark_routes_changed()
    app.openapi_schema = None
