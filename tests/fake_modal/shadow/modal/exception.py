"""Fake ``modal.exception``: the classes the backend catches, with modal 1.6.4's hierarchy
(``ConnectionError`` and ``TimeoutError`` are NOT the builtins; everything derives ``Error``)."""


class Error(Exception):
    pass


class AuthError(Error):
    pass


class NotFoundError(Error):
    pass


class AlreadyExistsError(Error):
    pass


class InvalidError(Error):
    pass


class ResourceExhaustedError(Error):
    pass


class ConnectionError(Error):  # noqa: A001 - modal's own name
    pass


class TimeoutError(Error):  # noqa: A001 - modal's own name
    pass


class InternalFailure(Error):
    pass


class SandboxTimeoutError(TimeoutError):
    pass


class SandboxTerminatedError(Error):
    pass


class ExecTimeoutError(TimeoutError):
    pass


class RemoteError(Error):
    pass


class ImageBuildError(RemoteError):
    """modal 1.6.4: ``ImageBuildError(message, image_id)``."""

    def __init__(self, message: str, image_id: str = "") -> None:
        super().__init__(message)
        self.image_id = image_id


class SnapshotCreationError(Error):
    pass
