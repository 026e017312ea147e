"""The CLI's expected failures: a catalogue code and a message safe to show."""

from __future__ import annotations

from parhelia import errors as catalogue


class CliError(Exception):
    """A failure rendered as ``Error E### NAME: message`` with the catalogue's exit code."""

    def __init__(self, code: catalogue.Code, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.spec = catalogue.spec(code)
        self.code = self.spec.code
        self.message = message
        self.hint = hint

    @property
    def exit_code(self) -> int:
        return int(self.spec.exit)

    def json(self) -> str:
        """The line ``--json`` prints on stderr: ``{"error": {"code", "name", "message"}}``."""
        import json

        return json.dumps({"error": {"code": self.code, "name": self.spec.name,
                                     "message": self.message}}, ensure_ascii=False)

    def __str__(self) -> str:
        return f"{self.code} {self.spec.name}: {self.message}"


def invalid(message: str) -> CliError:
    return CliError("E101", message)


def missing(message: str) -> CliError:
    return CliError("E102", message)


class TaskOutcome(Exception):
    """A command finished and wants a specific exit code without an error message."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code
