"""Where a data set can come from: one module per kind of source.

A source is a small frozen object with a ``label`` (how a failed search names
it) and ``read(spec)``. It raises :class:`~cnnvsmlp.data.spec.SourceUnavailable`
when it has no data here, so the search moves on, and
:class:`~cnnvsmlp.data.spec.DataError` for data that is there but wrong, which
ends the search. :mod:`cnnvsmlp.data.search` states the order they are tried in.
"""

from __future__ import annotations

from typing import Protocol

from cnnvsmlp.data.spec import DatasetSpec, RawData


class Source(Protocol):
    """One place a data set can come from."""

    @property
    def label(self) -> str:
        """How a search that found nothing names this source."""

    def read(self, spec: DatasetSpec) -> RawData:
        """Read the official train and test splits of ``spec``.

        Raises:
            SourceUnavailable: this source has no data here.
            DataError: the data is there but malformed.
        """
