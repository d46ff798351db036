"""The default limits of a store and its server, in one place (``ripple serve --max-*`` can change each one).

Kept free of imports so the command line can show them without loading the server.
"""

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # a request body (413 beyond), except POST /v1/batch
MAX_BATCH_BODY_BYTES = 8 * 1024 * 1024  # a POST /v1/batch body
MAX_BATCH_COMMANDS = 1000  # commands in one batch (DESIGN §4)
DEFAULT_MAX_QUEUE = 100_000  # writes waiting for the writer before new ones are refused (503, Retry-After)
