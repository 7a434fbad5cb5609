"""The ``zorgbrug`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.settings import Settings

T = TypeVar("T")


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command's flags on top."""
    overrides = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.database_url is not None:
        overrides["database_url"] = args.database_url
    for name in ("host", "port", "workers", "tls_cert", "tls_key", "client_ca"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    return Settings(**overrides)  # type: ignore[arg-type]


def _export(settings: Settings) -> None:
    # Server worker processes build their Settings from the environment.
    os.environ["ZORGBRUG_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["ZORGBRUG_DATABASE_URL"] = settings.database_url


async def _migrate(settings: Settings) -> None:
    from gateway.store.database import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url())
    try:
        await db.migrate()
    finally:
        await db.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    import ssl

    import uvicorn

    from gateway.api.tls import PROTOCOL as CLIENT_CERTIFICATE_PROTOCOL

    settings = _settings(args)
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ValueError("give both --tls-cert and --tls-key, or neither")
    if settings.client_ca is not None and settings.tls_cert is None:
        raise ValueError("--client-ca (mutual TLS) needs --tls-cert and --tls-key")
    for path in (settings.tls_cert, settings.tls_key, settings.client_ca):
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
    asyncio.run(_migrate(settings))
    _export(settings)
    scheme = "https" if settings.tls_cert else "http"
    mutual = " (client certificates required)" if settings.client_ca else ""
    print(
        f"Zorgbrug serving FHIR R4 at {scheme}://{settings.host}:{settings.port}/fhir{mutual} "
        f"(store: {_describe(settings)})",
        flush=True,
    )
    uvicorn.run(
        "gateway.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        access_log=False,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        ssl_ca_certs=str(settings.client_ca) if settings.client_ca else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if settings.client_ca else ssl.CERT_NONE,
        http=CLIENT_CERTIFICATE_PROTOCOL if settings.client_ca else "auto",
    )
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    asyncio.run(_migrate(settings))
    print(f"schema up to date ({_describe(settings)})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import seed_demo

    settings = _settings(args)
    created, existing = asyncio.run(seed_demo(settings))
    print(f"demo network ready: {created} resources created, {existing} already present")
    print(
        f"demo clients and their keys: {settings.data_dir / 'demo'}/<URA>/ "
        "(URAs 90000001, 90000002, 90000003)"
    )
    print("demo logins:  <role>-<URA> / zorgbrug-demo-<role> for role clinician, assistant or dpo")
    print("web UI:       http://127.0.0.1:8080/ui/")
    print("get a token:  TOKEN=$(.venv/bin/zorgbrug demo-token --org 90000001)")
    print('then:         curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/fhir/Patient')
    return 0


def cmd_demo_token(args: argparse.Namespace) -> int:
    from gateway.demo import demo_token

    print(demo_token(_settings(args), args.org, args.url))
    return 0


async def _with_service(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the store (migrated), run ``work(service)``, close the store."""
    from gateway.service.resources import ResourceService
    from gateway.store.database import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url(), threads=2)
    try:
        await db.migrate()
        service = ResourceService(db, settings)
        await service.start()
        return await work(service)
    finally:
        await db.dispose()


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data) if getattr(args, "json", False) else text)


def cmd_orgs_add(args: argparse.Namespace) -> int:
    from gateway.organizations import register_organization

    org, created = asyncio.run(
        _with_service(
            _settings(args),
            lambda service: register_organization(
                service,
                ura=args.ura,
                name=args.name,
                endpoint=args.endpoint,
                types=tuple(t for t in (args.type or "").split(",") if t),
                change=args.change,
            ),
        )
    )
    _print(
        args,
        {
            "id": org.id,
            "ura": org.ura,
            "name": org.name,
            "endpoint": org.endpoint,
            "created": created,
        },
        f"{'registered' if created else 'already registered'}: {org.ura} {org.name} "
        f"(Organization/{org.id})",
    )
    return 0


def cmd_orgs_list(args: argparse.Namespace) -> int:
    from gateway.organizations import list_organizations

    orgs = asyncio.run(_with_service(_settings(args), list_organizations))
    if args.json:
        print(json.dumps([vars(o) for o in orgs]))
    for org in [] if args.json else orgs:
        print(f"{org.ura}  {org.name}  {org.endpoint or '-'}  Organization/{org.id}")
    return 0


def cmd_clients_add(args: argparse.Namespace) -> int:
    from gateway.auth.certificates import thumbprint
    from gateway.auth.clients import register_client
    from gateway.organizations import check_ura, find_organization

    check_ura(args.org)
    bound = None
    if args.cert is not None:
        try:
            bound = thumbprint(Path(args.cert).read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the certificate {args.cert}: {exc}") from None
    jwks = None
    if args.jwks is not None:
        try:
            jwks = json.loads(Path(args.jwks).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the JWKS file {args.jwks}: {exc}") from None

    async def work(service: Any) -> Any:
        if await find_organization(service, args.org) is None:
            raise ValueError(f"organisation {args.org} is not registered (zorgbrug orgs add)")
        return await args.change.write(
            service,
            lambda conn: register_client(
                conn,
                org_ura=args.org,
                name=args.name,
                jwks=jwks,
                jwks_url=args.jwks_url,
                scopes=args.scopes,
                cert_thumbprint=bound,
            ),
        )

    client = asyncio.run(_with_service(_settings(args), work))
    _print(
        args,
        {
            "client_id": client.client_id,
            "org": client.org_ura,
            "name": client.name,
            "scopes": client.scopes,
            "cert_thumbprint": client.cert_thumbprint,
        },
        client.client_id,
    )
    return 0


def cmd_clients_list(args: argparse.Namespace) -> int:
    from gateway.auth.clients import list_clients

    clients = asyncio.run(
        _with_service(_settings(args), lambda service: service.db.read(list_clients))
    )
    rows = [
        {
            "client_id": c.client_id,
            "org": c.org_ura,
            "name": c.name,
            "scopes": c.scopes,
            "disabled": c.disabled,
        }
        for c in clients
    ]
    if args.json:
        print(json.dumps(rows))
    for row in [] if args.json else rows:
        state = "disabled" if row["disabled"] else "active"
        print(f"{row['client_id']}  {row['org']}  {row['name']}  {state}  {row['scopes']}")
    return 0


def cmd_clients_disable(args: argparse.Namespace) -> int:
    from gateway.auth.clients import disable_client

    return _disable(args, disable_client, args.client_id, "client")


def cmd_users_disable(args: argparse.Namespace) -> int:
    from gateway.auth.people import disable_user

    return _disable(args, disable_user, args.username, "user")


def _disable(
    args: argparse.Namespace, disable: Callable[[Any, str], bool], name: str, what: str
) -> int:
    """Disable a client or person by its id or name; an unknown one is refused (and recorded
    as such)."""

    def work(conn: Any) -> None:
        if not disable(conn, name):
            raise ValueError(f"no {what} {name}")

    asyncio.run(_with_service(_settings(args), lambda service: args.change.write(service, work)))
    print(f"disabled {name}")
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    import secrets

    from gateway.auth.people import add_user
    from gateway.context import operator_for
    from gateway.organizations import check_ura, find_organization

    check_ura(args.org)
    generated = args.password_file is None
    if generated:
        password = secrets.token_urlsafe(15)
    else:
        try:
            password = Path(args.password_file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read {args.password_file}: {exc.strerror}") from None

    async def work(service: Any) -> Any:
        if await find_organization(service, args.org) is None:
            raise ValueError(f"organisation {args.org} is not registered (zorgbrug orgs add)")
        actor = operator_for(args.org)
        ctx = args.change.context(actor)
        practitioner = {
            "resourceType": "Practitioner",
            "identifier": [{"system": "urn:zorgbrug:username", "value": args.username}],
            "name": [{"text": args.username}],
        }

        def register(conn: Any) -> Any:
            fhir_user = service.create_in(conn, ctx, "Practitioner", practitioner)
            return add_user(
                conn,
                org_ura=args.org,
                username=args.username,
                role=args.role,
                password=password,
                fhir_user=f"Practitioner/{fhir_user.res_id}",
            )

        return await args.change.write(service, register, actor)

    user = asyncio.run(_with_service(_settings(args), work))
    print(f"added {user.username} ({user.role}) of {user.org_ura} as {user.fhir_user}")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def cmd_apps_add(args: argparse.Namespace) -> int:
    from gateway.auth.people import add_app

    client_id = asyncio.run(
        _with_service(
            _settings(args),
            lambda service: args.change.write(
                service, lambda conn: add_app(conn, name=args.name, redirect_uris=args.redirect_uri)
            ),
        )
    )
    _print(args, {"client_id": client_id, "name": args.name}, client_id)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import signal

    from gateway.exchange.delivery import DeliveryWorker

    async def run(service: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print("Zorgbrug delivery worker running; stop with Ctrl-C", flush=True)
        await DeliveryWorker(service).run(stop)

    asyncio.run(_with_service(_settings(args), run))
    return 0


def cmd_deliveries_list(args: argparse.Namespace) -> int:
    from gateway.exchange import outbox

    rows = asyncio.run(
        _with_service(
            _settings(args),
            lambda service: service.db.read(
                lambda conn: outbox.listing(conn, failed_only=args.failed)
            ),
        )
    )
    if args.json:
        print(json.dumps([vars(r) for r in rows]))
        return 0
    for row in rows:
        error = f"  {row.last_error}" if row.last_error else ""
        print(
            f"{row.delivery_id}  {row.status:9}  attempts {row.attempts}  "
            f"{row.sender_org} -> {row.recipient_org}  {row.endpoint}  Task/{row.task_id}{error}"
        )
    return 0


def cmd_deliveries_retry(args: argparse.Namespace) -> int:
    from gateway.exchange import outbox

    def work(conn: Any) -> None:
        if not outbox.retry(conn, args.delivery_id, time.time_ns() // 1000):
            raise ValueError(f"no failed delivery {args.delivery_id}")

    asyncio.run(_with_service(_settings(args), lambda service: args.change.write(service, work)))
    print(f"delivery {args.delivery_id} queued again")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from gateway.content.rotation import rotate_master_key

    settings = _settings(args)

    async def work(service: Any) -> Any:
        return await rotate_master_key(service, args.change, grace_s=args.grace)

    result = asyncio.run(_with_service(settings, work))
    print(
        f"master key rotated to {result.key_id}: {result.rewrapped} data keys re-wrapped, "
        f"{len(result.retired)} old key(s) removed from {settings.resolved_master_key_file()}"
    )
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    import mimetypes

    from gateway.context import RequestContext, operator_for
    from gateway.exchange.compose import provide_document_bundle
    from gateway.exchange.iti65 import DocumentRecipient
    from gateway.fhir.dutch_identifiers import is_valid_bsn
    from gateway.organizations import check_ura
    from gateway.service.bundles import BundleProcessor

    check_ura(args.org)
    for ura in args.to:
        check_ura(ura)
    if not is_valid_bsn(args.patient):
        raise ValueError(
            f"--patient '{args.patient[:20]}' is not a valid BSN (it fails the elfproef)"
        )
    path = Path(args.file)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    content_type = args.content_type or mimetypes.guess_type(path.name)[0]
    if content_type is None:
        raise ValueError(f"cannot tell the type of {path.name}; give --content-type")
    if content_type == "application/pdf" and not content.startswith(b"%PDF-"):
        raise ValueError(f"{path} is not a PDF (it does not start with %PDF-)")
    bundle = provide_document_bundle(
        content=content,
        content_type=content_type,
        bsn=args.patient,
        sender=args.org,
        recipients=args.to,
        type_code=args.type,
        title=args.title or path.stem,
        unique_id=args.unique_id,
    )

    async def work(service: Any) -> bytes:
        ctx = RequestContext(actor=operator_for(args.org), base_url="urn:zorgbrug:cli")
        recipient = DocumentRecipient(service, BundleProcessor(service))
        answer: bytes = await recipient.provide(ctx, bundle)
        return answer

    response = json.loads(asyncio.run(_with_service(_settings(args), work)))
    document = response["entry"][1]["response"]
    reference = document["location"].split("/_history")[0]
    state = "already sent before" if document["status"].startswith("200") else "sent"
    _print(
        args,
        {"document": reference, "status": state, "to": args.to, "bytes": len(content)},
        f"{state}: {path.name} as {reference} to {', '.join(args.to)}",
    )
    return 0


def _agreement_row(agreement: Any, today: Any) -> dict[str, Any]:
    from gateway.agreements import EXPIRY_WARNING_DAYS

    row = {
        "id": agreement.id,
        "kind": agreement.kind,
        "parties": sorted(agreement.parties),
        "purposes": sorted(agreement.purposes),
        "categories": sorted(agreement.categories),
        "valid_from": agreement.valid_from.isoformat(),
        "valid_to": agreement.valid_to.isoformat() if agreement.valid_to else None,
        "status": agreement.status,
        "in_force": agreement.in_force(today),
        "expiring": agreement.expires_within(EXPIRY_WARNING_DAYS, today),
        "document": agreement.document.url,
    }
    return row


def _date(text: str | None, flag: str) -> Any:
    from datetime import date

    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag} '{text}' is not a date such as 2026-01-31") from None


def cmd_agreements_add(args: argparse.Namespace) -> int:
    from datetime import date

    from gateway.agreements import add_agreement

    agreement = asyncio.run(
        _with_service(
            _settings(args),
            lambda service: add_agreement(
                service,
                kind=args.kind,
                parties=[p.strip() for p in args.parties.split(",") if p.strip()],
                purposes=[p.strip() for p in args.purpose.split(",") if p.strip()],
                categories=[c.strip() for c in args.categories.split(",") if c.strip()],
                valid_from=_date(args.valid_from, "--from") or date.today(),
                valid_to=_date(args.valid_to, "--to"),
                document=Path(args.document) if args.document else None,
                change=args.change,
            ),
        )
    )
    _print(args, _agreement_row(agreement, date.today()), agreement.id)
    return 0


def cmd_agreements_list(args: argparse.Namespace) -> int:
    from datetime import date

    from gateway.agreements import list_agreements

    today = date.today()
    found = asyncio.run(_with_service(_settings(args), list_agreements))
    rows = [_agreement_row(a, today) for a in sorted(found, key=lambda a: a.valid_from)]
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        state = (
            "EXPIRING" if row["expiring"] else ("in force" if row["in_force"] else row["status"])
        )
        until = row["valid_to"] or "open-ended"
        print(
            f"{row['id']}  {row['kind']:12} {state:9} {'+'.join(row['parties'])}  "
            f"{','.join(row['purposes'])}  {','.join(row['categories'])}  "
            f"{row['valid_from']} .. {until}"
        )
    return 0


def cmd_agreements_end(args: argparse.Namespace) -> int:
    from datetime import date

    from gateway.agreements import end_agreement

    on = _date(args.on, "--on") or date.today()
    ended = asyncio.run(
        _with_service(
            _settings(args),
            lambda service: end_agreement(service, args.agreement_id, on, args.change),
        )
    )
    print(f"agreement {ended.id} ended ({ended.valid_to})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from gateway.intake import Intake
    from gateway.intake.importer import ImportOptions, import_files
    from gateway.organizations import check_ura

    check_ura(args.org)
    for ura in args.to or []:
        check_ura(ura)
    metadata = {
        key: value
        for key, value in (("bsn", args.patient), ("type_code", args.type), ("title", args.title))
        if value
    }
    options = ImportOptions(
        adapter=args.adapter,
        organization=args.org,
        recipients=args.to or [],
        profile=args.profile,
        pdf_metadata=metadata,
    )

    async def work(service: Any) -> list[dict[str, Any]]:
        intake = Intake(service, args.org, options.recipients)
        return await import_files(intake, options, [Path(f) for f in args.files])

    reports = asyncio.run(_with_service(_settings(args), work))
    for report in reports:
        print(json.dumps(report), flush=True)
    return 1 if any(r["status"] == "rejected" for r in reports) else 0


def cmd_mllp(args: argparse.Namespace) -> int:
    import signal

    from gateway.intake import Intake
    from gateway.intake.mllp import MllpListener
    from gateway.organizations import check_ura

    check_ura(args.org)
    for ura in args.to or []:
        check_ura(ura)

    async def run(service: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        listener = MllpListener(Intake(service, args.org, args.to or [], "mllp"), args.org)
        await listener.serve(
            args.host,
            args.port,
            stop,
            # Printed once bound, so whoever waits for this line can connect at once.
            lambda: print(f"Zorgbrug MLLP listener on {args.host}:{args.port}", flush=True),
        )

    asyncio.run(_with_service(_settings(args), run))
    return 0


def _operator_ctx() -> Any:
    from gateway.context import LOCAL_OPERATOR, RequestContext

    return RequestContext(actor=LOCAL_OPERATOR, base_url="urn:zorgbrug:cli")


def cmd_audit_verify(args: argparse.Namespace) -> int:
    if args.public_key:
        verification = _verify_with_public_key(_settings(args), Path(args.public_key))
    else:
        verification = asyncio.run(
            _with_service(_settings(args), lambda s: s.audit_log.verify(_operator_ctx()))
        )
    if not verification.intact:
        print(
            f"zorgbrug: audit log damaged at record {verification.first_bad}: "
            f"{verification.problem}",
            file=sys.stderr,
        )
        return 3
    print(
        f"audit log intact: records {verification.first_seq}..{verification.last_seq} "
        f"({verification.checked} checked), {verification.checkpoints} signed checkpoint(s) "
        "confirmed"
    )
    return 0


def _verify_with_public_key(settings: Settings, key_file: Path) -> Any:
    """Verify with the public key alone: reads the log, never writes (so it records nothing)."""
    from gateway.audit.signing import CheckpointVerifier, SigningKeyError
    from gateway.audit.verify import verify
    from gateway.store.database import Database

    try:
        verifier = CheckpointVerifier.from_pem(key_file.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {key_file}: {exc.strerror}") from None
    except SigningKeyError as exc:
        raise ValueError(f"{key_file}: {exc}") from None

    async def run() -> Any:
        db = Database(settings.resolved_database_url(), threads=1)
        try:
            return await db.read(lambda conn: verify(conn, verifier))
        finally:
            await db.dispose()

    return asyncio.run(run())


def cmd_audit_public_key(args: argparse.Namespace) -> int:
    from gateway.audit.signing import CheckpointSigner

    signer = CheckpointSigner.open(_settings(args).resolved_audit_key_file())
    sys.stdout.write(signer.public_pem().decode())
    return 0


def cmd_audit_report(args: argparse.Namespace) -> int:
    from gateway.service.audit_log import audit_query

    params = [
        (name, value)
        for name, value in (
            ("patient", args.patient),
            ("from", args.since),
            ("to", args.until),
            ("org", args.org),
            ("user", args.user),
            ("denials", "true" if args.denials else None),
            ("emergencies", "true" if args.emergencies else None),
        )
        if value is not None
    ]
    query = audit_query(params)
    report = asyncio.run(
        _with_service(
            _settings(args), lambda s: s.audit_log.report(_operator_ctx(), query, args.format)
        )
    )
    if args.output:
        Path(args.output).write_bytes(report.body)
    else:
        sys.stdout.buffer.write(report.body)
        if not report.body.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
    return 0


def cmd_audit_purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    try:  # a day (its midnight, UTC) or a moment
        before = datetime.fromisoformat(args.before)
    except ValueError:
        raise ValueError(f"--before '{args.before}' is not a date such as 2021-01-31") from None
    if before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    result = asyncio.run(
        _with_service(_settings(args), lambda s: s.audit_log.purge(_operator_ctx(), before))
    )
    if result.through_seq is None:
        print(f"no audit records before {before}")
    else:
        print(
            f"purged {result.removed} audit records (through record {result.through_seq}); "
            "the chain resumes from a signed anchor"
        )
    return 0


def _describe(settings: Settings) -> str:
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        return url.split("///", 1)[1]
    return url.split("@")[-1]  # never print credentials


def build_parser() -> argparse.ArgumentParser:
    from adapters import adapter_names

    parser = argparse.ArgumentParser(prog="zorgbrug", description="Zorgbrug FHIR R4 gateway")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="data directory (ZORGBRUG_DATA_DIR)")
    common.add_argument("--database-url", help="database URL (ZORGBRUG_DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the FHIR server")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument(
        "--client-ca",
        type=Path,
        help="PEM CA bundle: require client certificates from it (mutual TLS)",
    )
    serve.set_defaults(run=cmd_serve)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", parents=[common], help="apply migrations")
    upgrade.set_defaults(run=cmd_db_upgrade)

    demo = commands.add_parser("demo", parents=[common], help="seed the demo network (idempotent)")
    demo.set_defaults(run=cmd_demo)
    token = commands.add_parser(
        "demo-token",
        parents=[common],
        help="print an access token for a demo hospital's integration",
    )
    token.add_argument("--org", required=True, help="URA of the demo hospital")
    token.add_argument("--url", default="http://127.0.0.1:8080", help="the running gateway")
    token.set_defaults(run=cmd_demo_token)

    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")
    orgs = commands.add_parser("orgs", help="organisations of the network")
    orgs_commands = orgs.add_subparsers(dest="orgs_command", required=True, metavar="COMMAND")
    orgs_add = orgs_commands.add_parser("add", parents=[common, as_json], help="register one")
    orgs_add.add_argument("--ura", required=True, help="URA, eight digits")
    orgs_add.add_argument("--name", required=True)
    orgs_add.add_argument("--endpoint", help="where deliveries for it go (https URL)")
    orgs_add.add_argument(
        "--type", help="organisation type code(s), e.g. Z3 (hospital); comma-separated"
    )
    orgs_add.set_defaults(run=cmd_orgs_add, admin=("admin-organization", "C"))
    orgs_list = orgs_commands.add_parser("list", parents=[common, as_json], help="list them")
    orgs_list.set_defaults(run=cmd_orgs_list)

    clients = commands.add_parser("clients", help="system clients (hospital integrations)")
    clients_commands = clients.add_subparsers(
        dest="clients_command", required=True, metavar="COMMAND"
    )
    clients_add = clients_commands.add_parser(
        "add", parents=[common, as_json], help="register a client; prints its client_id"
    )
    clients_add.add_argument("--org", required=True, help="URA of the client's organisation")
    clients_add.add_argument("--name", required=True)
    keys = clients_add.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", help="file with the client's public keys (JWKS)")
    keys.add_argument("--jwks-url", help="https URL of the client's JWKS")
    clients_add.add_argument(
        "--scopes", required=True, help='e.g. "system/DocumentReference.read system/*.write"'
    )
    clients_add.add_argument(
        "--cert",
        help="PEM client certificate: bind the client to it (it must present it over mutual TLS)",
    )
    clients_add.set_defaults(run=cmd_clients_add, admin=("admin-account", "C"))
    clients_list = clients_commands.add_parser("list", parents=[common, as_json])
    clients_list.set_defaults(run=cmd_clients_list)
    clients_disable = clients_commands.add_parser("disable", parents=[common])
    clients_disable.add_argument("client_id")
    clients_disable.set_defaults(run=cmd_clients_disable, admin=("admin-account", "U"))

    people = commands.add_parser("users", help="people who log in")
    people_commands = people.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    users_add = people_commands.add_parser("add", parents=[common], help="add a person")
    users_add.add_argument("--org", required=True, help="URA of the person's organisation")
    users_add.add_argument("--username", required=True)
    users_add.add_argument(
        "--role", required=True, choices=["clinician", "assistant", "dpo", "admin"]
    )
    users_add.add_argument(
        "--password-file", help="file holding the password (else one is generated and shown once)"
    )
    users_add.set_defaults(run=cmd_users_add, admin=("admin-account", "C"))
    users_disable = people_commands.add_parser(
        "disable", parents=[common], help="end a person's access (logins, tokens, UI sessions)"
    )
    users_disable.add_argument("username")
    users_disable.set_defaults(run=cmd_users_disable, admin=("admin-account", "U"))

    applications = commands.add_parser("apps", help="SMART apps people log in to")
    apps_commands = applications.add_subparsers(
        dest="apps_command", required=True, metavar="COMMAND"
    )
    apps_add = apps_commands.add_parser(
        "add", parents=[common, as_json], help="register a public app (PKCE); prints its client_id"
    )
    apps_add.add_argument("--name", required=True)
    apps_add.add_argument(
        "--redirect-uri",
        required=True,
        action="append",
        help="an exact redirect URI (repeat for more)",
    )
    apps_add.set_defaults(run=cmd_apps_add, admin=("admin-account", "C"))

    agreements = commands.add_parser(
        "agreements", help="processor and data-sharing agreements between organisations"
    )
    agreements_commands = agreements.add_subparsers(
        dest="agreements_command", required=True, metavar="COMMAND"
    )
    agreements_add = agreements_commands.add_parser(
        "add", parents=[common, as_json], help="record an agreement; prints its id"
    )
    agreements_add.add_argument("--kind", required=True, choices=["processor", "data-sharing"])
    agreements_add.add_argument("--parties", required=True, help="URAs, comma-separated")
    agreements_add.add_argument(
        "--purpose", required=True, help="purposes of use, e.g. TREAT (comma-separated)"
    )
    agreements_add.add_argument(
        "--categories",
        default="treatment",
        help="data categories, e.g. results,medication or Mitz GGC012 (default: treatment, all)",
    )
    agreements_add.add_argument("--from", dest="valid_from", help="first day (default today)")
    agreements_add.add_argument("--to", dest="valid_to", help="last day (default open-ended)")
    agreements_add.add_argument("--document", help="the signed agreement (PDF)")
    agreements_add.set_defaults(run=cmd_agreements_add, admin=("admin-organization", "C"))
    agreements_list = agreements_commands.add_parser(
        "list", parents=[common, as_json], help="list them; EXPIRING marks the last 60 days"
    )
    agreements_list.set_defaults(run=cmd_agreements_list)
    agreements_end = agreements_commands.add_parser("end", parents=[common], help="end one")
    agreements_end.add_argument("agreement_id")
    agreements_end.add_argument("--on", help="its last day (default today)")
    agreements_end.set_defaults(run=cmd_agreements_end, admin=("admin-organization", "U"))

    intake = commands.add_parser(
        "import", parents=[common], help="convert EHR export files and store them"
    )
    intake.add_argument("--adapter", required=True, choices=adapter_names())
    intake.add_argument("--profile", help="csv mapping profile, e.g. synthea, or a TOML file")
    intake.add_argument("--org", required=True, help="URA of the organisation the data is from")
    intake.add_argument(
        "--to", action="append", help="URA to address the documents to (repeat for more)"
    )
    intake.add_argument("--patient", help="pdf: the patient's BSN (else from FILE.json)")
    intake.add_argument("--type", help="pdf: LOINC document type (else from FILE.json)")
    intake.add_argument("--title", help="pdf: the title (else from FILE.json)")
    intake.add_argument("files", nargs="+", help="files; for csv also a directory of files")
    intake.set_defaults(run=cmd_import)

    mllp = commands.add_parser(
        "mllp", parents=[common], help="receive HL7 v2 messages over MLLP and store them"
    )
    mllp.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    mllp.add_argument("--port", type=int, default=2575, help="port (default 2575)")
    mllp.add_argument("--org", required=True, help="URA of the sending organisation")
    mllp.add_argument(
        "--to", action="append", help="URA to address documents (MDM) to; repeat for more"
    )
    mllp.set_defaults(run=cmd_mllp)

    worker = commands.add_parser(
        "worker", parents=[common], help="deliver notifications to partner endpoints"
    )
    worker.set_defaults(run=cmd_worker)

    deliveries = commands.add_parser("deliveries", help="the delivery outbox")
    deliveries_commands = deliveries.add_subparsers(
        dest="deliveries_command", required=True, metavar="COMMAND"
    )
    deliveries_list = deliveries_commands.add_parser(
        "list", parents=[common, as_json], help="list deliveries"
    )
    deliveries_list.add_argument(
        "--failed", action="store_true", help="only those that gave up (dead letters)"
    )
    deliveries_list.set_defaults(run=cmd_deliveries_list)
    deliveries_retry = deliveries_commands.add_parser(
        "retry", parents=[common], help="queue a failed delivery again"
    )
    deliveries_retry.add_argument("delivery_id")
    deliveries_retry.set_defaults(run=cmd_deliveries_retry, admin=("admin-organization", "U"))

    master_keys = commands.add_parser("keys", help="the master key that protects document content")
    keys_commands = master_keys.add_subparsers(
        dest="keys_command", required=True, metavar="COMMAND"
    )
    rotate = keys_commands.add_parser(
        "rotate", parents=[common], help="new master key; re-wrap every data key, no downtime"
    )
    rotate.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds running gateways get to notice the new key (default 5)",
    )
    rotate.set_defaults(run=cmd_keys_rotate, admin=("admin-security", "U"))

    audit = commands.add_parser("audit", help="the audit trail (NEN 7513)")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    audit_verify = audit_commands.add_parser(
        "verify", parents=[common], help="check the hash chain and its signed checkpoints"
    )
    audit_verify.add_argument(
        "--public-key", help="verify with this PEM public key only (see `audit public-key`)"
    )
    audit_verify.set_defaults(run=cmd_audit_verify)
    public_key = audit_commands.add_parser(
        "public-key", parents=[common], help="print the public key that verifies checkpoints"
    )
    public_key.set_defaults(run=cmd_audit_public_key)
    report = audit_commands.add_parser(
        "report", parents=[common], help="who saw what, when, on which basis"
    )
    report.add_argument("--patient", help="the patient's BSN")
    report.add_argument("--from", dest="since", help="first day (YYYY-MM-DD)")
    report.add_argument("--to", dest="until", help="last day (YYYY-MM-DD), inclusive")
    report.add_argument("--org", help="URA of the organisation whose people or systems acted")
    report.add_argument("--user", help="a user name or client id")
    report.add_argument("--denials", action="store_true", help="only refused accesses")
    report.add_argument("--emergencies", action="store_true", help="only emergency accesses")
    report.add_argument("--format", choices=("csv", "json", "fhir"), default="csv")
    report.add_argument("--output", help="write the report to this file")
    report.set_defaults(run=cmd_audit_report)
    purge = audit_commands.add_parser(
        "purge", parents=[common], help="remove records past the retention period"
    )
    purge.add_argument(
        "--before", required=True, help="remove records older than this day (or moment), UTC"
    )
    purge.set_defaults(run=cmd_audit_purge)

    send = commands.add_parser(
        "send", parents=[common, as_json], help="send a document to partner hospitals (ITI-65)"
    )
    send.add_argument("--org", required=True, help="URA of the sending organisation")
    send.add_argument(
        "--to", required=True, action="append", help="URA of a recipient (repeat for more)"
    )
    send.add_argument("--patient", required=True, help="the patient's BSN")
    send.add_argument("--type", help="LOINC document type, e.g. 18842-5 (discharge summary)")
    send.add_argument("--title", help="title of the document (default: the file name)")
    send.add_argument("--content-type", help="media type (default: from the file name)")
    send.add_argument(
        "--unique-id", help="the document's unique id; re-sending it never makes a copy"
    )
    send.add_argument("file", help="the document, e.g. a PDF")
    send.set_defaults(run=cmd_send)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; errors become one line and a non-zero exit."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(words)
    try:
        if getattr(args, "admin", None):
            from gateway.service.console import ConsoleChange

            kind, action = args.admin
            args.change = ConsoleChange.of(kind, words, action)
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one place where any failure becomes a message, not a trace
        print(f"zorgbrug: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: Exception) -> str:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):  # the driver's own words, without SQLAlchemy's boilerplate
        return f"database: {' '.join(str(exc.orig).split())}"
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
