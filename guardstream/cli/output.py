"""Where the commands write: results to stdout, diagnostics and errors to stderr."""

from rich.console import Console

console = Console()
err = Console(stderr=True)
