"""The one exception the artifact reader and writer raise for a refused artifact."""

from __future__ import annotations


class ArtifactError(ValueError):
    """An artifact, or a request for one, that is refused; the message names the folder or file
    and what is wrong with it."""
