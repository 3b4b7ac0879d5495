"""Search attributes that let operators filter runs in the Temporal UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

SYNC = SearchAttributeKey.for_keyword("SwitchyardSync")
AUDIENCE = SearchAttributeKey.for_keyword("SwitchyardAudience")
DESTINATION = SearchAttributeKey.for_keyword("SwitchyardDestination")
PHASE = SearchAttributeKey.for_keyword("SwitchyardPhase")

ALL = (SYNC, AUDIENCE, DESTINATION, PHASE)
