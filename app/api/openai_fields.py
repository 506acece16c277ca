"""Request fields: what the OpenAI-compatible routes accept, in one place.

Every request model refuses a field it does not know with a 400 that names it (never a
silent drop: a client asking for something it would not get must hear so). The fields below
are OpenAI's own bookkeeping — they change nothing a unit computes — so they are accepted
and ignored wherever they appear in a request body or form.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, model_validator

from app.errors import APIError

IGNORED_FIELDS = frozenset(
    {
        "user",  # end-user id for OpenAI's abuse monitoring
        "safety_identifier",  # the same, its newer name
        "metadata",  # tags for stored completions
        "store",  # keep the completion on OpenAI's side
        "service_tier",  # OpenAI's capacity tier
        "prompt_cache_key",  # OpenAI's cache routing hint (llama-server caches per slot)
    }
)


class StrictModel(BaseModel):
    """A nested part of a request: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class OpenAIRequest(StrictModel):
    """A request body: unknown fields are refused, IGNORED_FIELDS are accepted."""

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in IGNORED_FIELDS}
        return data


def unsupported_field(name: str, where: str = "this route") -> APIError:
    return APIError(
        400,
        f"{name!r} is not supported by {where}",
        code="unsupported_parameter",
        param=name,
    )


async def refuse_unknown_form_fields(request: Request, accepted: Iterable[str]) -> None:
    """Multipart routes: FastAPI ignores form fields it was not told about; refuse them."""
    known = set(accepted) | IGNORED_FIELDS
    form = await request.form()  # parsed once; the route's own Form()/File() reuse it
    for name in form:
        if name not in known:
            raise unsupported_field(name, request.url.path)
