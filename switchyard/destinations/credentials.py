"""A destination's secret, read from the environment variable its config names.

Secrets never live in the catalog (it is committed). In development a missing variable
falls back to the placeholder the destination's simulator accepts, so a demo needs no
setup; anywhere else the placeholder is refused, so a deployment cannot quietly run on a
value everyone can read in this repository. Errors name the variable, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping

from switchyard.errors import DestinationConfigError

DEVELOPMENT = "development"


def resolve_credential(
    name: str, placeholder: str, what: str, environment: str, env: Mapping[str, str]
) -> str:
    """The secret in env var `name` (`what` describes it in errors, e.g. "the Braze REST
    API key"); `placeholder` only in development."""
    value = env.get(name)
    if value and (value != placeholder or environment == DEVELOPMENT):
        return value
    if value:
        raise DestinationConfigError(
            f"{name} holds the development placeholder for {what}; set a real one outside "
            f"development (environment is {environment!r})"
        )
    if environment == DEVELOPMENT:
        return placeholder
    raise DestinationConfigError(f"environment variable {name} ({what}) is not set")
