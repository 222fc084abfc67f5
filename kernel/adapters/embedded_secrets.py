"""``EnvironmentSecretStore``: Key Vault secret names answered from an environment mapping.

Locally, secret ``openai-api-key`` is the environment variable ``OPENAI_API_KEY``
(``kernel.config.references.local_secret_variable``), the same rule the config loader uses for
``${secret:NAME}``. The mapping is read at each call, so a changed environment is seen at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from kernel.governance import secret_values
from kernel.config.references import KEY_VAULT_NAME, Reference, UnresolvedReference, local_secret_variable


def check_secret_name(name: str) -> str:
    if not isinstance(name, str) or not KEY_VAULT_NAME.match(name):
        raise ValueError(f"secret name {name!r} is not a valid Key Vault secret name: expected 1-127 letters, "
                         "digits or hyphens")
    return name


class EnvironmentSecretStore:
    """The ``SecretStore`` port on a mapping such as the process environment (passed in by the caller)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    async def get(self, name: str) -> str:
        variable = local_secret_variable(check_secret_name(name))
        value = self._environ.get(variable)
        if value is None:
            raise UnresolvedReference(f"{Reference('secret', name)} is not set (looked for environment variable {variable})")
        secret_values.remember(value)
        return value

    async def close(self) -> None:
        return None
