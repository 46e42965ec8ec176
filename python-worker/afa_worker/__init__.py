"""PyTorch worker for the AFA transfer SDK.

Serves the ``afa.v1.AfaWorker`` gRPC contract (``proto/afa/v1/afa.proto``): sessions hold source and
target models, attention modules and data; each stage is one streaming ``RunStage`` call.
"""

__all__ = ["__version__", "PROTOCOL_VERSION"]

__version__ = "0.1.0"
# Bumped when the contract changes incompatibly; the SDK refuses a worker with another major.
PROTOCOL_VERSION = 1
