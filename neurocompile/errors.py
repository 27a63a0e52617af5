"""User-facing errors: each carries one line that says what is wrong and how to fix it."""


class NeurocompileError(Exception):
    """An error the CLI reports as one clear line (no traceback) and a non-zero exit."""


class UnsupportedModelError(NeurocompileError):
    """The model contains something the frontend cannot lower."""


class QuantizationError(NeurocompileError):
    """The model cannot be represented on the target."""


class GraphError(NeurocompileError):
    """The IR graph is malformed (a pass or a file produced an invalid graph)."""


class NeurocompileWarning(UserWarning):
    """Something the user should know that does not stop the command (one line on the CLI)."""
