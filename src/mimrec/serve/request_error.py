"""The error of a client mistake in a request (the service answers it with HTTP 4xx)."""

from __future__ import annotations

from mimrec.errors import MimrecError


class RequestError(MimrecError):
    """A client mistake in a request: names the field and the problem (-> HTTP 4xx)."""

    def __init__(self, field_name: str, problem: str, status: int = 422) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem
        self.status = status
