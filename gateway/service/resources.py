"""Create, read, update, delete, history and search: every path to the resource store.

Routes, the CLI and transaction bundles call this service and nothing below it, so that access
control, consent and audit can be enforced here once (STYLE.md: one choke point).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import orjson
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from consent import InvalidConsent, InvalidEmergency, NetworkPolicy, leaf_of, parse_consent
from gateway.audit import codes as audit_codes
from gateway.audit.chain import CheckpointPolicy
from gateway.audit.event import Agent, Basis
from gateway.audit.scope import AuditScope, Decision, Interaction, attach, scope_of
from gateway.audit.signing import CheckpointSigner
from gateway.audit.trail import AuditTrail
from gateway.auth.clients import DISABLED_SQL as CLIENT_DISABLED_SQL
from gateway.auth.clients import is_active
from gateway.auth.people import DISABLED_SQL as USER_DISABLED_SQL
from gateway.auth.people import is_active_user
from gateway.content import BlobInfo, ContentVault, KeyRing
from gateway.content.envelope import CHUNK_BYTES
from gateway.content.vault import MARKER, PreparedBlob, blob_id_of, has_content
from gateway.context import NETWORK, RequestContext, operator_for
from gateway.errors import (
    AuditUnavailable,
    BadRequest,
    Conflict,
    Forbidden,
    GatewayError,
    Gone,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    Unprocessable,
)
from gateway.exchange.inbox import is_change_by_requester, is_status_change_by_owner
from gateway.fhir.bundles import BundleEntry, bundle_bytes, page_url
from gateway.fhir.clinical_dates import clinical_date_us
from gateway.fhir.dates import date_range, instant
from gateway.fhir.dutch_identifiers import BSN as BSN_SYSTEM
from gateway.fhir.dutch_identifiers import bsn_of, invalid_bsns, is_valid_bsn, normalized_system
from gateway.fhir.indexing import IndexRows, index_resource
from gateway.fhir.references import local_references
from gateway.fhir.search import SearchQuery, non_negative, parse_search, whole_number
from gateway.fhir.search_params import parse_reference, registry
from gateway.fhir.validation import model_class, validate_resource
from gateway.policy.basis import BasisFinder
from gateway.policy.explain import AccessLine, access_overview
from gateway.policy.information import READ_PURPOSE, OwnResolver, PolicyInformation
from gateway.settings import Settings
from gateway.store import locks, repository
from gateway.store.database import Database, Planning
from gateway.store.driver_sql import rows_of
from gateway.store.keys import new_key
from gateway.store.repository import StoredVersion
from gateway.store.search_shapes import Kind, search_statement
from gateway.store.search_sql import (
    ConsentScope,
    Visibility,
    bound_visibility,
    everything_visible,
    explains,
    hidden_of_patient,
    include_statement,
    keyed,
    organization_visible,
    page_statement,
    revinclude_statement,
    visible_rid,
)

if TYPE_CHECKING:
    from gateway.service.audit_log import AuditLogService

T = TypeVar("T")
U = TypeVar("U")
STREAM_ABOVE_BYTES = 8 * 1024 * 1024  # larger content is checked, then streamed, never held
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ETAG = re.compile(r'^(?:W/)?"?([0-9]{1,18})"?$')
_MANDATORY_ELEMENTS = ("resourceType", "id", "meta")
_SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


@dataclass(frozen=True)
class ResourceResult:
    """The outcome of one interaction on one resource."""

    status: int
    res_type: str
    res_id: str
    version: int
    last_updated_us: int
    content: bytes | None  # what the client sees (document content included)
    owner_org: str | None = None
    blobs: tuple[BlobInfo, ...] = ()  # content this write moved into encrypted blobs
    rid: int | None = None  # the store's row key of the logical resource

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return instant(self.last_updated_us)

    def location(self, base: str) -> str:
        return f"{base}/{self.res_type}/{self.res_id}/_history/{self.version}"

    @classmethod
    def of(cls, status: int, stored: StoredVersion, content: bytes | None) -> ResourceResult:
        return cls(
            status,
            stored.res_type,
            stored.res_id,
            stored.version,
            stored.last_updated_us,
            content,
            stored.owner_org,
            rid=stored.rid,
        )


@dataclass(frozen=True)
class RetrievedContent:
    """A document's content for ITI-68: whole when small, else described to be streamed."""

    content_type: str
    info: BlobInfo | None
    body: bytes | None  # None: stream it with ``ResourceService.stream``

    @property
    def size(self) -> int:
        return self.info.size if self.info else len(self.body or b"")


@dataclass(frozen=True)
class _Prepared:
    stored: bytes  # the JSON as stored: document content replaced by blob markers
    shown: bytes | None  # the JSON the client sent, with meta and id (None: not wanted)
    index: IndexRows
    patient_ref: str | None
    blobs: tuple[BlobInfo, ...]
    consent: repository.ConsentColumns


def parse_etag(value: str) -> int:
    """The version in an ``If-Match`` header such as ``W/"3"``."""
    match = _ETAG.match(value.strip())
    if match is None:
        raise BadRequest(f"If-Match '{value}' is not a version ETag such as W/\"1\"")
    return int(match[1])


def check_type(res_type: str) -> None:
    model_class(res_type)  # 404 for unknown types
    if res_type == "AuditEvent":  # the audit log is not in this store (gateway.audit)
        raise MethodNotAllowed(
            "AuditEvents are written by the gateway itself and cannot be created, changed or "
            "deleted; data-protection officers read them with GET [base]/AuditEvent"
        )


def checked(resource: Any, res_type: str) -> dict[str, Any]:
    """``resource`` as a valid ``res_type`` (400/404/422 otherwise)."""
    check_type(res_type)
    return validate_resource(resource, res_type)


def check_id(res_id: str) -> None:
    """Refuse an id no resource may have (400): for writes."""
    if not ID_PATTERN.match(res_id):
        raise BadRequest(f"'{res_id[:80]}' is not a valid FHIR id", code="value")


def check_known_id(res_type: str, res_id: str) -> None:
    """An id no resource can have is simply not found (404): for reads."""
    if not ID_PATTERN.match(res_id):
        raise NotFound(f"{res_type}/{res_id[:80]} is not known")


class ResourceService:
    """Every resource interaction, each run in one database transaction."""

    def __init__(self, db: Database, settings: Settings, vault: ContentVault | None = None) -> None:
        self.db = db
        self.settings = settings
        self.vault = vault or ContentVault(KeyRing.open(settings.resolved_master_key_file()))
        self.policy = PolicyInformation(NetworkPolicy(settings.consent_policy))
        self.audit = AuditTrail(
            db,
            CheckpointSigner.open(settings.resolved_audit_key_file()),
            node=settings.node_name,
            base_url=settings.token_issuer(),
            policy=CheckpointPolicy(settings.audit_checkpoint_records, settings.audit_checkpoint_s),
        )
        self._last_us = 0

    @functools.cached_property
    def audit_log(self) -> AuditLogService:
        """Searches, reports and maintenance of the audit log (DPOs and the operator)."""
        from gateway.audit.log import Thresholds
        from gateway.service.audit_log import AuditLogService

        s = self.settings
        flags = Thresholds(s.audit_flag_patients, s.audit_flag_window_s, s.audit_flag_denials)
        return AuditLogService(self, flags)

    async def start(self) -> None:
        """Refuse to run with a master key file that cannot open the stored documents, and
        install this release's data category tree."""

        def work(conn: Connection) -> None:
            self.vault.check_keys(conn)
            self.policy.install_categories(conn)

        await self.db.write(work)

    # -- visibility: the hook where isolation and consent decide what an actor may see ----------

    def visibility(self, ctx: RequestContext) -> Visibility:
        """What the actor may see: its organisation's own data, the network directory, and what
        was addressed to it (until consent decides more)."""
        organization = ctx.actor.organization
        if ctx.actor.is_local and organization is None:  # the operator's console
            return everything_visible
        return organization_visible(
            organization, NETWORK, self._visibility_scope(ctx), addressed=not ctx.consulting
        )

    def bound_visibility(self, ctx: RequestContext) -> tuple[Visibility, dict[str, Any]]:
        """``visibility`` with its values as parameters, and those values (for statements kept
        per shape: gateway.store.search_shapes)."""
        organization = ctx.actor.organization
        if ctx.actor.is_local and organization is None:
            return everything_visible, {}
        return bound_visibility(
            organization, NETWORK, self._visibility_scope(ctx), addressed=not ctx.consulting
        )

    def _visibility_scope(self, ctx: RequestContext) -> ConsentScope | None:
        """The consent scope both visibilities judge with: the one place that decides whether
        consent opens other organisations' data (bench/consent_free_app.py leaves it out)."""
        return self._consent_scope(ctx)

    def _consent_scope(self, ctx: RequestContext) -> ConsentScope:
        return ConsentScope(
            actor_id=ctx.actor.id,
            purpose=READ_PURPOSE,
            opt_out=self.settings.consent_policy == "opt-out",
        )

    def ownership(self, ctx: RequestContext) -> Visibility:
        """The actor's own resources: what it may change."""
        organization = ctx.actor.organization
        if ctx.actor.is_local and organization is None:
            return everything_visible
        return lambda alias: alias.c.owner_org == organization

    def _visible(self, conn: Connection, ctx: RequestContext, stored: StoredVersion) -> bool:
        organization = ctx.actor.organization
        if (ctx.actor.is_local and organization is None) or stored.owner_org in (
            organization,
            NETWORK,
        ):
            return True
        if organization is None:
            return False
        # Shared with it, or opened by consent: the same SQL condition searches use.
        check = visible_rid(
            organization, NETWORK, self._consent_scope(ctx), addressed=not ctx.consulting
        )
        passed = repository.rid_passes(conn, stored.rid, check)
        if passed is not None and (scope := scope_of(conn)) is not None:
            _note_basis(scope, stored.rid, *passed)
        return passed is not None

    def _version_visible(
        self, conn: Connection, ctx: RequestContext, stored: StoredVersion
    ) -> bool:
        """Like ``_visible``, for one version judged on its own patient, category and date."""
        organization = ctx.actor.organization
        if (ctx.actor.is_local and organization is None) or stored.owner_org in (
            organization,
            NETWORK,
        ):
            return True
        return organization is not None and repository.version_passes(
            conn, stored, self.visibility(ctx)
        )

    def _note_refused(self, conn: Connection, stored: StoredVersion) -> None:
        """Record the access decision that kept another organisation's resource hidden."""
        scope = scope_of(conn)
        if scope is None:
            return
        touch = stored.touch("R")
        basis = self._basis_finder(scope)(conn, touch)
        if basis.kind == "unknown":  # not a consent matter: the data was never shared at all
            basis = Basis(
                "denied", "not-shared", explanation="another organisation's data, not shared"
            )
        scope.decided(
            Decision(False, basis, stored.patient_key, stored.owner_org, stored.patient_ref)
        )

    @staticmethod
    def _owns(ctx: RequestContext, stored: StoredVersion) -> bool:
        if ctx.actor.is_local and ctx.actor.organization is None:
            return True
        return stored.owner_org == ctx.actor.organization

    def shown(self, conn: Connection, status: int, stored: StoredVersion) -> ResourceResult:
        """The result of a read of ``stored``, its document content revealed."""
        content = stored.content
        if stored.sealed and content is not None:
            content = self.vault.reveal(conn, content)
        return ResourceResult.of(status, stored, content)

    def _reveal(self, conn: Connection, content: bytes, sealed: bool) -> bytes:
        return self.vault.reveal(conn, content) if sealed else content

    @staticmethod
    def _allow(ctx: RequestContext, res_type: str, action: str) -> None:
        if not ctx.actor.may(res_type, action):
            verb = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}[action]
            raise Forbidden(f"The granted scopes do not allow to {verb} {res_type}")

    # -- transactions, each with its audit records ------------------------------------------

    async def in_write(
        self, ctx: RequestContext, work: Callable[[Connection], T], interaction: Interaction
    ) -> T:
        """Run ``work`` in a write transaction, as an actor that is still allowed in; its audit
        records are appended in the same transaction (no record, no change)."""
        scope = self.audit_scope(ctx, interaction)

        def run(conn: Connection) -> T:
            attach(conn, scope)
            try:
                result = self._guarded(conn, ctx, work)
                self.audit.append(
                    conn,
                    scope.facts(conn, self._basis_finder(scope)),
                )
                return result
            finally:
                attach(conn, None)

        try:
            return await self.db.write(run)
        except Exception as error:
            await self.record_failure(scope, error)
            raise

    async def in_read(
        self, ctx: RequestContext, work: Callable[[Connection], T], interaction: Interaction
    ) -> T:
        """Run ``work`` in a read transaction, as an actor that is still allowed in; the result
        is returned only once its audit records are committed: in the read's own transaction
        when ``AuditTrail.read_may_append``, else in the group commit of reads."""
        scope = self.audit_scope(ctx, interaction)

        def run(conn: Connection, inline: bool) -> tuple[T, list[dict[str, Any]]]:
            attach(conn, scope)
            try:
                result = self._guarded_read(conn, ctx, work)
                rows = self.audit.rows(scope.facts(conn, self._basis_finder(scope)))
                if inline:
                    self.audit.append_rows(conn, rows)
                    return result, []
                return result, rows
            finally:
                attach(conn, None)

        try:
            with self.audit.read_may_append() as inline:
                if inline:
                    result, rows = await self.db.write(lambda conn: run(conn, True))
                else:
                    result, rows = await self.db.read(lambda conn: run(conn, False))
        except Exception as error:
            await self.record_failure(scope, error)
            raise
        await self.audit.record_rows(rows)
        return result

    async def in_lookup(
        self,
        ctx: RequestContext,
        work: Callable[[Connection], T],
        interaction: Interaction,
        finish: Callable[[Connection, T], U],
        heavy: Callable[[T], bool],
    ) -> U:
        """``_lookup`` of ``work`` after ``_guarded``'s account check."""
        return await self._lookup(
            ctx, lambda conn: self._guarded(conn, ctx, work), interaction, finish, heavy
        )

    async def in_keyed_lookup(
        self,
        ctx: RequestContext,
        key: tuple[str, str],
        work: Callable[[Connection, StoredVersion | None], T],
        interaction: Interaction,
        finish: Callable[[Connection, T], U],
        heavy: Callable[[T], bool],
    ) -> U:
        """``in_lookup`` for work on the current version of one resource (``key``: its type
        and id), handed to ``work`` as found together with the account check: a read by id
        makes one statement fewer (on PostgreSQL, a round trip)."""
        return await self._lookup(
            ctx,
            lambda conn: work(conn, self._guarded_current(conn, ctx, *key)),
            interaction,
            finish,
            heavy,
        )

    async def _lookup(
        self,
        ctx: RequestContext,
        guarded_work: Callable[[Connection], T],
        interaction: Interaction,
        finish: Callable[[Connection, T], U],
        heavy: Callable[[T], bool],
    ) -> U:
        """``in_read`` for work by key only (a ``Database.lookup``), whose result ``finish``
        turns into the answer. A result ``heavy`` says takes time to finish (decrypting or
        checking large content, streamed from the database) is finished in a read transaction
        of its own on a worker thread: the lookup runs on the event loop on SQLite, and outside
        a transaction on PostgreSQL. Either way the audit records are committed only once it is
        finished: a failure there leaves a failure record, never also a success."""
        scope = self.audit_scope(ctx, interaction)

        def run(conn: Connection) -> tuple[T, list[dict[str, Any]], U | None]:
            attach(conn, scope)
            try:
                value = guarded_work(conn)
                rows = self.audit.rows(scope.facts(conn, self._basis_finder(scope)))
                return value, rows, None if heavy(value) else finish(conn, value)
            finally:
                attach(conn, None)

        try:
            value, rows, answer = await self.db.lookup(run)
            if answer is None:
                answer = await self.db.read(lambda conn: finish(conn, value))
        except Exception as error:
            await self.record_failure(scope, error)
            raise
        await self.audit.record_rows(rows)
        return answer

    def audit_scope(self, ctx: RequestContext, interaction: Interaction) -> AuditScope:
        actor = ctx.actor
        role = next(iter(sorted(actor.roles)), None) if actor.kind == "user" else None
        return AuditScope(
            agent=Agent(
                kind=actor.kind,
                id=actor.id,
                organization=actor.organization,
                role=role or {"system": "system", "local": "operator"}.get(actor.kind),
                name=actor.name,
                address=ctx.client_address,
            ),
            request_id=ctx.request_id,
            interaction=interaction,
            correlation_id=ctx.correlation_id,
            purpose=ctx.purpose,
            addressed=not ctx.consulting,
        )

    def _basis_finder(self, scope: AuditScope) -> BasisFinder:
        return BasisFinder(
            self.policy,
            scope.agent,
            addressed=scope.addressed,
            touches=scope.touches,
            known_addressed=scope.addressed_rids,
            known_granted=scope.granted,
        )

    @asynccontextmanager
    async def refusals_audited(self, scope: AuditScope) -> AsyncIterator[None]:
        """``record_failure`` for the steps of a call outside the service's transactions."""
        try:
            yield
        except Exception as error:
            await self.record_failure(scope, error)
            raise

    # The calls of the service catch their failures themselves: the context manager above
    # cost a twentieth of a retrieve's CPU (py-spy).
    async def record_failure(self, scope: AuditScope, error: Exception) -> None:
        """Record a refused or failed call (its writes rolled back) before it is answered."""
        if isinstance(error, AuditUnavailable):
            return
        if isinstance(error, GatewayError):
            outcome = (
                audit_codes.MINOR_FAILURE if error.status < 500 else audit_codes.SERIOUS_FAILURE
            )
            await self._record_refusal(scope, outcome, f"{error.status}: {error.diagnostics}")
        else:
            await self._record_refusal(scope, audit_codes.SERIOUS_FAILURE, "internal error")

    async def _record_refusal(self, scope: AuditScope, outcome: str, description: str) -> None:
        # The call failed anyway; its own error is what the caller must see.
        with contextlib.suppress(AuditUnavailable):
            await self.audit.record(scope.failed(outcome, description))

    async def precheck(
        self, ctx: RequestContext, interaction: Interaction, check: Callable[[], T]
    ) -> T:
        """Run the checks a call makes before its transaction, recording a refusal."""
        try:
            return check()
        except Exception as error:
            # The audit scope only when refused: building it for every call that passes cost
            # a twentieth of a read's CPU (py-spy).
            await self.record_failure(self.audit_scope(ctx, interaction), error)
            raise

    @staticmethod
    def _guarded(conn: Connection, ctx: RequestContext, work: Callable[[Connection], T]) -> T:
        ResourceService._check_account(conn, ctx)
        return work(conn)

    @staticmethod
    def _check_account(conn: Connection, ctx: RequestContext) -> None:
        # Checked in the request's own transaction: a disabled client is out at once, everywhere.
        if ctx.actor.kind == "system" and not is_active(conn, ctx.actor.id):
            raise _disabled(ctx.actor.kind)
        if ctx.actor.kind == "user" and not is_active_user(conn, ctx.actor.id):
            raise _disabled(ctx.actor.kind)

    @staticmethod
    def _guarded_read(conn: Connection, ctx: RequestContext, work: Callable[[Connection], T]) -> T:
        """``_guarded`` for a read's transaction: the account's state is asked beside the
        work's first statement where that one can take it (``_start_search``: on PostgreSQL
        each statement is a round trip), else once the work is done, or has failed, so that a
        disabled account learns nothing from its errors either. Nothing of a read is released
        before its transaction ends."""
        if ctx.actor.kind not in _ACCOUNT_STATE:  # the operator's console
            return work(conn)
        conn.info[_ACCOUNT_ASKED] = True
        try:
            result = work(conn)
        except Exception:
            if conn.info.pop(_ACCOUNT_ASKED, False):
                with contextlib.suppress(SQLAlchemyError):  # a failed transaction's own error
                    ResourceService._check_account(conn, ctx)
            raise
        finally:
            asked = conn.info.pop(_ACCOUNT_ASKED, False)
        if asked:
            ResourceService._check_account(conn, ctx)
        return result

    @staticmethod
    def _start_search(
        conn: Connection, ctx: RequestContext, *, snapshot: bool, planning: Planning
    ) -> int | None:
        """``repository.start_search``, with the account check ``_guarded_read`` left to it."""
        if not conn.info.pop(_ACCOUNT_ASKED, False):
            return repository.start_search(conn, snapshot=snapshot, planning=planning)[0]
        beside = (_ACCOUNT_STATE[ctx.actor.kind], ctx.actor.id)
        key, disabled = repository.start_search(
            conn, snapshot=snapshot, planning=planning, beside=beside
        )
        _refuse_if_disabled(ctx.actor.kind, disabled)
        return key

    @staticmethod
    def _guarded_current(
        conn: Connection, ctx: RequestContext, res_type: str, res_id: str
    ) -> StoredVersion | None:
        """``_guarded``'s account check and the current version of a resource, asked in one
        statement, the check judged before the version is used."""
        if not ID_PATTERN.match(res_id):  # no resource has it (PostgreSQL refuses NUL bytes)
            ResourceService._check_account(conn, ctx)
            return None
        account = _ACCOUNT_STATE.get(ctx.actor.kind)
        if account is None:  # the operator's console: no account to check
            return repository.current(conn, res_type, res_id)
        disabled, stored = repository.current_beside(conn, res_type, res_id, account, ctx.actor.id)
        _refuse_if_disabled(ctx.actor.kind, disabled)
        return stored

    # -- create ----------------------------------------------------------------------------

    async def create(
        self, ctx: RequestContext, res_type: str, resource: Any, *, if_none_exist: str | None = None
    ) -> ResourceResult:
        """Create with a server-assigned id (201), or return the conditional match (200)."""
        interaction = Interaction("create", res_type)
        await self.precheck(ctx, interaction, functools.partial(checked, resource, res_type))
        return await self.in_write(
            ctx,
            lambda conn: self.create_in(conn, ctx, res_type, resource, if_none_exist=if_none_exist),
            interaction,
        )

    def create_in(
        self,
        conn: Connection,
        ctx: RequestContext,
        res_type: str,
        resource: dict[str, Any],
        *,
        if_none_exist: str | None = None,
        res_id: str | None = None,
        assigned: bool = False,
        sealed: tuple[PreparedBlob, ...] = (),
        consent: repository.ConsentColumns | None = None,
    ) -> ResourceResult:
        """Create inside the caller's transaction; the resource must already be validated.

        ``res_id`` is the id to give it: the client's (it may collide with a concurrent create),
        or with ``assigned`` one the server generated (it cannot). ``sealed`` is its content
        encrypted before the transaction (``seal_ahead``), stored only if it is created.
        ``consent``: what consent decides on, for a resource that does not tell
        (``content_consent``).
        """
        self._allow(ctx, res_type, "c")
        client_id = res_id is not None and not assigned
        # An id made here is known to nothing else yet, so nothing can refer to it.
        unreferenced = res_id is None
        res_id = res_id or new_key()
        if if_none_exist is not None:
            existing = self.match_or_claim(conn, ctx, res_type, if_none_exist, res_id)
            if existing is not None:
                return self.shown(conn, 200, existing)
        return self._insert(
            conn,
            ctx,
            res_type,
            res_id,
            resource,
            client_id=client_id,
            presealed=tuple(self.vault.insert(conn, blob) for blob in sealed),
            unreferenced=unreferenced,
            consent=consent,
        )

    def match_or_claim(
        self, conn: Connection, ctx: RequestContext, res_type: str, condition: str, res_id: str
    ) -> StoredVersion | None:
        """The actor's own resource matching a conditional URL's query, or None once
        ``res_id`` holds the condition's claim until the transaction ends: a request with the
        same condition at the same moment waits for it, then finds what it stored. A
        conditional create or update that matched nothing created one resource per request
        before (ten conditional updates at once on PostgreSQL)."""
        existing = self.conditional_match(conn, ctx, res_type, condition)
        if existing is not None:
            return existing
        key = _condition_key(ctx.actor.organization, condition)
        while (holder := repository.claim_condition(conn, res_type, key, res_id)) is not None:
            # Claimed by someone else: use their resource unless it no longer matches.
            existing = self.conditional_match(conn, ctx, res_type, condition)
            if existing is not None or repository.move_claim(conn, res_type, key, holder, res_id):
                return existing
        return None

    def conditional_match(
        self,
        conn: Connection,
        ctx: RequestContext,
        res_type: str,
        condition: str,
        *,
        first: bool = False,
    ) -> StoredVersion | None:
        """The one resource of the actor's own matching a conditional URL's query; 412 when
        several match. Shared and directory resources never match: the actor cannot write them.
        """
        params = parse_qsl(_condition_query(res_type, condition), keep_blank_values=True)
        if not params:
            raise BadRequest("A conditional request needs search parameters", code="value")
        query = self.parse_query(ctx, res_type, params, strict=True)
        if not query.criteria:  # _count, _format, _sort…: a condition every resource meets
            raise BadRequest(
                f"The condition '{condition[:200]}' selects nothing: a conditional request needs "
                "search parameters, not only result parameters",
                code="value",
            )
        query.count, query.offset = 2, 0
        rows = (conn.execute(page_statement(query, self.ownership(ctx)))).all()
        if len(rows) > 1 and not first:
            raise PreconditionFailed(
                f"The condition '{condition}' matches more than one {res_type}", code="duplicate"
            )
        if not rows:
            return None
        return repository.current(conn, res_type, rows[0].res_id)

    def _insert(
        self,
        conn: Connection,
        ctx: RequestContext,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        client_id: bool,
        presealed: tuple[BlobInfo, ...] = (),
        unreferenced: bool = False,
        consent: repository.ConsentColumns | None = None,
    ) -> ResourceResult:
        now = self.now_us()
        owner = ctx.actor.organization
        prepared = self._prepare(
            conn,
            resource,
            res_id,
            1,
            now,
            owner,
            presealed,
            shown=_wants_body(ctx),
            consent=consent,
        )
        facts = self._check_rules(conn, ctx, res_type, resource, prepared.consent)
        try:
            rid = repository.insert_resource(
                conn,
                res_type=res_type,
                res_id=res_id,
                content=prepared.stored,
                last_updated_us=now,
                owner_org=owner,
                patient_ref=prepared.patient_ref,
                index=prepared.index,
                client_id=client_id,
                sealed=bool(prepared.blobs),
                consent=facts,
            )
        except repository.DuplicateId:
            raise Conflict(f"{res_type}/{res_id} was created concurrently; retry") from None
        self._after_write(
            conn,
            res_type,
            owner,
            facts.patient_key,
            None,
            res_id,
            unreferenced=unreferenced,
            created=True,
        )
        return ResourceResult(
            201, res_type, res_id, 1, now, prepared.shown, owner, prepared.blobs, rid
        )

    async def create_binary(
        self,
        ctx: RequestContext,
        content_type: str,
        content: PreparedBlob,
        security_context: str | None = None,
    ) -> ResourceResult:
        """Create a Binary from raw content already encrypted as it streamed in;
        ``security_context`` is the reference of the ``X-Security-Context`` header (FHIR R4)."""
        resource: dict[str, Any] = {"resourceType": "Binary", "contentType": content_type}
        if security_context is not None:
            resource["securityContext"] = {"reference": security_context}

        def work(conn: Connection) -> ResourceResult:
            self._allow(ctx, "Binary", "c")
            info = self.vault.insert(conn, content)
            resource["data"] = MARKER + info.blob_id
            result = self._insert(
                conn, ctx, "Binary", new_key(), resource, client_id=False, presealed=(info,)
            )
            return dataclasses.replace(result, content=None)  # raw content is not echoed

        return await self.in_write(ctx, work, Interaction("create", "Binary"))

    # -- exchange: what was addressed to whom, and document content ---------------------

    @staticmethod
    def find_own(
        conn: Connection,
        ctx: RequestContext,
        res_type: str,
        identifier: dict[str, Any],
        param: str = "identifier",
    ) -> StoredVersion | None:
        """The actor's own oldest resource with this identifier (an indexed look-up)."""
        token = _token_of(identifier)
        if token is None:
            return None
        system, value = token
        found = repository.find_by_token(
            conn, res_type, param, system, value, ctx.actor.organization, limit=1
        )
        return found[0] if found else None

    def find_own_each(
        self,
        conn: Connection,
        ctx: RequestContext,
        wanted: Sequence[tuple[str, dict[str, Any]]],
        *,
        exclusive: bool = False,
    ) -> list[StoredVersion | None]:
        """``find_own`` of several (resource type, identifier) pairs, those that name their
        system in one statement. ``exclusive``: hold each identifier first (an advisory lock
        on PostgreSQL, to the end of the transaction), so that a transaction storing one of
        them at the same moment is waited for and what it stored is found (two pushes of one
        document at once: on PostgreSQL both looked before either had committed, and each
        stored a copy)."""
        owner = ctx.actor.organization
        if exclusive:
            tokens = [(res_type, _token_of(identifier)) for res_type, identifier in wanted]
            names = [f"own:{owner}:{t}:{token[0]}|{token[1]}" for t, token in tokens if token]
            locks.hold(conn, *names)
        keys = [_identifier_key(res_type, identifier) for res_type, identifier in wanted]
        found = (
            repository.find_each_by_token(conn, [k for k in keys if k is not None], owner)
            if owner is not None
            else {}
        )
        return [
            found.get(key)
            if key is not None and owner is not None
            else self.find_own(conn, ctx, *w)
            for key, w in zip(keys, wanted, strict=True)
        ]

    @staticmethod
    def find_own_patient(conn: Connection, ctx: RequestContext, bsn: str) -> StoredVersion | None:
        """The actor's own oldest Patient record with this BSN."""
        return repository.find_patient(conn, bsn, ctx.actor.organization)

    def share(
        self,
        conn: Connection,
        results: list[ResourceResult],
        organization: str,
        delivery_id: str | None = None,
    ) -> None:
        """Let ``organization`` read these resources (they were addressed to it) as they are
        now: a later version the sender writes needs consent. The notification Task is shared
        live, as both sides write it. With a ``delivery_id`` only once that delivery is
        admitted (``admit_delivery``)."""
        sent = [
            (r.rid, None if r.res_type == "Task" else r.version)
            for r in results
            if r.rid is not None
        ]
        repository.share(conn, sent, organization, self.now_us(), delivery_id)

    def cancel_notification(self, conn: Connection, sender: str, task_id: str, reason: str) -> None:
        """Set a notification Task the sender owns to cancelled, saying why."""
        ctx = RequestContext(actor=operator_for(sender), base_url="urn:zorgbrug:delivery")
        stored = repository.lock_current(conn, "Task", task_id)
        if stored is None or stored.deleted or stored.content is None:
            return
        task = orjson.loads(stored.content)
        task["status"] = "cancelled"
        task["statusReason"] = {"text": reason[:500]}
        self.update_in(conn, ctx, "Task", task_id, task)

    @staticmethod
    def patient_of(conn: Connection, res_type: str, res_id: str) -> str | None:
        """The BSN of the patient a stored resource is about, if known."""
        stored = repository.current(conn, res_type, res_id)
        return repository.patient_key_of(conn, stored.rid) if stored else None

    def admit_delivery(
        self, conn: Connection, delivery_id: str, sender: str, recipient: str, task_id: str
    ) -> str | None:
        """Re-check a directed referral just before its delivery: None when still permitted
        (its shares take effect), else why not (the delivery must stop)."""
        task = repository.current(conn, "Task", task_id)
        patient_key = repository.patient_key_of(conn, task.rid) if task else None
        if task is None or task.deleted or patient_key is None:
            return f"Task/{task_id} or its patient no longer exists"
        decision = self.policy.decide(
            conn,
            actor_org=recipient,
            actor_id=f"delivery:{delivery_id}",
            actor_role="system",
            holder_org=sender,
            patient_key=patient_key,
            resource_type="DocumentReference",
            action="push",
        )
        if not decision.permit:
            return decision.explain()
        repository.activate_shares(conn, delivery_id)
        return None

    @staticmethod
    def content_consent(
        patient_key: str | None, data_date_us: int | None
    ) -> repository.ConsentColumns:
        """What consent decides on for a Binary holding a document of this patient and date
        (a Binary names no patient): to be given to ``create_in``."""
        return repository.ConsentColumns(patient_key, leaf_of("Binary"), data_date_us)

    @staticmethod
    def is_shared(conn: Connection, rid: int, organization: str) -> bool:
        return repository.is_shared(conn, rid, organization)

    def blob_of(self, conn: Connection, ctx: RequestContext, binary_id: str) -> BlobInfo | None:
        """The encrypted content of a Binary the actor may read, described (not decrypted)."""
        return self._described(conn, self._readable(conn, ctx, "Binary", binary_id))

    def _described(self, conn: Connection, binary: StoredVersion) -> BlobInfo | None:
        """A stored Binary's content, described: its stored JSON holds a blob marker."""
        blob_id = blob_id_of(orjson.loads(binary.content or b"{}").get("data"))
        return self.vault.describe(conn, blob_id) if blob_id else None

    def deprecate_content(
        self, conn: Connection, ctx: RequestContext, document: dict[str, Any]
    ) -> None:
        """Mark the content of a superseded DocumentReference deprecated (ITI-68: 410)."""
        self.vault.deprecate(conn, self._content_blobs(conn, ctx, document))

    def _content_follows_status(
        self, conn: Connection, ctx: RequestContext, document: dict[str, Any]
    ) -> None:
        """A DocumentReference marked superseded or entered-in-error (a document sent about
        the wrong patient, say) has its content no longer served, also to those it was sent
        to (ITI-68: 410); marked current again, it is served again."""
        status = document.get("status")
        if status in ("superseded", "entered-in-error"):
            self.deprecate_content(conn, ctx, document)
        elif status == "current":
            self.vault.reinstate(conn, self._content_blobs(conn, ctx, document))

    def _content_blobs(
        self, conn: Connection, ctx: RequestContext, document: dict[str, Any]
    ) -> list[str]:
        """The stored content of a DocumentReference: its attachments (``Binary/`` URLs) and
        the Binaries of its owner whose security context it is."""
        binaries = [
            url.removeprefix("Binary/")
            for content in document.get("content") or []
            if (url := str((content.get("attachment") or {}).get("url", ""))).startswith("Binary/")
        ]
        if "id" in document:
            target = f"DocumentReference/{document['id']}"
            owner = ctx.actor.organization
            binaries += [b for _rid, b in repository.in_security_context(conn, target, owner)]
        found = []
        for binary_id in dict.fromkeys(binaries):
            try:
                info = self.blob_of(conn, ctx, binary_id)
            except (NotFound, Gone):
                continue
            if info is not None:
                found.append(info.blob_id)
        return found

    async def retrieve(self, ctx: RequestContext, binary_id: str) -> RetrievedContent:
        """ITI-68: a Binary's raw content after every integrity check: 404 unknown, 410 deleted
        or its document superseded. Small content comes whole; large content is verified
        here and then streamed with ``stream``."""
        check_type("Binary")

        def work(conn: Connection, found: StoredVersion | None) -> RetrievedContent:
            stored = self._readable(conn, ctx, "Binary", binary_id, lambda: found)
            resource = orjson.loads(stored.content or b"{}")
            content_type = str(resource.get("contentType") or "application/octet-stream")
            blob_id = blob_id_of(resource.get("data"))
            fetched = self.vault.fetch(conn, blob_id) if blob_id else None
            if fetched is None:
                return RetrievedContent(content_type, None, b"")
            info, plaintext = fetched
            if info.deprecated:
                raise _no_longer_served(binary_id)
            return RetrievedContent(content_type, info, plaintext)  # None: _large_content reads

        interaction = Interaction("retrieve-document", f"Binary/{binary_id[:64]}")
        return await self.in_keyed_lookup(
            ctx, ("Binary", binary_id), work, interaction, self._large_content, _content_unread
        )

    def _large_content(self, conn: Connection, found: RetrievedContent) -> RetrievedContent:
        """``found`` with its content read (up to STREAM_ABOVE_BYTES) or, larger, verified."""
        if found.info is None or not _content_unread(found):
            return found
        if found.info.size <= STREAM_ABOVE_BYTES:
            return dataclasses.replace(found, body=self.vault.read(conn, found.info.blob_id))
        for _chunk in self.vault.chunks(conn, found.info.blob_id):
            pass  # a whole pass checks both hashes before the first byte is sent
        return found

    async def stream(
        self, info: BlobInfo, span: tuple[int, int] | None = None, batch: int = 4
    ) -> AsyncIterator[bytes]:
        """The verified content of a large blob, or its bytes ``span`` (first and last), a few
        chunks per database round trip; only the chunks the span touches are read."""
        first_byte, last_byte = span or (0, info.size - 1)
        end = last_byte // CHUNK_BYTES + 1
        offset = first_byte // CHUNK_BYTES * CHUNK_BYTES
        for first in range(first_byte // CHUNK_BYTES, end, batch):
            count = min(batch, end - first)
            pieces = await self.db.read(functools.partial(self._chunks, info, first, count))
            for piece in pieces:
                low, high = max(first_byte - offset, 0), min(last_byte + 1 - offset, len(piece))
                if low < high:
                    yield piece if (low, high) == (0, len(piece)) else piece[low:high]
                offset += len(piece)

    def _chunks(self, info: BlobInfo, first: int, count: int, conn: Connection) -> list[bytes]:
        return list(self.vault.chunks(conn, info.blob_id, first=first, count=count))

    # -- consent: emergencies and the DPO's overview ----------------------------------------

    async def declare_emergency(
        self, ctx: RequestContext, bsn: str, reason: str
    ) -> tuple[str, str]:
        """Break the glass: a clinician may see every organisation's data of one patient for
        a limited time, flagged; returns (start, end) as instants. 403 for anyone else."""
        interaction = Interaction("emergency", "Patient", details=(("reason", reason[:500]),))

        def check() -> None:
            if ctx.actor.kind != "user" or "clinician" not in ctx.actor.roles:
                raise Forbidden("Only a clinician, logged in as a person, can declare an emergency")
            if not is_valid_bsn(bsn):
                raise Unprocessable(f"'{bsn[:20]}' is not a valid BSN", code="business-rule")

        await self.precheck(ctx, interaction, check)

        def work(conn: Connection) -> tuple[str, str]:
            try:
                emergency = self.policy.declare_emergency(
                    conn,
                    actor_id=ctx.actor.id,
                    actor_org=str(ctx.actor.organization),
                    patient_key=bsn,
                    reason=reason,
                )
            except InvalidEmergency as error:
                raise Unprocessable(str(error), code="required") from None
            scope = scope_of(conn)
            if scope is not None:
                scope.named_patient = bsn
                scope.interaction = dataclasses.replace(
                    scope.interaction,
                    details=(*scope.interaction.details, ("until", emergency.end.isoformat())),
                )
            return emergency.start.isoformat(), emergency.end.isoformat()

        return await self.in_write(ctx, work, interaction)

    async def emergency_until(self, ctx: RequestContext, bsn: str) -> datetime | None:
        """When the actor's own break-the-glass for this patient ends, if one holds now."""
        return await self.db.read(lambda conn: self.policy.emergency_end(conn, ctx.actor.id, bsn))

    async def access_overview(self, ctx: RequestContext, patient_id: str) -> list[AccessLine]:
        """For a DPO: which organisations may see which data of this patient, and why."""
        interaction = Interaction("read", f"Patient/{patient_id[:64]}", query="$access")

        def check() -> None:
            if not (ctx.actor.is_local or ctx.actor.roles & {"dpo", "admin"}):
                raise Forbidden("The access overview is for data-protection officers")

        await self.precheck(ctx, interaction, check)

        def work(conn: Connection) -> list[AccessLine]:
            patient = self._readable(conn, ctx, "Patient", patient_id)
            bsn = bsn_of(orjson.loads(patient.content or b"{}"))
            if bsn is None:
                raise Unprocessable(
                    "The patient has no BSN; consent and exchange work per BSN",
                    code="business-rule",
                )
            own = None if ctx.actor.is_local else ctx.actor.organization
            return access_overview(conn, self.policy, bsn, holder=own)

        return await self.in_read(ctx, work, interaction)

    # -- read ------------------------------------------------------------------------------

    async def read(self, ctx: RequestContext, res_type: str, res_id: str) -> ResourceResult:
        """The current version: 404 unknown, 410 deleted."""
        if res_type == "AuditEvent":
            content, recorded_us = await self.audit_log.read(ctx, res_id)
            return ResourceResult(200, res_type, res_id, 1, recorded_us, content)
        interaction = Interaction("read", f"{res_type[:64]}/{res_id[:64]}")
        await self.precheck(ctx, interaction, functools.partial(check_type, res_type))
        return await self.in_keyed_lookup(
            ctx,
            (res_type, res_id),
            lambda conn, found: self._readable(conn, ctx, res_type, res_id, lambda: found),
            interaction,
            self._shown_ok,
            _sealed,
        )

    def read_in(
        self, conn: Connection, ctx: RequestContext, res_type: str, res_id: str
    ) -> ResourceResult:
        return self.shown(conn, 200, self._readable(conn, ctx, res_type, res_id))

    def _readable(
        self,
        conn: Connection,
        ctx: RequestContext,
        res_type: str,
        res_id: str,
        found: Callable[[], StoredVersion | None] | None = None,
    ) -> StoredVersion:
        """The current version the actor may read: 404 unknown or not visible, 410 deleted.
        ``found``: the version as already looked up (``in_keyed_lookup``)."""
        check_known_id(res_type, res_id)
        self._allow(ctx, res_type, "r")
        stored = found() if found is not None else repository.current(conn, res_type, res_id)
        if stored is None or not self._visible(conn, ctx, stored):
            if stored is not None:
                self._note_refused(conn, stored)
            raise NotFound(f"{res_type}/{res_id} is not known")
        if stored.deleted:
            raise Gone(
                f"{res_type}/{res_id} was deleted", headers={"ETag": f'W/"{stored.version}"'}
            )
        _note_seen(conn, stored)
        return stored

    async def vread(
        self, ctx: RequestContext, res_type: str, res_id: str, version_id: str
    ) -> ResourceResult:
        interaction = Interaction(
            "vread", f"{res_type[:64]}/{res_id[:64]}/_history/{version_id[:16]}"
        )
        await self.precheck(ctx, interaction, functools.partial(check_type, res_type))
        return await self.in_lookup(
            ctx,
            lambda conn: self._readable_version(conn, ctx, res_type, res_id, version_id),
            interaction,
            self._shown_ok,
            _sealed,
        )

    def _shown_ok(self, conn: Connection, stored: StoredVersion) -> ResourceResult:
        if stored.res_type == "Binary" and stored.sealed:
            # As FHIR too, content no longer served answers as ITI-68 does (``retrieve``).
            info = self._described(conn, stored)
            if info is not None and info.deprecated:
                raise _no_longer_served(stored.res_id)
        return self.shown(conn, 200, stored)

    def vread_in(
        self, conn: Connection, ctx: RequestContext, res_type: str, res_id: str, version_id: str
    ) -> ResourceResult:
        return self.shown(
            conn, 200, self._readable_version(conn, ctx, res_type, res_id, version_id)
        )

    def _readable_version(
        self, conn: Connection, ctx: RequestContext, res_type: str, res_id: str, version_id: str
    ) -> StoredVersion:
        """The version the actor may read: 404 unknown or not visible, 410 a deletion."""
        check_known_id(res_type, res_id)
        number = whole_number(version_id)
        if number is None:
            raise NotFound(f"Version '{version_id[:20]}' of {res_type}/{res_id} is not known")
        self._allow(ctx, res_type, "r")
        stored = repository.version(conn, res_type, res_id, number)
        if stored is None or not self._version_visible(conn, ctx, stored):
            if stored is not None:
                self._note_refused(conn, stored)
            raise NotFound(f"Version {version_id} of {res_type}/{res_id} is not known")
        if stored.deleted:
            raise Gone(f"Version {version_id} of {res_type}/{res_id} is a deletion")
        _note_seen(conn, stored)
        return stored

    # -- update and delete -----------------------------------------------------------------

    async def update(
        self,
        ctx: RequestContext,
        res_type: str,
        res_id: str,
        resource: Any,
        *,
        if_match: str | None = None,
    ) -> ResourceResult:
        """Replace the resource (200), or create it with the client's id (201)."""
        interaction = Interaction("update", f"{res_type[:64]}/{res_id[:64]}")
        await self.precheck(ctx, interaction, functools.partial(checked, resource, res_type))
        return await self.in_write(
            ctx,
            lambda conn: self.update_in(conn, ctx, res_type, res_id, resource, if_match=if_match),
            interaction,
        )

    def update_in(
        self,
        conn: Connection,
        ctx: RequestContext,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> ResourceResult:
        check_id(res_id)
        body_id = resource.get("id")
        if body_id is None:
            raise BadRequest("An update must carry the resource id in the body", expression=["id"])
        if body_id != res_id:
            raise BadRequest(
                f"Body id '{body_id}' does not match the URL id '{res_id}'", expression=["id"]
            )
        self._allow(ctx, res_type, "u")
        previous = repository.lock_current(conn, res_type, res_id)
        if previous is not None and not self._owns(ctx, previous):
            if not self._visible(conn, ctx, previous):
                raise Conflict(f"The id {res_type}/{res_id} is not available; choose another")
            if not self._may_change_shared(ctx, previous, resource):
                raise Forbidden(
                    f"{res_type}/{res_id} belongs to another organisation; it cannot be changed"
                )
        elif (
            previous is not None
            and _sent_notification(previous)
            and not is_change_by_requester(orjson.loads(previous.content or b"{}"), resource)
        ):
            raise Forbidden(
                f"{res_type}/{res_id} is a notification sent to another organisation: its "
                "progress is the addressee's to report; the sender may only cancel it",
            )
        if if_match is not None:
            expected = parse_etag(if_match)
            if previous is None or previous.deleted:
                state = "does not exist" if previous is None else "is deleted"
                raise PreconditionFailed(
                    f'{res_type}/{res_id} {state}: there is no version W/"{expected}" to update'
                )
            if previous.version != expected:
                raise PreconditionFailed(
                    f'{res_type}/{res_id} is at version W/"{previous.version}", not W/"{expected}"'
                )
        if res_type == "Binary":
            # Content once stored is what was sent and hashed: changing it under the same id
            # would change a document behind its DocumentReference (whose hash stays). So a
            # Binary is created with POST (its id the server's) and never updated.
            raise Unprocessable(
                f"Binary/{res_id} cannot be written with PUT: stored content is kept as it was; "
                "POST new content as a new Binary (for a document: send a replacement)",
                code="business-rule",
            )
        if previous is None:
            return self._insert(conn, ctx, res_type, res_id, resource, client_id=True)
        now = max(self.now_us(), previous.last_updated_us + 1)
        owner = previous.owner_org or ctx.actor.organization
        prepared = self._prepare(
            conn, resource, res_id, previous.version + 1, now, owner, shown=_wants_body(ctx)
        )
        facts = self._check_rules(conn, ctx, res_type, resource, prepared.consent)
        earlier_key = repository.patient_key_of(conn, previous.rid)
        version = repository.write_version(
            conn,
            previous,
            content=prepared.stored,
            last_updated_us=now,
            method="PUT",
            owner_org=owner,
            patient_ref=prepared.patient_ref,
            index=prepared.index,
            sealed=bool(prepared.blobs),
            consent=facts,
        )
        self._after_write(conn, res_type, owner, facts.patient_key, earlier_key, res_id)
        if res_type == "DocumentReference":
            self._content_follows_status(conn, ctx, resource)
        status = 201 if previous.deleted else 200
        return ResourceResult(
            status,
            res_type,
            res_id,
            version,
            now,
            prepared.shown,
            owner,
            prepared.blobs,
            previous.rid,
        )

    @staticmethod
    def _may_change_shared(
        ctx: RequestContext, previous: StoredVersion, resource: dict[str, Any]
    ) -> bool:
        """Another organisation's resource may be changed only in ways it was given to them:
        the addressee of a notification Task updates its status."""
        if previous.res_type != "Task" or previous.content is None or previous.deleted:
            return False
        return is_status_change_by_owner(
            orjson.loads(previous.content), resource, ctx.actor.organization
        )

    async def delete(self, ctx: RequestContext, res_type: str, res_id: str) -> ResourceResult:
        """Delete (a new, empty version); later reads answer 410."""
        interaction = Interaction("delete", f"{res_type[:64]}/{res_id[:64]}")
        await self.precheck(ctx, interaction, functools.partial(check_type, res_type))
        return await self.in_write(
            ctx, lambda conn: self.delete_in(conn, ctx, res_type, res_id), interaction
        )

    async def update_conditional(
        self,
        ctx: RequestContext,
        res_type: str,
        condition: str,
        resource: Any,
        *,
        if_match: str | None = None,
    ) -> ResourceResult:
        """Update the one resource matching ``condition``, or create it when none matches;
        with ``if_match``, only the version it names (412 otherwise, also when none matches)."""
        interaction = Interaction("update", res_type[:64], query=f"PUT {res_type}?{condition}")
        await self.precheck(ctx, interaction, functools.partial(checked, resource, res_type))
        return await self.in_write(
            ctx,
            lambda conn: self.update_conditional_in(
                conn, ctx, res_type, condition, resource, if_match=if_match
            ),
            interaction,
        )

    def update_conditional_in(
        self,
        conn: Connection,
        ctx: RequestContext,
        res_type: str,
        condition: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> ResourceResult:
        """``update_conditional`` in the caller's transaction (also a batch entry's)."""
        body_id = resource.get("id")
        res_id = body_id or new_key()
        found = self.match_or_claim(conn, ctx, res_type, condition, res_id)
        if found is not None:
            if body_id not in (None, found.res_id):
                raise BadRequest(
                    f"Body id '{body_id}' differs from the matched {found.res_id}",
                    expression=["id"],
                )
            res_id = found.res_id
        resource["id"] = res_id
        return self.update_in(conn, ctx, res_type, res_id, resource, if_match=if_match)

    async def delete_conditional(
        self, ctx: RequestContext, res_type: str, condition: str
    ) -> ResourceResult | None:
        """Delete the one resource matching ``condition``; None when nothing matched."""
        interaction = Interaction("delete", res_type[:64], query=f"DELETE {res_type}?{condition}")
        await self.precheck(ctx, interaction, functools.partial(check_type, res_type))
        return await self.in_write(
            ctx,
            lambda conn: self.delete_conditional_in(conn, ctx, res_type, condition),
            interaction,
        )

    def delete_conditional_in(
        self, conn: Connection, ctx: RequestContext, res_type: str, condition: str
    ) -> ResourceResult | None:
        found = self.conditional_match(conn, ctx, res_type, condition)
        if found is None:
            return None
        return self.delete_in(conn, ctx, res_type, found.res_id)

    def delete_in(
        self, conn: Connection, ctx: RequestContext, res_type: str, res_id: str
    ) -> ResourceResult:
        check_known_id(res_type, res_id)
        self._allow(ctx, res_type, "d")
        previous = repository.lock_current(conn, res_type, res_id)
        if previous is None or not self._visible(conn, ctx, previous):
            raise NotFound(f"{res_type}/{res_id} is not known")
        if not self._owns(ctx, previous):
            raise Forbidden(f"{res_type}/{res_id} belongs to another organisation")
        if previous.deleted:
            return ResourceResult.of(204, previous, None)
        if res_type == "DocumentReference":  # a deleted document's content is not served
            self.deprecate_content(conn, ctx, orjson.loads(previous.content or b"{}"))
        now = max(self.now_us(), previous.last_updated_us + 1)
        earlier_key = repository.patient_key_of(conn, previous.rid)
        version = repository.write_version(
            conn,
            previous,
            content=None,
            last_updated_us=now,
            method="DELETE",
            owner_org=previous.owner_org,
            patient_ref=None,
            index=None,
        )
        self._after_write(conn, res_type, previous.owner_org, None, earlier_key, res_id)
        return ResourceResult(204, res_type, res_id, version, now, None)

    # -- search ----------------------------------------------------------------------------

    async def search(
        self, ctx: RequestContext, res_type: str, params: list[tuple[str, str]]
    ) -> bytes:
        """A searchset Bundle for the query, paged with links that stay valid under writes."""
        if res_type == "AuditEvent":
            return await self.audit_log.search(ctx, params)
        interaction = search_interaction(res_type, params)

        def parse() -> SearchQuery:
            check_type(res_type)
            return self.parse_query(ctx, res_type, params, strict=ctx.strict_handling)

        query = await self.precheck(ctx, interaction, parse)
        return await self.in_read(ctx, lambda conn: self.search_in(conn, ctx, query), interaction)

    async def search_with_owners(
        self, ctx: RequestContext, res_type: str, params: list[tuple[str, str]]
    ) -> tuple[bytes, dict[str, str | None]]:
        """Like ``search``, with the URA of the organisation holding each match (by id): for
        views that mark every item with its source hospital."""
        return (await self.search_together(ctx, [(res_type, params)]))[0]

    async def search_together(
        self, ctx: RequestContext, queries: list[tuple[str, list[tuple[str, str]]]]
    ) -> list[tuple[bytes, dict[str, str | None]]]:
        """Several searches as one audited call (one screen about one patient): one event per
        patient, holder and basis, instead of one per search. Each answer comes with the URA
        of the organisation holding each match."""
        if len(queries) == 1:
            interaction = search_interaction(*queries[0])
        else:
            asked = "; ".join(str(search_interaction(t, p).query) for t, p in queries)
            interaction = Interaction("search-type", None, query=asked[:2000])

        def parse() -> list[SearchQuery]:
            for res_type, _params in queries:
                check_type(res_type)
            return [self.parse_query(ctx, t, p, strict=True) for t, p in queries]

        parsed = await self.precheck(ctx, interaction, parse)

        def work(conn: Connection) -> list[tuple[bytes, dict[str, str | None]]]:
            answers = []
            for query in parsed:
                owners: dict[str, str | None] = {}
                answers.append((self.search_in(conn, ctx, query, owners), owners))
            return answers

        return await self.in_read(ctx, work, interaction)

    def search_in(
        self,
        conn: Connection,
        ctx: RequestContext,
        query: SearchQuery,
        owners: dict[str, str | None] | None = None,
    ) -> bytes:
        self._allow(ctx, query.resource_type, "s")
        # Included resources need read permission on every type they may be of.
        query.includes = [
            i
            for i in query.includes
            if all(
                ctx.actor.may(t, "r")
                for t in ([i.target_type] if i.target_type else i.param.targets)
            )
        ]
        query.revincludes = [i for i in query.revincludes if ctx.actor.may(i.source_type, "r")]
        visible = self.visibility(ctx)
        base = f"{ctx.base_url}/{query.resource_type}"
        snapshot = self._start_search(
            conn,
            ctx,
            snapshot=query.snapshot is None and not query.summary_count,
            planning="kept" if keyed(query) else "generic" if query.counts_all else "for values",
        )
        self._audit_patient_query(conn, ctx, query)
        if query.summary_count:
            ((total,),) = rows_of(
                conn, *search_statement("count", query, *self.bound_visibility(ctx))
            )
            return bundle_bytes(
                "searchset",
                [],
                bundle_id=str(uuid.uuid4()),
                total=total,
                links=[("self", page_url(base, query.used))],
            )
        if query.snapshot is None:
            query.snapshot = snapshot
        rows, total, more = self._page(conn, query, self.bound_visibility(ctx))
        if owners is not None:
            owners.update((row.res_id, row.owner_org) for row in rows)
        entries = [
            BundleEntry(
                f"{base}/{row.res_id}",
                self._shape(self._reveal(conn, row.content or b"", row.sealed), query),
                "match",
            )
            for row in rows  # a match is never deleted, so it has content
        ]
        seen: set[tuple[str, str]] = {(query.resource_type, row.res_id) for row in rows}
        if (scope := scope_of(conn)) is not None:
            for row in rows:
                scope.saw(row.touch("R"))
        shown: list[int] = []  # what the includes add
        if rows:
            for include in query.includes:
                statement = include_statement(include, [row.rid for row in rows], visible)
                entries.extend(self._included(conn, statement, ctx, seen, shown))
            for include in query.revincludes:
                statement = revinclude_statement(
                    include, query.resource_type, [row.res_id for row in rows], visible
                )
                entries.extend(self._included(conn, statement, ctx, seen, shown))
        _note_seen_rows(conn, shown)
        return bundle_bytes(
            "searchset",
            entries,
            bundle_id=str(uuid.uuid4()),
            total=None if query.total == "none" else total,
            links=self._links(base, query, more),
        )

    @staticmethod
    def _page(
        conn: Connection, query: SearchQuery, visibility: tuple[Visibility, dict[str, Any]]
    ) -> tuple[list[StoredVersion], int | None, bool]:
        """The page's versions, the number of all matches when it is known, and whether more
        matches follow the page. Counting every match is done on ``_total=accurate`` (and for
        ``_count=0``); otherwise the total is known when the page holds the last match."""
        # On the driver's cursor: SQLAlchemy's work for each run of a kept statement cost a
        # twentieth of a search's CPU.
        width = repository.VERSION_WIDTH
        if query.counts_all:
            found = rows_of(conn, *search_statement("counted", query, *visibility))
            if found:
                total = int(found[0][-1])
            elif query.offset == 0 and query.count > 0:
                total = 0
            else:  # past the last page, or no page asked for: only a count tells
                ((total,),) = rows_of(conn, *search_statement("count", query, *visibility))
            _note_page_basis(conn, found, visibility[0])
            rows = [repository.stored(row[:width]) for row in found]
            return rows, total, query.count > 0 and query.offset + query.count < total
        postgres = conn.dialect.name == "postgresql"
        kind: Kind = "page, candidates first" if postgres else "page"
        found = rows_of(conn, *search_statement(kind, query, *visibility))
        _note_page_basis(conn, found[: query.count], visibility[0])
        rows = [repository.stored(row[:width]) for row in found[: query.count]]
        more = len(found) > query.count
        # OFFSET skipped ``offset`` matches, so a page short of full ends the matches; an empty
        # page past the start does not tell how many there were.
        known = not more and (rows or query.offset == 0)
        return rows, query.offset + len(rows) if known else None, more

    def _audit_patient_query(
        self, conn: Connection, ctx: RequestContext, query: SearchQuery
    ) -> None:
        """A search about one patient: note whom it was about and, for every other
        organisation holding such data of the patient that the actor may not see, the access
        decision that kept it out."""
        scope = scope_of(conn)
        if scope is None:
            return
        bsn = _named_patient(conn, query)
        scope.named_patient = bsn
        organization = ctx.actor.organization
        if bsn is None or organization is None or ctx.actor.is_local:
            return
        check = hidden_of_patient(
            organization, NETWORK, self._consent_scope(ctx), addressed=not ctx.consulting
        )
        for stored in repository.hidden_holdings(conn, bsn, query.resource_type, check):
            self._note_refused(conn, stored)

    def _included(
        self,
        conn: Connection,
        statement: Any,
        ctx: RequestContext,
        seen: set[tuple[str, str]],
        shown: list[int],
    ) -> list[BundleEntry]:
        entries = []
        for row in conn.execute(statement).all():
            if (row.res_type, row.res_id) in seen:
                continue
            seen.add((row.res_type, row.res_id))
            shown.append(row.rid)
            content = self._reveal(conn, row.content, row.sealed)
            entries.append(
                BundleEntry(f"{ctx.base_url}/{row.res_type}/{row.res_id}", content, "include")
            )
        return entries

    @staticmethod
    def _links(base: str, query: SearchQuery, more: bool) -> list[tuple[str, str]]:
        kept = [(k, v) for k, v in query.used if k != "_count"]

        def at(offset: int) -> str:
            return page_url(
                base,
                [
                    *kept,
                    ("_count", str(query.count)),
                    ("_offset", str(offset)),
                    ("_snapshot", str(query.snapshot)),
                ],
            )

        links = [("self", at(query.offset))]
        if query.offset > 0:
            links.append(("previous", at(max(0, query.offset - query.count))))
        if more:
            links.append(("next", at(query.offset + query.count)))
        return links

    def parse_query(
        self, ctx: RequestContext, res_type: str, params: list[tuple[str, str]], *, strict: bool
    ) -> SearchQuery:
        return parse_search(
            res_type,
            params,
            registry(),
            default_count=self.settings.default_page_size,
            max_count=self.settings.max_page_size,
            strict=strict,
            own_base=ctx.base_url,
        )

    @staticmethod
    def _shape(content: bytes, query: SearchQuery) -> bytes:
        if not query.elements:
            return content
        resource = orjson.loads(content)
        kept = {
            k: v for k, v in resource.items() if k in _MANDATORY_ELEMENTS or k in query.elements
        }
        meta = dict(kept.get("meta") or {})
        meta["tag"] = [*meta.get("tag", []), _SUBSETTED]
        kept["meta"] = meta
        return orjson.dumps(kept)

    # -- history ---------------------------------------------------------------------------

    async def history(
        self,
        ctx: RequestContext,
        res_type: str | None,
        res_id: str | None,
        params: list[tuple[str, str]],
    ) -> bytes:
        """A history Bundle, newest first, paged over a fixed snapshot of versions."""
        level = "instance" if res_id is not None else "type" if res_type is not None else "system"
        target = "/".join(p[:64] for p in (res_type, res_id) if p) or None
        interaction = Interaction(f"history-{level}", target, query=urlencode(params)[:2000])

        def check() -> tuple[int, int, int | None, int | None, list[tuple[str, str]]]:
            if res_type is not None:
                check_type(res_type)
            if res_id is not None:
                check_known_id(res_type or "", res_id)
            self._allow(ctx, res_type or "*", "r")
            return self._history_params(ctx, params)

        count, offset, since, snapshot, used = await self.precheck(ctx, interaction, check)

        def work(conn: Connection) -> tuple[list[StoredVersion], int, int]:
            # A resource's history is there when its current version is visible, or one
            # before it (what was sent to the organisation, when the sender changed it since).
            refused = None
            if res_id is not None:
                stored = repository.current(conn, res_type or "", res_id)
                if stored is None:
                    raise NotFound(f"{res_type}/{res_id} is not known")
                refused = None if self._visible(conn, ctx, stored) else stored
            versions, total, pinned = repository.history(
                conn,
                res_type=res_type,
                res_id=res_id,
                since_us=since,
                snapshot=snapshot,
                count=count,
                offset=offset,
                visible=self.visibility(ctx),
            )
            if refused is not None and total == 0:
                self._note_refused(conn, refused)
                raise NotFound(f"{res_type}/{res_id} is not known")
            revealed = [
                v
                if not v.sealed or v.content is None
                else dataclasses.replace(v, content=self.vault.reveal(conn, v.content))
                for v in versions
            ]
            for v in versions:
                _note_seen(conn, v)
            return revealed, total, pinned

        versions, total, snapshot = await self.in_read(ctx, work, interaction)
        base = ctx.base_url + "".join(f"/{p}" for p in (res_type, res_id) if p) + "/_history"
        entries = [self._history_entry(ctx, v) for v in versions]

        def at(position: int) -> str:
            return page_url(
                base,
                [
                    *used,
                    ("_count", str(count)),
                    ("_offset", str(position)),
                    ("_snapshot", str(snapshot)),
                ],
            )

        links = [("self", at(offset))]
        if offset > 0:
            links.append(("previous", at(max(0, offset - count))))
        if offset + count < total:
            links.append(("next", at(offset + count)))
        return bundle_bytes(
            "history", entries, bundle_id=str(uuid.uuid4()), total=total, links=links
        )

    def _history_params(
        self, ctx: RequestContext, params: list[tuple[str, str]]
    ) -> tuple[int, int, int | None, int | None, list[tuple[str, str]]]:
        """_count, _offset, _since (as microseconds), _snapshot and the parameters to keep."""
        count, offset, since, snapshot = self.settings.default_page_size, 0, None, None
        used: list[tuple[str, str]] = []
        for name, value in params:
            if name == "_count":
                count = min(non_negative(name, value), self.settings.max_page_size)
            elif name == "_offset":
                offset = non_negative(name, value)
            elif name == "_snapshot":
                snapshot = non_negative(name, value)
            elif name == "_since":
                found = date_range(value)
                if found is None:
                    raise BadRequest(f"_since '{value}' is not an instant", code="value")
                since = found[0]
                used.append((name, value))
            elif name in ("_format", "_pretty"):
                continue
            elif ctx.strict_handling:
                raise BadRequest(f"History does not support '{name}'", code="not-supported")
        return count, offset, since, snapshot, used

    @staticmethod
    def _history_entry(ctx: RequestContext, v: StoredVersion) -> BundleEntry:
        status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[
            v.method or "PUT"
        ]
        url = v.res_type if v.method == "POST" else f"{v.res_type}/{v.res_id}"
        return BundleEntry(
            f"{ctx.base_url}/{v.res_type}/{v.res_id}",
            None if v.deleted else v.content,
            request={"method": v.method, "url": url},
            response={
                "status": status,
                "etag": f'W/"{v.version}"',
                "lastModified": instant(v.last_updated_us),
            },
        )

    # -- consent: what each write means for who may see what --------------------------------

    @staticmethod
    def _patient_key(
        conn: Connection, resource: dict[str, Any], patient_ref: str | None
    ) -> str | None:
        """The BSN of the patient a resource is about (the key consent works on)."""
        if resource["resourceType"] == "Patient":
            return bsn_of(resource)
        if patient_ref is None:
            return None
        patient_id = patient_ref.removeprefix("Patient/")
        return repository.derived_from_current(conn, "Patient", patient_id, _bsn_of_version)

    def _security_context(
        self, conn: Connection, context: dict[str, Any], owner: str | None
    ) -> tuple[str | None, repository.ConsentColumns]:
        """The patient reference and consent facts of a Binary sent on its own. A Binary names
        no patient, so consent would never open one to a partner; its ``securityContext``
        (FHIR R4: the resource whose access rules hold for it) does: a Patient, or one of the
        sender's own resources about a patient (its DocumentReference), whose patient and
        clinical date it takes and keeps taking (``_contexts_follow``). Anything else, such as
        another organisation's resource, one not (or no longer) there or one on another server,
        opens it to nobody but its owner: the same answer whatever exists."""
        closed = (None, self.content_consent(None, None))
        target = parse_reference(str(context.get("reference") or ""))
        if target is None or target[2] is not None:
            return closed
        res_type, res_id, _base = target
        if res_type == "Patient":
            key = repository.derived_from_current(conn, "Patient", res_id, _bsn_of_version)
            return f"Patient/{res_id}", self.content_consent(key, None)
        found = repository.current(conn, res_type, res_id)
        if found is None:
            repository.await_context(conn, f"{res_type}/{res_id}")
        if found is None or found.deleted or found.owner_org != owner:
            return closed
        return found.patient_ref, self.content_consent(found.patient_key, found.data_date_us)

    def _contexts_follow(
        self, conn: Connection, res_type: str, res_id: str, owner: str | None
    ) -> None:
        """The owner's Binaries whose security context is this resource take its patient and
        date anew, as written now: a document moved to another patient, or deleted, must not
        stay open under the first patient's consent."""
        target = f"{res_type}/{res_id}"
        binaries = repository.in_security_context(conn, target, owner)
        if binaries:
            patient_ref, consent = self._security_context(conn, {"reference": target}, owner)
            for rid, _binary_id in binaries:
                repository.set_consent_columns(conn, rid, patient_ref, consent)

    def _check_rules(
        self,
        conn: Connection,
        ctx: RequestContext,
        res_type: str,
        resource: dict[str, Any],
        consent: repository.ConsentColumns,
    ) -> repository.ConsentColumns:
        """Rules a resource must meet beyond FHIR: a Consent must be one this gateway enforces
        exactly (422 naming the element otherwise, never a rule silently ignored), about a
        patient in the recording organisation's own records. Returns the consent columns, a
        Consent keyed by its patient's BSN. An identifier in the BSN system (legacy OID or
        not) must pass the elfproef, as ITI-65 requires: a BSN is how hospitals match their
        patients, so a mistyped one must not be filed."""
        invalid = invalid_bsns(resource)
        if invalid:
            path, value = invalid[0]
            raise Unprocessable(
                f"{path}: '{value[:20]}' is not a valid BSN (it fails the elfproef)",
                code="value",
                expression=[path],
            )
        if res_type != "Consent":
            return consent
        try:
            parsed = parse_consent(resource, resolver=OwnResolver(conn, ctx.actor.organization))
        except InvalidConsent as error:
            raise Unprocessable(
                str(error), code="business-rule", expression=[error.element]
            ) from None
        if parsed.patient is None:
            raise Unprocessable(
                "Consent.patient: the patient has no BSN; consent is recorded per BSN",
                code="business-rule",
                expression=["Consent.patient"],
            )
        if not ctx.actor.is_local and not repository.has_patient(
            conn, parsed.patient, ctx.actor.organization
        ):
            raise Unprocessable(
                "Consent.patient: this patient is not in the recording organisation's records",
                code="business-rule",
                expression=["Consent.patient"],
            )
        return dataclasses.replace(consent, patient_key=parsed.patient)

    def _after_write(
        self,
        conn: Connection,
        res_type: str,
        owner: str | None,
        patient_key: str | None,
        earlier_key: str | None,
        res_id: str,
        *,
        unreferenced: bool = False,
        created: bool = False,
    ) -> None:
        """Keep patient keys, the Binaries a resource is the security context of, and the
        consent and agreement rows in step, in the writing transaction. ``unreferenced``:
        nothing can refer to the resource yet; ``created``: it is new."""
        rekeyed = res_type == "Patient" and patient_key != earlier_key
        # A change of a resource (or its creation, awaited earlier in the transaction) moves
        # the Binaries it is the security context of along with it.
        if res_type != "Binary" and (
            not created or repository.awaited_context(conn, f"{res_type}/{res_id}")
        ):
            self._contexts_follow(conn, res_type, res_id, owner)
        if rekeyed and not unreferenced:
            # Also covers resources written before their Patient in one transaction, and moves
            # the patient's Consents (and so their consent rows) to the new BSN.
            repository.rekey_patient(conn, f"Patient/{res_id}", patient_key)
        # A new Patient has no Consents yet (a Consent needs its patient's BSN first).
        if res_type == "Consent" or (rekeyed and earlier_key is not None):
            for key in sorted({k for k in (patient_key, earlier_key) if k}):
                self.policy.refresh_patient(conn, key)
        elif owner == NETWORK and res_type == "Contract":
            self.policy.refresh_agreements(conn)
        elif owner == NETWORK and res_type == "Organization":
            self.policy.refresh_everything(conn)  # a new grantee or holder, or new types

    # -- helpers ---------------------------------------------------------------------------

    def now_us(self) -> int:
        # Strictly increasing within the process, so versions written in one transaction order.
        now = max(time.time_ns() // 1000, self._last_us + 1)
        self._last_us = now
        return now

    def _prepare(
        self,
        conn: Connection,
        resource: dict[str, Any],
        res_id: str,
        version: int,
        now: int,
        owner: str | None,
        presealed: tuple[BlobInfo, ...] = (),
        *,
        shown: bool = True,
        consent: repository.ConsentColumns | None = None,
    ) -> _Prepared:
        """The stored form of a validated resource: meta set, index rows extracted, and
        document content moved into encrypted blobs. Without ``shown`` (the client asked for
        no representation) a resource with content gets no client copy: a large document
        would be held once more for nothing. ``consent``: the consent columns, when the
        resource does not tell them itself."""
        resource["id"] = res_id
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(now)
        resource["meta"] = meta
        index = index_resource(resource, registry())
        patient_ref = _patient_of(resource, index)
        if (
            consent is None
            and resource["resourceType"] == "Binary"
            and "securityContext" in resource
        ):
            patient_ref, consent = self._security_context(conn, resource["securityContext"], owner)
        consent = consent or repository.ConsentColumns(
            patient_key=self._patient_key(conn, resource, patient_ref),
            data_category=leaf_of(resource["resourceType"], resource),
            data_date_us=clinical_date_us(resource),
        )
        blobs: tuple[BlobInfo, ...] = ()
        if not has_content(resource):
            stored = orjson.dumps(resource)
            _refuse_dangling_references(resource, stored)
            return _Prepared(stored, stored, index, patient_ref, blobs, consent)
        copy = orjson.dumps(resource) if shown else None
        sealed = self.vault.seal(conn, resource, owner, {b.blob_id for b in presealed})
        blobs = tuple(info for _element, info in sealed) + presealed
        stored = orjson.dumps(resource)
        _refuse_dangling_references(resource, stored)
        return _Prepared(stored, copy, index, patient_ref, blobs, consent)


def _note_page_basis(conn: Connection, found: Sequence[Any], visible: Visibility) -> None:
    """What a page's statement told of its rows' basis (search_sql.basis_columns), for the
    call's audit: what was addressed to the organisation, and what a consent grant and one
    agreement opened."""
    scope = scope_of(conn)
    if scope is None or not explains(visible):
        return
    at = repository.VERSION_WIDTH
    for row in found:
        _note_basis(scope, row[0], *row[at : at + 3])


def _note_basis(
    scope: AuditScope, rid: int, addressed: Any, consents: str | None, agreement: str | None
) -> None:
    if addressed:
        scope.addressed_rids.add(rid)
    elif consents is not None and agreement is not None:
        scope.granted[rid] = (tuple(consents.split()), agreement)


def search_interaction(res_type: str, params: list[tuple[str, str]]) -> Interaction:
    """A search as audited: its query (never its results); a DocumentReference search is ITI-67."""
    kind = "find-documents" if res_type == "DocumentReference" else "search-type"
    query = urlencode(params)[:2000]
    return Interaction(kind, res_type[:64], query=f"GET {res_type[:64]}?{query}")


def _named_patient(conn: Connection, query: SearchQuery) -> str | None:
    """The BSN of the one patient a query is about, when it names one."""
    for name, value in query.used:
        base, _, modifier = name.partition(":")
        if "," in value:
            continue
        by_identifier = base in ("patient.identifier", "subject.identifier") or (
            modifier == "identifier" and base in ("patient", "subject")
        )
        if by_identifier or (query.resource_type == "Patient" and name == "identifier"):
            system, _, code = value.rpartition("|")
            if code and normalized_system(system) == BSN_SYSTEM:
                return code
        reference = None
        if base in ("patient", "subject") and not modifier:
            reference = value.rsplit("/", 1)[-1]
        elif query.resource_type == "Patient" and name == "_id":
            reference = value
        if reference:
            stored = repository.current(conn, "Patient", reference)
            if stored is not None and stored.patient_key:
                return stored.patient_key
    return None


def _note_seen_rows(conn: Connection, rids: list[int]) -> None:
    scope = scope_of(conn)
    if scope is not None and rids:
        found = repository.touches(conn, rids)
        for rid in rids:
            if rid in found:
                scope.saw(found[rid])


# The query behind ``_guarded``'s account check, per kind of actor (the operator has none).
_ACCOUNT_STATE = {"system": CLIENT_DISABLED_SQL, "user": USER_DISABLED_SQL}
# Set on a read's connection while its account check waits for a statement to take it.
_ACCOUNT_ASKED = "zorgbrug_account_asked"


def _token_of(identifier: dict[str, Any]) -> tuple[str | None, str] | None:
    """The (system, code) an identifier is indexed by; None when it has no value."""
    system, value = identifier.get("system"), identifier.get("value")
    if not isinstance(value, str):
        return None
    return (normalized_system(system) if isinstance(system, str) else None, value)


def _identifier_key(res_type: str, identifier: dict[str, Any]) -> repository.TokenKey | None:
    """The token key of an identifier that names its system (``find_each_by_token``)."""
    token = _token_of(identifier)
    if token is None or token[0] is None:
        return None
    return (res_type, "identifier", token[0], token[1])


def _refuse_if_disabled(kind: str, disabled: Any) -> None:
    """Judge an account's state asked beside another statement (``_ACCOUNT_STATE``)."""
    if disabled is None or disabled:  # no such account, or disabled
        raise _disabled(kind)


def _bsn_of_version(patient: StoredVersion | None) -> str | None:
    if patient is None or patient.deleted or patient.content is None:
        return None
    return bsn_of(orjson.loads(patient.content))


def _disabled(kind: str) -> Unauthorized:
    account = "client" if kind == "system" else "account"
    return Unauthorized(f"The {account} is disabled", headers={"WWW-Authenticate": "Bearer"})


def _sealed(stored: StoredVersion) -> bool:
    return stored.sealed and stored.content is not None


def _content_unread(found: RetrievedContent) -> bool:
    return found.info is not None and found.body is None


def _note_seen(conn: Connection, stored: StoredVersion) -> None:
    scope = scope_of(conn)
    if scope is not None:
        scope.saw(stored.touch("R"))


def _refuse_dangling_references(resource: dict[str, Any], stored: bytes) -> None:
    """A ``urn:uuid:`` reference names an entry of the transaction it is sent in, which
    resolves it; one still in a resource to store names nothing (sent alone or in a batch)."""
    if resource.get("resourceType") == "Bundle" or b'"reference":"urn:uuid:' not in stored:
        return  # a Bundle's entries resolve them; the stored JSON spares most writes a walk
    for path, value in local_references(resource, str(resource.get("resourceType"))):
        raise BadRequest(
            f"{path}: '{value}' names no resource: a urn:uuid reference is to an entry of the "
            "transaction it is sent in",
            code="invalid",
            expression=[path],
        )


def _no_longer_served(binary_id: str) -> Gone:
    return Gone(
        f"Binary/{binary_id} belongs to a document that was superseded, entered in error or "
        "deleted: its content is no longer served"
    )


def _sent_notification(stored: StoredVersion) -> bool:
    return stored.res_type == "Task" and not stored.deleted and stored.content is not None


def _wants_body(ctx: RequestContext) -> bool:
    return ctx.return_preference != "minimal"


def _patient_of(resource: dict[str, Any], index: IndexRows) -> str | None:
    """The patient whose compartment the resource is in (the store's distribution key)."""
    if resource["resourceType"] == "Patient":
        return f"Patient/{resource['id']}"
    for row in index.reference:
        if row["param"] in ("patient", "subject") and row["target_type"] == "Patient":
            return f"Patient/{row['target_id']}"
    return None


def _condition_query(res_type: str, condition: str) -> str:
    """The query of a condition, given as ``a=b``, ``?a=b`` or ``Type?a=b``."""
    return condition.removeprefix(f"{res_type}?").lstrip("?")


def _condition_key(organization: str | None, condition: str) -> str:
    # Per organisation: one hospital's conditional create must not find another's resource.
    params = sorted(parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True))
    return hashlib.sha256(orjson.dumps([organization, params])).hexdigest()
