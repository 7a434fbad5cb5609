"""Tables of the resource store (SQLAlchemy Core); Alembic migrations create them.

Every version of every resource is kept in ``resource_versions``; ``resources`` holds the current
one, and the ``idx_*`` tables are the search index of the current version, written in the same
transaction as the resource. ``rid`` is the store's immutable row key of a logical resource.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

# SQLite only autoincrements an INTEGER PRIMARY KEY.
RowKey = BigInteger().with_variant(Integer(), "sqlite")

# Normalised search strings compare in byte order on PostgreSQL too, so that prefix search is an
# index range whatever the database's locale.
NormalizedText = Text().with_variant(Text(collation="C"), "postgresql")

metadata = MetaData()

resources = Table(
    "resources",
    metadata,
    Column("rid", RowKey, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated_us", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
    # The organisation that contributed the resource and the patient whose compartment it is in:
    # the keys of isolation, consent and (later) distribution.
    Column("owner_org", String(128), nullable=True),
    Column("patient_ref", String(140), nullable=True),
    # Content holds markers of encrypted blobs (see gateway.content) that reads must reveal.
    Column("sealed", Boolean, nullable=False, default=False),
    # What consent decides on: whose data (the BSN), which data category, of when.
    Column("patient_key", String(32), nullable=True),
    Column("data_category", String(48), nullable=True),
    Column("data_date_us", BigInteger, nullable=True),
    UniqueConstraint("res_type", "res_id", name="uq_resources_type_id"),
)
# Consents, Patient records and a type's resources are looked up per patient and type.
Index(
    "ix_resources_patient_key",
    resources.c.patient_key,
    resources.c.res_type,
    resources.c.owner_org,
)
Index("ix_resources_type_updated", resources.c.res_type, resources.c.last_updated_us)
# What consent judges of another organisation's resource when a count finds it through a
# search index (gateway.store.search_sql): SQLite, told to, reads it from this narrow index
# instead of the whole row with its content (it does not choose so itself, as the row key finds
# the row). Observation?code=…&_total=accurate judging 13,333 others' matches of 20,000
# (bench_consent_search.py's store): the page with its count 42 -> 30 ms. Only on SQLite:
# PostgreSQL, where pushes are short of their target, would pay for it on every write.
CONSENT_FACTS_INDEX = "ix_resources_consent_facts"
Index(
    CONSENT_FACTS_INDEX,
    resources.c.rid,
    resources.c.patient_key,
    resources.c.owner_org,
    resources.c.data_category,
    resources.c.data_date_us,
).ddl_if(dialect="sqlite")
Index("ix_resources_patient", resources.c.patient_ref)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("vpk", RowKey, primary_key=True, autoincrement=True),
    Column("rid", RowKey, ForeignKey("resources.rid"), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated_us", BigInteger, nullable=False),
    Column("method", String(8), nullable=False),
    Column("content", LargeBinary, nullable=True),
    Column("owner_org", String(128), nullable=True),
    Column("sealed", Boolean, nullable=False, default=False),
    # Each version is judged by consent on its own patient, category and date (an update may
    # have moved a resource to another patient or into a consent's data period).
    Column("patient_key", String(32), nullable=True),
    Column("patient_ref", String(140), nullable=True),
    Column("data_category", String(48), nullable=True),
    Column("data_date_us", BigInteger, nullable=True),
    UniqueConstraint("res_type", "res_id", "version", name="uq_versions_type_id_version"),
)
Index("ix_versions_type_vpk", resource_versions.c.res_type, resource_versions.c.vpk)
Index("ix_versions_patient", resource_versions.c.patient_ref)

# Conditional create claims its search URL here, so two concurrent identical requests cannot both
# create: the second hits the unique constraint and finds the first one's resource.
conditional_claims = Table(
    "conditional_claims",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("query_key", String(64), primary_key=True),
    Column("res_id", String(64), nullable=False),
)


def _index_table(
    name: str,
    *columns: Column,  # type: ignore[type-arg]
    probed: tuple[str, ...] = (),
) -> Table:
    table = Table(
        name,
        metadata,
        Column("rid", RowKey, ForeignKey("resources.rid"), nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
        # The resource's owner (the resources row's owner_org): a count of an organisation's
        # own matches judges them from the index alone, without reading each resource.
        Column("owner_org", String(128), nullable=True),
    )
    # Probes of one resource's index rows (a broad criterion next to a selective one) must
    # find them by the row key: with only (rid) SQLite, without statistics, preferred a lookup
    # index ending in rid and scanned every row of the parameter for each candidate. With the
    # ``probed`` value columns in it too, a probe reads no table row.
    Index(
        f"ix_{name}_rid",
        table.c.rid,
        table.c.res_type,
        table.c.param,
        *(table.c[column] for column in probed),
    )
    return table


idx_string = _index_table(
    "idx_string",
    Column("value_norm", NormalizedText, nullable=False),
    Column("value", Text, nullable=False),
)
# The lookup indexes of strings, tokens and references end with the row key and the owner: a
# search takes the matching rids from the index alone (Patient?family=<prefix> read each
# match's index row: 15.5 -> 8.7 ms at 100,000), and a count its own matches' owners too. The
# date lookup does not: see ix_idx_*_rid above.
Index(
    "ix_idx_string_lookup",
    idx_string.c.res_type,
    idx_string.c.param,
    idx_string.c.value_norm,
    idx_string.c.rid,
    idx_string.c.owner_org,
)

idx_token = _index_table(
    "idx_token", Column("system", Text, nullable=True), Column("code", Text, nullable=False)
)
# The system after the code: a search by system|code takes its matches from the index alone.
Index(
    "ix_idx_token_lookup",
    idx_token.c.res_type,
    idx_token.c.param,
    idx_token.c.code,
    idx_token.c.system,
    idx_token.c.rid,
    idx_token.c.owner_org,
)

# Dates never drive a search (a range matches many resources): they are probed per candidate.
idx_date = _index_table(
    "idx_date",
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    probed=("lo", "hi"),
)
Index("ix_idx_date_lookup", idx_date.c.res_type, idx_date.c.param, idx_date.c.lo, idx_date.c.hi)

idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("url", Text, nullable=True),
)
Index(
    "ix_idx_reference_lookup",
    idx_reference.c.res_type,
    idx_reference.c.param,
    idx_reference.c.target_id,
    idx_reference.c.rid,
    idx_reference.c.owner_org,
)
Index("ix_idx_reference_target", idx_reference.c.target_type, idx_reference.c.target_id)

INDEX_TABLES = {
    "string": idx_string,
    "token": idx_token,
    "date": idx_date,
    "reference": idx_reference,
}

# -- authentication (revision 0002) -----------------------------------------------------------

system_clients = Table(
    "system_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("org_ura", String(32), nullable=False),
    Column("name", Text, nullable=False),
    Column("jwks", Text, nullable=True),  # the client's public keys, by value
    Column("jwks_url", Text, nullable=True),  # ... or where to fetch them
    Column("scopes", Text, nullable=False),  # the scopes it may be granted, space-separated
    Column("disabled", Boolean, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    # RFC 8705: when set, the client must present this TLS certificate (base64url SHA-256).
    Column("cert_thumbprint", String(64), nullable=True),
)

# Every accepted client assertion's jti until it expires: replay is refused across restarts
# and across gateway processes.
used_assertions = Table(
    "used_assertions",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_us", BigInteger, nullable=False),
)
Index("ix_used_assertions_expires", used_assertions.c.expires_us)  # expired ones are purged

# HMAC secrets that sign access tokens; in the database so every gateway process can verify.
token_secrets = Table(
    "token_secrets",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

# -- people and apps (revision 0003) ------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("org_ura", String(32), nullable=False),
    Column("username", String(128), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("password_hash", Text, nullable=False),  # scrypt, see gateway.auth.passwords
    Column("fhir_user", String(140), nullable=False),  # e.g. Practitioner/<id>
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until_us", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

# Public SMART apps (the web UI, a clinician's EHR app) that people log in to.
apps = Table(
    "apps",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("redirect_uris", Text, nullable=False),  # space-separated, matched exactly
    Column("created_us", BigInteger, nullable=False),
)

# Web UI sessions (gateway.auth.sessions): the cookie carries a random token, the store its hash.
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("org_ura", String(32), nullable=False),
    Column("username", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("scope", Text, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("data", Text, nullable=False),  # JSON: the patient in view, never credentials
    Column("created_us", BigInteger, nullable=False),
    Column("seen_us", BigInteger, nullable=False),
)
Index("ix_ui_sessions_seen", ui_sessions.c.seen_us)

authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),  # SHA-256 of the code: never stored bare
    Column("user_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False),
)

# -- document exchange (revision 0005) ------------------------------------------------------------

# Document content, encrypted with a data key of its own (AES-256-GCM) that is stored wrapped
# by the master key ``key_id``; the plaintext's SHA-256 and SHA-1 are checked on every read.
blobs = Table(
    "blobs",
    metadata,
    Column("blob_id", String(36), primary_key=True),
    Column("owner_org", String(128), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),  # hex
    Column("sha1", String(28), nullable=False),  # base64, as FHIR R4 Attachment.hash
    Column("chunk_size", Integer, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("deprecated_us", BigInteger, nullable=True),  # its document was superseded (ITI-68 410)
    Column("created_us", BigInteger, nullable=False),
)
Index("ix_blobs_key_id", blobs.c.key_id)

blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("blob_id", String(36), ForeignKey("blobs.blob_id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# A known plaintext sealed with each master key: a wrong or missing key fails at start.
master_key_checks = Table(
    "master_key_checks",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("sealed_check", LargeBinary, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

# Resources another organisation may see because they were addressed to it (ITI-65).
resource_shares = Table(
    "resource_shares",
    metadata,
    Column("rid", RowKey, ForeignKey("resources.rid"), primary_key=True),
    Column("org_ura", String(128), primary_key=True),
    Column("created_us", BigInteger, nullable=False),
    # A share addressed to an organisation with an endpoint waits for its delivery: a consent
    # revoked or an agreement ended meanwhile stops it (see gateway.exchange.delivery).
    Column("active", Boolean, nullable=False, default=True),
    Column("delivery_id", String(36), nullable=True),
    # The version that was sent: what the organisation received is its copy, and a later
    # version of the sender's needs consent. Empty for a live share (the notification Task,
    # which both sides write). ``latest`` while no later version was written.
    Column("version", Integer, nullable=True),
    Column("latest", Boolean, nullable=False, server_default=true()),
)
Index("ix_resource_shares_delivery", resource_shares.c.delivery_id)

# Notifications to deliver to partner endpoints, written in the submission's transaction.
outbox = Table(
    "outbox",
    metadata,
    Column("delivery_id", String(36), primary_key=True),  # stable: receivers de-duplicate on it
    Column("sender_org", String(32), nullable=False),
    Column("recipient_org", String(32), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until_us", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("delivered_us", BigInteger, nullable=True),
)
Index("ix_outbox_due", outbox.c.status, outbox.c.next_attempt_us)

# -- consent (revision 0006) -------------------------------------------------------------------

# Each leaf data category with every category above it (consent.LINEAGE), filled at start.
data_category_lineage = Table(
    "data_category_lineage",
    metadata,
    Column("leaf", String(48), primary_key=True),
    Column("category", String(48), primary_key=True),
)

# consent.consent_grants of each patient with consents; holder "*" stands for every holder the
# patient's consents do not name (consent_named_holders lists those they do).
consent_grants = Table(
    "consent_grants",
    metadata,
    Column("patient_key", String(32), nullable=False),
    Column("grantee_org", String(32), nullable=False),
    Column("holder_org", String(32), nullable=False),
    Column("category", String(48), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("valid_from_us", BigInteger, nullable=False),
    Column("valid_to_us", BigInteger, nullable=False),
    Column("data_from_us", BigInteger, nullable=False),
    Column("data_to_us", BigInteger, nullable=False),
    Column("covers_dated", Boolean, nullable=False),
    Column("covers_undated", Boolean, nullable=False),
    Column("consent_ids", Text, nullable=False),
)
Index(
    "ix_consent_grants_lookup",
    consent_grants.c.patient_key,
    consent_grants.c.grantee_org,
    consent_grants.c.holder_org,
)

consent_named_holders = Table(
    "consent_named_holders",
    metadata,
    Column("patient_key", String(32), primary_key=True),
    Column("holder_org", String(32), primary_key=True),
)

# consent.agreement_grants of every agreement (the network's Contract resources).
agreement_grants = Table(
    "agreement_grants",
    metadata,
    Column("holder_org", String(32), nullable=False),
    Column("grantee_org", String(32), nullable=False),
    Column("category", String(48), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("valid_from_us", BigInteger, nullable=False),
    Column("valid_to_us", BigInteger, nullable=False),
    Column("agreement_id", String(64), nullable=False),
)
Index("ix_agreement_grants_lookup", agreement_grants.c.grantee_org, agreement_grants.c.holder_org)

# Break-the-glass: a person's declared emergency for one patient, for a limited time.
emergencies = Table(
    "emergencies",
    metadata,
    Column("emergency_id", String(36), primary_key=True),
    Column("actor_id", String(64), nullable=False),
    Column("actor_org", String(32), nullable=False),
    Column("patient_key", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
)
Index("ix_emergencies_actor", emergencies.c.actor_id, emergencies.c.end_us)
Index("ix_emergencies_patient", emergencies.c.patient_key, emergencies.c.start_us)

# -- the audit trail (gateway.audit) -----------------------------------------------------------

# Append-only (database triggers refuse UPDATE and DELETE): every row is linked to the one before
# by ``hash`` (see gateway.audit.chain); the columns are what DPOs search on, ``content`` is the
# AuditEvent.
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("recorded_us", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("action", String(1), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("agent_kind", String(8), nullable=False),
    Column("agent_id", String(200), nullable=False),
    Column("agent_org", String(128), nullable=True),
    Column("agent_role", String(32), nullable=True),
    Column("patient_key", String(32), nullable=True),
    Column("custodian_org", String(128), nullable=True),
    Column("emergency", Boolean, nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
)
Index("ix_audit_events_patient", audit_events.c.patient_key, audit_events.c.recorded_us)
Index("ix_audit_events_agent_org", audit_events.c.agent_org, audit_events.c.recorded_us)
Index("ix_audit_events_custodian", audit_events.c.custodian_org, audit_events.c.recorded_us)
Index("ix_audit_events_recorded", audit_events.c.recorded_us)

# The chain's tail (one row): appenders lock it, so the chain has one order in every process.
audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    Column("checkpoint_seq", BigInteger, nullable=False),
    Column("checkpoint_us", BigInteger, nullable=False),
)

# Signed checkpoints (kind "checkpoint": the chain up to seq hashes to hash) and anchors (kind
# "anchor": after a purge, the chain resumes at seq from hash).
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), primary_key=True),
    Column("hash", LargeBinary, nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)
