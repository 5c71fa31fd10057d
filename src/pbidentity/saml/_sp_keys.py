"""Each workspace's SP key pairs: the app's own, or made and kept in storage, and their rollover.

An app that keeps keys in its own secret store passes them as
``SamlConfig.sp_keys``: every workspace then uses them, and the app rolls
them over by changing that setting. Otherwise a workspace gets its own key
pairs (one for encryption, one for signing) the first time it turns on
encrypted assertions or signed requests; they are kept in storage as one
document, replaced whole with compare-and-set, so instances that make or
roll keys at the same moment agree on one outcome.

A stored rollover has two steps: :meth:`SpKeyStore.start_rollover` adds a
new key after the current one (published in the metadata; for encryption
accepted to decrypt at once), :meth:`SpKeyStore.finish_rollover` drops the
old one (the new key then signs). The private keys are never logged and
never in an event: only certificate fingerprints are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Literal

from pbidentity.domain import Tenant
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import InputError
from pbidentity.saml._context import SamlContext
from pbidentity.saml._keys import SpKey
from pbidentity.saml._keys import SpKeys
from pbidentity.saml._keys import generate_sp_key

__all__ = ["KeyUse", "SpKeyStore"]

log = logging.getLogger("pbidentity.saml")

KeyUse = Literal["signing", "encryption"]
_USES: tuple[KeyUse, ...] = ("signing", "encryption")


def _dump(keys: SpKeys) -> str:
    return json.dumps(
        {
            use: [
                {"key": key.private_key_pem, "certificate": key.certificate_pem}
                for key in getattr(keys, use)
            ]
            for use in _USES
        },
        sort_keys=True,
    )


def _load(document: str) -> SpKeys:
    data = json.loads(document)
    return SpKeys(
        **{
            use: tuple(SpKey(item["key"], item["certificate"]) for item in data.get(use, []))
            for use in _USES
        }
    )


class SpKeyStore:
    """The SP keys in force for each workspace."""

    def __init__(self, context: SamlContext) -> None:
        self._context = context

    def keys(self, tenant: Tenant, *, create: bool) -> SpKeys:
        """The workspace's key sets; made (once, by whichever instance is first) if ``create``."""
        provided = self._context.config.sp_keys
        if provided is not None:
            return provided
        with self._context.storage.transaction(write=False) as tx:
            stored = tx.saml_sp_keys(tenant.id)
        if stored is not None:
            return _load(stored)
        if not create:
            return SpKeys()
        made = SpKeys(encryption=self._new_key(tenant), signing=self._new_key(tenant))
        with self._context.storage.transaction() as tx:
            if tx.replace_saml_sp_keys(tenant.id, _dump(made), expected=None):
                self._context.event(
                    tx, tenant, "saml.sp_keys_created", None, "app", _fingerprints(made)
                )
                log.info("made SP keys for tenant %s", tenant.slug)
                return made
            # Another instance stored its keys first: those are the keys.
            return _load(tx.saml_sp_keys(tenant.id) or "{}")

    def _new_key(self, tenant: Tenant) -> SpKey:
        host = self._context.config.public_url.split("://", 1)[-1].split("/", 1)[0]
        return generate_sp_key(f"{host} {tenant.slug}", now=self._context.clock())

    def start_rollover(self, tenant: Tenant, use: KeyUse, *, actor: str) -> SpKey:
        """Add a new key after the current one: published now, and for encryption accepted now."""

        def change(keys: tuple[SpKey, ...]) -> tuple[SpKey, ...]:
            if len(keys) > 1:
                raise InputError(
                    f"a rollover of the {use} key is under way: finish it before starting another"
                )
            return (*keys, self._new_key(tenant))

        return self._change(tenant, use, change, "saml.sp_key_rollover_started", actor)[-1]

    def finish_rollover(self, tenant: Tenant, use: KeyUse, *, actor: str) -> SpKey:
        """Drop the old key: the new one alone is published (and, for signing, signs)."""

        def change(keys: tuple[SpKey, ...]) -> tuple[SpKey, ...]:
            if len(keys) < 2:
                raise InputError(f"no rollover of the {use} key is under way: start one first")
            return keys[1:]

        return self._change(tenant, use, change, "saml.sp_key_rollover_finished", actor)[0]

    def _change(
        self,
        tenant: Tenant,
        use: KeyUse,
        change: Callable[[tuple[SpKey, ...]], tuple[SpKey, ...]],
        kind: str,
        actor: str,
    ) -> tuple[SpKey, ...]:
        if use not in _USES:
            raise InputError("use must be 'signing' or 'encryption'")
        if self._context.config.sp_keys is not None:
            raise ConfigurationError(
                "The app provides its SP keys (SamlConfig.sp_keys): roll them over there, by "
                "adding the new key and, once the IdPs have it, removing the old one."
            )
        self.keys(tenant, create=True)
        while True:
            with self._context.storage.transaction(write=False) as tx:
                expected = tx.saml_sp_keys(tenant.id) or "{}"
            current = _load(expected)
            changed_set = change(getattr(current, use))
            changed = SpKeys(**{u: changed_set if u == use else getattr(current, u) for u in _USES})
            with self._context.storage.transaction() as tx:
                if tx.replace_saml_sp_keys(tenant.id, _dump(changed), expected=expected):
                    self._context.event(tx, tenant, kind, None, actor, _fingerprints(changed))
                    log.info("tenant %s: %s (%s key)", tenant.slug, kind, use)
                    return changed_set
            # Another instance changed the keys meanwhile: decide again on what it stored.


def _fingerprints(keys: SpKeys) -> dict[str, list[str]]:
    return {use: [key.fingerprint for key in getattr(keys, use)] for use in _USES}
