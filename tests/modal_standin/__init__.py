"""A local stand-in of Modal's service for the real, unmodified ``modal`` SDK
(docs/adr/0035-modal-stand-in-and-fault-model.md): its gRPC control plane, the task
command router and the volume's block store, on 127.0.0.1. Sandboxes are
``tests.modal_host``'s local processes, shared with the SDK-level fake."""
