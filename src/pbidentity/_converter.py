"""The one cattrs converter pbidentity uses to turn its attrs values into JSON and back.

Private on purpose (never the global ``cattrs`` converter, which a host app may
configure differently): datetimes travel as ISO 8601 strings.
"""

from __future__ import annotations

from datetime import datetime

import cattrs

converter = cattrs.Converter()
converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
converter.register_structure_hook(datetime, lambda value, _: datetime.fromisoformat(value))
