"""The local machines of both fakes of Modal: sandboxes as local processes, volumes and
the service's state as files (see ``state``, ``sandboxes`` and ``supervisor``)."""
