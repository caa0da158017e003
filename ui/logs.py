"""Log setup shared by the CLI and the API's worker processes (`medsearch serve --workers N`)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY = ("httpx", "urllib3", "sentence_transformers", "transformers", "filelock", "bm25s", "faiss")


def configure_logging(level: str | int = "INFO", verbose: bool = False) -> None:
    """Log to stderr at `level` (a name such as "INFO" or a number; DEBUG when `verbose`), libraries at WARNING."""
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=logging.DEBUG if verbose else level, format=FORMAT, stream=sys.stderr)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
