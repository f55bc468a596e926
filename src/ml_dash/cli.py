"""The ``ml-dash`` command: look at what experiments recorded, from the shell."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from .errors import InvalidValueError, MLDashError
from .limits import DEFAULT, ConnectionLimits, Limits, default_max_connections
from .logs import normalize_level
from .names import parse_prefix
from .stores import fdpool
from .stores.local import LocalStore


def _root(args: argparse.Namespace) -> LocalStore:
    return LocalStore(args.root or os.environ.get("ML_DASH_ROOT") or ".dash")


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _cmd_list(args: argparse.Namespace) -> int:
    store = _root(args)
    if args.where or args.sort:
        from .summaries import select_runs

        store.read_only = True
        summaries, _ = select_runs(store.run_summaries(args.owner, args.project), args.where, args.sort,
                                   args.descending, 0, 10_000)
        infos = [s.info for s in summaries]
    else:
        infos = store.list_experiments(args.owner, args.project)
    if args.json:
        for info in infos:
            _print_json({"prefix": info.prefix, "status": info.status, "tags": list(info.tags),
                         "heartbeatAt": info.heartbeat_at})
        return 0
    if not infos:
        print(f"no experiments under {store.root}" + (f" match {args.where!r}" if args.where else ""))
        return 0
    width = max(len(i.prefix) for i in infos)
    for info in infos:
        print(f"{info.prefix:<{width}}  {info.status}")
    return 0


def _when_text(ts: float | None) -> str | None:
    from .stores.codec import iso_utc

    return iso_utc(ts) if ts is not None else None


def _when_json(ts: float | None) -> float | None:
    return ts


def _cmd_show(args: argparse.Namespace) -> int:
    store = _root(args)
    prefix = parse_prefix(args.prefix).path
    info = store.get_experiment(prefix)
    if info is None:
        print(f"ml-dash: no experiment {prefix!r} under {store.root}", file=sys.stderr)
        return 1
    when = _when_json if args.json else _when_text
    summary: dict[str, Any] = {
        "prefix": info.prefix,
        "status": info.status,
        "startedAt": when(info.started_at),
        "heartbeatAt": when(info.heartbeat_at),
        "resumes": [
            {"at": when(r.at), "host": r.host, "pid": r.pid, "interrupted": r.interrupted,
             "previousStatus": r.previous_status}
            for r in info.resumes
        ],
        "description": info.description,
        "tags": list(info.tags),
        "path": store.experiment_dir(prefix),
        "params": store.get_params(prefix).data,
        "metrics": store.list_metrics(prefix),
        "tracks": store.list_tracks(prefix),
        "logs": store.query_logs(prefix, {"limit": 0})["total"],
        "context": info.metadata.get("context"),
    }
    if args.json:
        _print_json(summary)
        return 0
    for key, value in summary.items():
        if key == "metrics":
            print("metrics:")
            for stats in value:
                print(f"  {stats['name']}: {stats['totalDataPoints']} points")
        elif key == "tracks":
            print("tracks:")
            for track in value:
                print(f"  {track['topic']}: {track['totalEntries']} entries")
        elif key == "params":
            print("params:")
            for name, param in sorted(value.items()):
                print(f"  {name} = {param!r}")
        elif key == "context":
            if isinstance(value, dict):
                print("context:")
                for line in _context_lines(value):
                    print(f"  {line}")
        elif key == "resumes":
            print(f"resumes: {len(value)}")
            for r in value:
                after = "an interrupted run" if r["interrupted"] else f"a {r['previousStatus']} run"
                print(f"  {r['at']} on {r['host']} (pid {r['pid']}), after {after}")
        else:
            print(f"{key}: {value}")
    return 0


def _context_lines(context: dict[str, Any]) -> list[str]:
    """The run context (docs/run-context.md) as short lines for ``show``."""
    lines = []
    git = context.get("git")
    if isinstance(git, dict):
        if git.get("error"):
            lines.append(f"git: {git['error']}")
        else:
            where = f" on {git['branch']}" if git.get("branch") else " (detached)"
            dirty = " (dirty)" if git.get("dirty") else ""
            remote = f", {git['remote']}" if git.get("remote") else ""
            lines.append(f"git: {git.get('commit') or 'no commit'}{where}{dirty}{remote}")
    command = context.get("command")
    if isinstance(command, dict):
        lines.append("command: " + " ".join(str(a) for a in command.get("argv") or ()))
        lines.append(f"cwd: {command.get('cwd')}")
    python = context.get("python")
    if isinstance(python, dict):
        lines.append(f"python: {python.get('version')} ({python.get('executable')})")
    host = context.get("host")
    if isinstance(host, dict):
        lines.append(f"host: {host.get('name')} ({host.get('platform')} {host.get('machine')}, "
                     f"{host.get('cpus')} CPUs)")
    packages = context.get("packages")
    if isinstance(packages, dict) and packages:
        lines.append("packages: " + ", ".join(f"{name} {version}" for name, version in sorted(packages.items())))
    gpu = context.get("gpu")
    if isinstance(gpu, dict):
        names = ", ".join(str(d.get("name")) for d in gpu.get("devices") or ())
        lines.append(f"gpu: {names or 'none'} (driver {gpu.get('driver')})" if not gpu.get("error")
                     else f"gpu: {gpu['error']}")
    env = context.get("env")
    if isinstance(env, dict) and env:
        lines.append("env: " + " ".join(f"{name}={value}" for name, value in sorted(env.items())))
    return lines


def _cmd_metrics(args: argparse.Namespace) -> int:
    store = _root(args)
    prefix = parse_prefix(args.prefix).path
    page = store.read_metrics(prefix, args.name, args.start, args.limit)
    for point in page["data"]:
        _print_json({"index": point["index"], **point["data"]})
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    store = _root(args)
    prefix = parse_prefix(args.prefix).path
    query: dict[str, Any] = {"offset": args.offset, "limit": args.limit}
    if args.level:
        query["levels"] = [normalize_level(level) for level in args.level]
    if args.search:
        query["search"] = args.search
    page = store.query_logs(prefix, query)  # type: ignore[arg-type]
    for line in page["logs"]:
        if args.json:
            _print_json(line)
        else:
            meta = f" {line['metadata']}" if line.get("metadata") else ""
            print(f"{line['timestamp']} [{line['level']}] {line['message']}{meta}")
    return 0


def _root_folder(args: argparse.Namespace) -> str:
    return str(args.root or os.environ.get("ML_DASH_ROOT") or ".dash")


def _mongo_settings(args: argparse.Namespace) -> Any:
    """The MongoSettings the command line and environment ask for, or None for the folder backend.

    The command line wins over the environment: an explicit ``--root`` alone serves the
    folder even when ``ML_DASH_MONGO_URI`` is set; ``--root`` with ``--mongo`` is an error.
    """
    from .errors import InvalidValueError
    from .server.mongo_backend import MongoSettings

    uri = getattr(args, "mongo", None)
    if args.root is not None:
        given = [f"--{n.replace('_', '-')}" for n in ("mongo", "s3", "s3_endpoint", "chunk_size") if hasattr(args, n)]
        if given:
            raise InvalidValueError(f"--root serves a folder; {', '.join(given)} are for the MongoDB backend: "
                                    "give one or the other")
        return None
    return MongoSettings.from_options(
        uri,
        getattr(args, "mongo_db", None),
        getattr(args, "s3", None),
        getattr(args, "s3_endpoint", None),
        getattr(args, "chunk_size", None),
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    mongo = _mongo_settings(args)
    open_files = args.max_open_files
    if open_files is not None:
        if open_files < 1:
            raise InvalidValueError(f"serve: --max-open-files must be a positive whole number, got {open_files}")
        if mongo is not None:
            raise InvalidValueError("serve: --max-open-files bounds the open data files of the folder backend; "
                                    "the MongoDB backend keeps none open: leave it out")
    try:
        limits = Limits(args.max_depth, args.max_items, args.max_point_bytes, args.max_log_bytes,
                        args.max_track_bytes, args.max_params_bytes, args.max_decode_ratio)
        connections = ConnectionLimits(args.header_timeout, args.body_timeout, args.max_connections,
                                       args.max_connections_per_client)
    except ValueError as exc:
        raise InvalidValueError(f"serve: {exc}") from None
    serve.run(serve.plan(args.root, args.host, args.port, args.auth, args.insecure, args.max_body, mongo,
                         limits, connections, max_open_files=open_files))
    return 0


def _add_limit_options(p: argparse.ArgumentParser) -> None:
    """``serve``'s limits on requests and connections (docs/http-api.md, "Limits")."""
    g = p.add_argument_group("limits", "what one request or connection may cost (docs/http-api.md, 'Limits'): "
                             "bigger is refused with 413, deeper or more items with 422")
    g.add_argument("--max-body", type=int, default=64 * 1024 * 1024, metavar="BYTES",
                   help="largest request body accepted (default: 64 MiB)")
    g.add_argument("--max-decode-ratio", type=int, default=DEFAULT.max_decode_ratio, metavar="N",
                   help="refuse a body whose decoding would take more memory than N times its size, at least "
                   f"32 MiB (default: {DEFAULT.max_decode_ratio}; estimated from byte counts before decoding)")
    mib = 1024 * 1024
    for option, default, what in (
        ("--max-depth", DEFAULT.max_depth, "levels of lists and objects nested in one value"),
        ("--max-items", DEFAULT.max_items, "items in one list or object, and records in one append"),
        ("--max-point-bytes", DEFAULT.max_point_bytes, "bytes of JSON in one metric point"),
        ("--max-log-bytes", DEFAULT.max_log_bytes, "bytes of JSON in one log record"),
        ("--max-track-bytes", DEFAULT.max_track_bytes, "bytes of JSON in one track entry"),
        ("--max-params-bytes", DEFAULT.max_params_bytes, "bytes of JSON in the params one call sends"),
    ):
        shown = f"{default // mib} MiB" if option.endswith("bytes") else f"{default:,}"
        g.add_argument(option, type=int, default=default, metavar="N", help=f"most {what} (default: {shown})")
    conns = ConnectionLimits()
    g.add_argument("--header-timeout", type=float, default=conns.header_timeout, metavar="SECONDS",
                   help=f"close a connection whose request headers take longer (default: {conns.header_timeout:g})")
    g.add_argument("--body-timeout", type=float, default=conns.body_timeout, metavar="SECONDS",
                   help=f"close a connection whose request body stalls this long (default: {conns.body_timeout:g})")
    g.add_argument("--max-connections", type=int, default=0, metavar="N",
                   help="open connections in all; when full, a new one closes the connection idle longest "
                   f"(default: half the open-file limit, 64..4096: {default_max_connections()} now)")
    g.add_argument("--max-connections-per-client", type=int, default=conns.max_per_client, metavar="N",
                   help=f"open connections from one client address, 0 for no cap (default: {conns.max_per_client}; "
                   "behind a reverse proxy all clients share its address: raise it or use 0)")
    g.add_argument("--max-open-files", type=int, default=None, metavar="N",
                   help="data files the folder backend keeps open at once; the least recently used are closed and "
                   f"reopened when needed (default: ${fdpool.ENV}, else a quarter of the open-file limit, "
                   f"{fdpool.MIN_CAPACITY}..{fdpool.MAX_CAPACITY}: {fdpool.default_capacity()} now)")


class _Tokens:
    """The token store a ``token`` command works on (a folder's file, or MongoDB), closed on exit."""

    def __init__(self, args: argparse.Namespace) -> None:
        from .server.auth import FileTokenStore, TokenStore

        mongo = _mongo_settings(args)
        self.store: TokenStore
        if mongo is None:
            files = FileTokenStore(_root_folder(args))
            self.store, self.where = files, files.path
        else:
            tokens = mongo.open_tokens()
            self.store, self.where = tokens, tokens.where

    def __enter__(self) -> _Tokens:
        return self

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


def _cmd_token_create(args: argparse.Namespace) -> int:
    with _Tokens(args) as tokens:
        token = tokens.store.create(args.owner)
    print(token)
    print(f"ml-dash: token for {args.owner!r} stored in {tokens.where}; this is the only time it is shown",
          file=sys.stderr)
    return 0


def _cmd_token_list(args: argparse.Namespace) -> int:
    from .server.auth import describe
    from .stores.codec import iso_utc

    with _Tokens(args) as tokens:
        records = tokens.store.list()
    if args.json:
        for record in records:
            _print_json(describe(record))
        return 0
    if not records:
        print("no tokens")
        return 0
    width = max(len(r.owner) for r in records)
    print(f"{'ID':<12}  {'OWNER':<{width}}  {'CREATED':<27}  REVOKED")
    for r in records:
        revoked = iso_utc(r.revoked_at) if r.revoked_at is not None else "-"
        print(f"{r.id:<12}  {r.owner:<{width}}  {iso_utc(r.created_at):<27}  {revoked}")
    return 0


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    with _Tokens(args) as tokens:
        tokens.store.revoke(args.id)
    print(f"revoked token {args.id}")
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from .outbox import deliver_left_behind
    from .stores.factory import SPOOL_FOLDER
    from .stores.remote import RemoteStore

    root = args.root or os.environ.get("ML_DASH_ROOT") or ".dash"
    api_key = args.api_key or os.environ.get("ML_DASH_API_KEY")
    done = deliver_left_behind(
        os.path.join(root, SPOOL_FOLDER),
        lambda url: RemoteStore(url, api_key, timeout=args.timeout),
        url=args.url,
        timeout=args.timeout,
        retry_rejected=args.retry_rejected,
    )
    again = f"{done.requeued} refused before were tried again; " if args.retry_rejected else ""
    print(f"{again}sent {done.sent} requests; {done.rejected} refused by the server (kept in rejected/, "
          f"`--retry-rejected` tries them again); {done.left} still waiting")
    for error in done.errors or ():
        print(f"ml-dash sync: {error}", file=sys.stderr)
    return 0 if done.left == 0 else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from . import export
    from .reading import open_store

    root = getattr(args, "root", None)
    store = open_store(root if args.url is None else None, args.url, args.api_key, args.timeout)
    try:
        prefixes = export.matching(store, args.pattern)
        columns = export.gather(store, prefixes, metric=args.metric, logs=args.logs, track=args.tracks)
        export.write(columns, args.format, args.output)
    finally:
        store.close()
    if args.output is not None:
        rows = export.row_count(columns)
        print(f"{rows} row{'' if rows == 1 else 's'} of {len(prefixes)} experiment"
              f"{'' if len(prefixes) == 1 else 's'} written to {args.output}", file=sys.stderr)
    return 0


def _add_export_command(commands: Any) -> None:
    p = commands.add_parser(
        "export",
        help="write a metric stream, the logs or a track of experiments to CSV, Parquet or JSON lines",
        description="Write one stream of every experiment PATTERN matches into one table (an `experiment` "
        "column first) as csv, parquet (needs ml-dash[arrow]) or jsonl. Example: "
        "ml-dash export 'alice/vision/*' --metric train --format parquet -o train.parquet",
    )
    p.add_argument("pattern", metavar="PREFIX-GLOB", help="experiments to export, e.g. 'alice/vision/*' "
                   "(shell-style; * also matches /)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--metric", metavar="NAME", help="this metric stream")
    what.add_argument("--logs", action="store_true", help="the log lines")
    what.add_argument("--tracks", metavar="TOPIC", help="this track topic")
    p.add_argument("--format", choices=("csv", "parquet", "jsonl"), default="csv")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    p.add_argument("--root", default=argparse.SUPPRESS, help="read this folder (default: $ML_DASH_ROOT or .dash)")
    p.add_argument("--url", help="read from this server instead of a folder")
    p.add_argument("--api-key", help="token for --url (default: $ML_DASH_API_KEY)")
    p.add_argument("--timeout", type=float, default=30.0, help="give up on a server that does not answer (s)")
    p.set_defaults(run=_cmd_export)


def _add_mongo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mongo", metavar="URI", default=argparse.SUPPRESS,
                   help="use the MongoDB backend at this mongodb:// URI (default: $ML_DASH_MONGO_URI)")
    p.add_argument("--mongo-db", metavar="NAME", default=argparse.SUPPRESS,
                   help="the database (default: $ML_DASH_MONGO_DB, else the URI's, else ml_dash)")


def _add_server_commands(commands: Any) -> None:
    """``serve`` and ``token create|list|revoke``."""
    root_help = "the dash root folder (default: $ML_DASH_ROOT or .dash)"
    p = commands.add_parser(
        "serve",
        help="serve a dash root, or MongoDB + S3, over HTTP (the ML-Dash server)",
        description="Serve experiments over the ML-Dash HTTP API, from a dash root folder (the default) or "
        "from MongoDB plus an S3 bucket (--mongo, --s3). The folder backend is single-server: run one server "
        "process per folder. With the MongoDB backend everything, tokens included, lives in the database and "
        "the bucket, so several server processes may share them (give each the same --chunk-size). On a "
        "loopback address auth is off unless --auth; on any other address auth is on unless --insecure.",
    )
    p.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    _add_mongo_options(p)
    p.add_argument("--s3", metavar="s3://BUCKET[/PREFIX]", default=argparse.SUPPRESS,
                   help="with --mongo: move full metric chunks to this bucket (default: $ML_DASH_S3; "
                   "without it every point stays in MongoDB)")
    p.add_argument("--s3-endpoint", metavar="URL", default=argparse.SUPPRESS,
                   help="an S3-compatible endpoint instead of AWS (default: $ML_DASH_S3_ENDPOINT); "
                   "credentials come from the usual AWS_* variables or files")
    p.add_argument("--chunk-size", type=int, metavar="N", default=argparse.SUPPRESS,
                   help="points per S3 chunk (default: 10000; 1..1000 or a multiple of 1000); every server "
                   "on one database must use the same")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--auth", action="store_true", help="require tokens even on a loopback address")
    p.add_argument("--insecure", action="store_true", help="allow no auth on a non-loopback address (dangerous)")
    _add_limit_options(p)
    p.set_defaults(run=_cmd_serve)

    p = commands.add_parser(
        "token",
        help="create, list and revoke server tokens",
        description="Tokens live beside the data: in <root>/.ml-dash/tokens.json for the folder backend, in the "
        "`tokens` collection with --mongo (or $ML_DASH_MONGO_URI). Only their SHA-256 hashes are stored.",
    )
    actions = p.add_subparsers(dest="token_command", required=True)
    a = actions.add_parser("create", help="create a token for an owner and print it (shown only once)")
    a.add_argument("--owner", required=True, help="the owner (first prefix segment) the token may use")
    a.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    _add_mongo_options(a)
    a.set_defaults(run=_cmd_token_create)
    a = actions.add_parser("list", help="list tokens: id, owner, created, revoked (never the secret)")
    a.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    _add_mongo_options(a)
    a.add_argument("--json", action="store_true", help="one JSON object per line")
    a.set_defaults(run=_cmd_token_list)
    a = actions.add_parser("revoke", help="revoke a token by its id")
    a.add_argument("id", help="the token id (as `token list` shows it)")
    a.add_argument("--root", default=argparse.SUPPRESS, help=root_help)
    _add_mongo_options(a)
    a.set_defaults(run=_cmd_token_revoke)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-dash", description="Inspect ML-Dash experiments.")
    parser.add_argument("--root", help="the dash root folder (default: $ML_DASH_ROOT or .dash)")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser(
        "list",
        help="list experiments and their status",
        description="List experiments and their status. A RUNNING experiment that no live process runs any more "
        "(killed, or silent longer than its lease: 60 s by default) shows as STALE.",
    )
    p.add_argument("--owner")
    p.add_argument("--project")
    p.add_argument("--where", help="a filter, e.g. \"params.lr < 0.01 and status == 'COMPLETED'\" (docs/filters.md)")
    p.add_argument("--sort", help="a column to sort by: name, created, params.lr, metrics.train.loss.min ...")
    p.add_argument("--descending", action="store_true", help="with --sort: largest first")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=_cmd_list)

    p = commands.add_parser("show", help="params, metric streams, tracks and log count of one experiment")
    p.add_argument("prefix")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_show)

    p = commands.add_parser("metrics", help="print a metric stream as JSON lines")
    p.add_argument("prefix")
    p.add_argument("name")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(run=_cmd_metrics)

    p = commands.add_parser("logs", help="print log lines")
    p.add_argument("prefix")
    p.add_argument("--level", action="append", help="only these levels (repeatable)")
    p.add_argument("--search", help="only lines whose message contains this text")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_logs)

    p = commands.add_parser("sync", help="send what past remote runs left in the spool (<root>/.spool)")
    p.add_argument("--url", help="send to this server instead of the one each request was made for")
    p.add_argument("--api-key", help="token to send with (default: $ML_DASH_API_KEY)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up on a server that does not answer (s)")
    p.add_argument("--retry-rejected", action="store_true",
                   help="also resend what the server refused before (after fixing the cause, e.g. with a new "
                   "--api-key); nothing is ever stored twice")
    p.set_defaults(run=_cmd_sync)

    _add_export_command(commands)
    _add_server_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except MLDashError as exc:
        print(f"ml-dash: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
