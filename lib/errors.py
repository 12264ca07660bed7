"""Errors that name the problem and carry their HTTP status: raised anywhere in the app, FastAPI (under MONAI
Label's endpoints) answers them with that status and the message; the CLI prints the message."""

from __future__ import annotations

from fastapi import HTTPException


class AppError(HTTPException):
    status = 400

    def __init__(self, message: str):
        super().__init__(status_code=self.status, detail=message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(AppError, ValueError):
    """An image, label or parameter that cannot be used: 422."""

    status = 422


class NotFound(AppError, LookupError):
    """An unknown image, model or strategy: 404."""

    status = 404


class ModelUnavailable(AppError, RuntimeError):
    """No model to run yet: 503."""

    status = 503
