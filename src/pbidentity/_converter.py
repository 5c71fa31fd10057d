"""The one cattrs converter pbidentity uses to turn its attrs values into JSON and back.

Private on purpose (never the global ``cattrs`` converter, which a host app may
configure differently): datetimes travel as ISO 8601 strings.
"""

from __future__ import annotations

from datetime import datetime

import cattrs
from cattrs.gen import make_dict_unstructure_fn
from cattrs.gen import override

from pbidentity.domain import Event
from pbidentity.domain import Member

converter = cattrs.Converter()
converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
converter.register_structure_hook(datetime, lambda value, _: datetime.fromisoformat(value))

# Which role extension URN a member or an event was read with is how it was
# read, not what it is: never part of its JSON.
for _cls in (Member, Event):
    converter.register_unstructure_hook(
        _cls, make_dict_unstructure_fn(_cls, converter, role_urn=override(omit=True))
    )
