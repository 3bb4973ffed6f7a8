"""Who sent an ingress record: its signature checked before anything reads its payload.

A signed event names its tenant in the `tenantid` extension attribute (`ce_tenantid`) and
carries `ce_gssig` (see `guardstream.auth.signature`). The signature is checked against the
keys of that claimed tenant first; once the payload is read, its `tenant_id` must be the same
tenant, so a valid signature of one tenant never carries a body that spends another's budget.

Per tenant (`auth` in tenant config, else the tiers file's default):
- `required`: unsigned → AUTH_MISSING; a bad signature → AUTH_INVALID or AUTH_EXPIRED.
- `optional`: unsigned passes unauthenticated; a signature present must verify.
- `off`: signatures are not looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from guardstream.auth.keyring import TenantAuth
from guardstream.auth.signature import Signed
from guardstream.auth.verify import Failure, verify
from guardstream.reasons import Reason
from guardstream.streams.cloudevents import CloudEventAttrs

AuthLookup = Callable[[str], TenantAuth]
TENANT_ATTR = "tenantid"
SIGNATURE_ATTR = "gssig"
_CODES = {
    Failure.MISSING: Reason.AUTH_MISSING,
    Failure.INVALID: Reason.AUTH_INVALID,
    Failure.EXPIRED: Reason.AUTH_EXPIRED,
}


def no_auth(_tenant: str) -> TenantAuth:
    """The lookup when nothing is configured: every tenant `off`."""
    return TenantAuth("off")


@dataclass(frozen=True)
class Caller:
    """A verified sender: the tenant and the key that signed."""

    tenant_id: str
    key_id: str

    @property
    def authid(self) -> str:
        """The CloudEvents `authid` guardstream puts on what it answers."""
        return f"{self.tenant_id}/{self.key_id}"


@dataclass(frozen=True)
class Authn:
    """What the signature check found: the claimed tenant and, if verified, the caller."""

    claimed: str | None
    caller: Caller | None


class AuthRefused(Exception):
    """The record is refused for who sent it (never charged)."""

    def __init__(self, code: Reason, detail: str, tenant_id: str | None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.tenant_id = tenant_id


@dataclass(frozen=True)
class Authenticator:
    """Checks signatures against each tenant's keys; one per worker."""

    auth_for: AuthLookup = no_auth
    tolerance_ms: int = 300_000

    def check_signature(
        self,
        signature: str | None,
        attrs: CloudEventAttrs,
        value: bytes,
        broker_ts_ms: int,
    ) -> Authn:
        """Verify the record's signature, before its payload is read (raises AuthRefused)."""
        claimed = attrs.extensions.get(TENANT_ATTR)
        if claimed is None:
            if signature is not None:
                raise AuthRefused(
                    Reason.AUTH_INVALID,
                    "a signed event names its tenant in the ce_tenantid attribute",
                    None,
                )
            return Authn(None, None)  # the payload's tenant decides (check_tenant)
        auth = self.auth_for(claimed)
        if auth.mode == "off":
            return Authn(claimed, None)
        if signature is None:
            if auth.mode == "required":
                raise AuthRefused(Reason.AUTH_MISSING, _missing(claimed), claimed)
            return Authn(claimed, None)
        if attrs.time is None:
            raise AuthRefused(Reason.AUTH_INVALID, "a signed event carries ce_time", claimed)
        signed = Signed(claimed, attrs.id, attrs.source, attrs.type, attrs.time)
        verdict = verify(
            signature.encode(), signed, value, auth.keys, broker_ts_ms, self.tolerance_ms
        )
        if verdict.failure is not None or verdict.key_id is None:
            code = _CODES[verdict.failure or Failure.INVALID]
            raise AuthRefused(code, f"tenant {claimed}: {verdict.detail}", claimed)
        return Authn(claimed, Caller(claimed, verdict.key_id))

    def check_tenant(self, authn: Authn, tenant_id: str) -> None:
        """Once the payload is read: its tenant must be the one signed for, or may go unsigned."""
        if authn.claimed is not None and authn.claimed != tenant_id:
            raise AuthRefused(
                Reason.AUTH_INVALID,
                f"the payload's tenant_id is {tenant_id[:64]!r} but ce_tenantid is "
                f"{authn.claimed!r}; an event may only speak for the tenant it names",
                authn.claimed,
            )
        if authn.caller is None and self.auth_for(tenant_id).mode == "required":
            raise AuthRefused(Reason.AUTH_MISSING, _missing(tenant_id), tenant_id)


def _missing(tenant_id: str) -> str:
    return (
        f"tenant {tenant_id} requires signed events: set ce_tenantid and sign with one of "
        "its keys in ce_gssig"
    )
