"""The one base of the project's pydantic records: configs, results, the comparison."""

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from cnnvsmlp.outputs import write_atomically


class Record(BaseModel):
    """A typed record passed as JSON; a field it does not define is refused, not ignored."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    def write(self, path: str | os.PathLike) -> None:
        """Write the record as JSON, atomically."""
        write_atomically(path, lambda p: p.write_text(self.model_dump_json(indent=1)))

    @classmethod
    def read(cls, path: str | os.PathLike):
        """Read and validate a record from a JSON file."""
        return cls.model_validate_json(Path(path).read_text())
