"""Routes for experiments and their params (docs/http-api.md).

Each route checks the caller and the names in the event loop (cheap), then decodes
the body with its ``ml_dash.wire`` struct within the server's limits
(``server.bodies``), validates it, calls the store in a worker thread and answers with
the wire struct of the result.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from .. import wire
from ..errors import InvalidValueError, NotFoundError
from ..limits import DEFAULT, Limits
from ..names import PREFIX_PATTERN, SINGLE_NAME_PATTERN, Prefix
from ..records import FORMAT_VERSION
from ..stores.base import Store
from ..stores.claims import check_holder, check_holder_ids, check_lease
from ..values import normalize
from .bodies import decode
from .http import answer, caller, limits_of, read_json_body, store_of
from .schemas import answers, body
from .validate import Access, check_tags, check_time, flat_params, server_prefix, single_name

router = APIRouter(prefix="/api/v1")

PREFIX_HELP = "the experiment: owner/project/[folders/...]/name"


def prefix_query() -> Any:
    """The ``prefix`` query parameter, as every route declares it (the pattern is described, not
    enforced here: ``server_prefix`` checks more and answers 400 ``invalid_name``)."""
    return Query(description=PREFIX_HELP, examples=["alice/project/run-1"],
                 json_schema_extra={"pattern": PREFIX_PATTERN, "maxLength": 512})


def _single_name_query(description: str) -> Any:
    return Query(None, description=description, json_schema_extra={"pattern": SINGLE_NAME_PATTERN, "maxLength": 512})


# -- experiments -------------------------------------------------------------------------


def _open(store: Store, access: Access, raw: bytes | bytearray, limits: Limits = DEFAULT) -> bytes:
    exp = decode(raw, wire.ExperimentOpen, limits)
    parsed = server_prefix(exp.prefix, access)
    for field, given, actual in (
        ("owner", exp.owner, parsed.owner),
        ("project", exp.project, parsed.project),
        ("name", exp.name, parsed.name),
    ):
        if given is not None and given != actual:
            raise InvalidValueError(f"{field} {given!r} does not match the prefix {exp.prefix!r}")
    if exp.folders and tuple(exp.folders) != parsed.folders:
        raise InvalidValueError(f"folders {exp.folders!r} do not match the prefix {exp.prefix!r}")
    for field in ("created_at", "started_at", "ended_at"):
        value = getattr(exp, field)
        if value is not None:
            check_time(value, field)
    check_tags(exp.tags, limits)
    exp.metadata = normalize(exp.metadata, "metadata", 0, limits)
    exp.format_version = FORMAT_VERSION  # the store's layout, not the client's to choose
    return wire.encode(wire.ExperimentBody.of(store.open_experiment(exp.record())))


@router.post(
    "/experiment/open", openapi_extra=body(wire.ExperimentOpen), responses=answers(wire.ExperimentBody, 403, 422)
)
async def open_experiment(request: Request, access: Access = Depends(caller)) -> Response:
    """Create the experiment named by ``prefix`` in the body, or resume the stored one."""
    raw = await read_json_body(request)
    return await answer(_open, store_of(request), access, raw, limits_of(request))


def _update(store: Store, target: Prefix, raw: bytes | bytearray, limits: Limits = DEFAULT) -> bytes:
    changes = decode(raw, wire.ExperimentChanges, limits).changes()
    for field in ("started_at", "ended_at"):
        if changes.get(field) is not None:
            changes[field] = check_time(changes[field], field)
    if "tags" in changes:
        check_tags(changes["tags"], limits)
    if "metadata" in changes:
        changes["metadata"] = normalize(changes["metadata"], "metadata", 0, limits)
    # Checked first because updating a missing experiment would leave an empty folder.
    if store.get_experiment(target.path) is None:
        raise NotFoundError(f"no experiment {target.path!r}")
    return wire.encode(wire.ExperimentBody.of(store.update_experiment(target.path, **changes)))


@router.post(
    "/experiment/update",
    openapi_extra=body(wire.ExperimentChanges),
    responses=answers(wire.ExperimentBody, 403, 404, 422),
)
async def update_experiment(
    request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)
) -> Response:
    """Change status, times, description, tags or metadata of a stored experiment."""
    target = server_prefix(prefix, access)
    raw = await read_json_body(request)
    return await answer(_update, store_of(request), target, raw, limits_of(request))


def _get(store: Store, target: Prefix) -> bytes:
    info = store.get_experiment(target.path)
    if info is None:
        raise NotFoundError(f"no experiment {target.path!r}")
    return wire.encode(wire.ExperimentBody.of(info))


@router.get("/experiment", responses=answers(wire.ExperimentBody, 403, 404))
async def get_experiment(request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)) -> Response:
    """The stored experiment; 404 when there is none."""
    return await answer(_get, store_of(request), server_prefix(prefix, access))


def _list(store: Store, owner: str | None, project: str | None) -> bytes:
    return wire.encode(wire.ExperimentList.of(store.list_experiments(owner, project)))


@router.get("/experiments", responses=answers(wire.ExperimentList, 403))
async def list_experiments(
    request: Request,
    owner: str | None = _single_name_query("only this owner's (with auth: defaults to the token's owner)"),
    project: str | None = _single_name_query("only this project's (with owner)"),
    access: Access = Depends(caller),
) -> Response:
    """Experiments sorted by prefix; a token sees only its owner's."""
    owner = single_name(owner, "owner")
    project = single_name(project, "project")
    if access.owner is not None:
        owner = owner or access.owner
        access.check(owner)
    return await answer(_list, store_of(request), owner, project)


# -- claims ------------------------------------------------------------------------------


def _claim(store: Store, target: Prefix, raw: bytes | bytearray, limits: Limits = DEFAULT) -> bytes:
    holder, lease_seconds, join, new, replaces = decode(raw, wire.ClaimBody, limits).args()
    lease = check_lease(lease_seconds, "leaseSeconds")
    claim = store.claim_experiment(target.path, check_holder(holder), lease, join=join, new=new,
                                   replaces=check_holder_ids(replaces))
    return wire.encode(wire.ClaimOut.of(claim))


@router.post("/experiment/claim", openapi_extra=body(wire.ClaimBody), responses=answers(wire.ClaimOut, 403, 409))
async def claim_experiment(
    request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)
) -> Response:
    """Claim the experiment for a process for ``leaseSeconds``, or renew the claim (the same holder again).

    409 ``busy`` while another holder's claim is alive (unless ``join``), 409 ``exists``
    for ``new`` on a stored experiment. A claim lapses ``leaseSeconds`` after its last
    renewal; readers then show a RUNNING experiment as STALE.
    """
    target = server_prefix(prefix, access)
    raw = await read_json_body(request)
    return await answer(_claim, store_of(request), target, raw, limits_of(request))


def _release(store: Store, target: Prefix, raw: bytes | bytearray, limits: Limits = DEFAULT) -> bytes:
    released = decode(raw, wire.ReleaseBody, limits)
    store.release_experiment(target.path, released.holder_id)
    return wire.encode(released)


@router.post("/experiment/release", openapi_extra=body(wire.ReleaseBody), responses=answers(wire.ReleaseBody, 403))
async def release_experiment(
    request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)
) -> Response:
    """End one holder's claim (nothing happens when it has none); the answer repeats the body."""
    target = server_prefix(prefix, access)
    raw = await read_json_body(request)
    return await answer(_release, store_of(request), target, raw, limits_of(request))


# -- params ------------------------------------------------------------------------------


def _params_answer(store: Store, target: Prefix) -> bytes:
    return wire.encode(wire.ParamsOut.of(store.get_params(target.path)))


def _set_params(store: Store, target: Prefix, raw: bytes | bytearray, limits: Limits = DEFAULT) -> bytes:
    (params,) = decode(raw, wire.ParamsBody, limits).args()
    return wire.encode(wire.ParamsOut.of(store.set_params(target.path, flat_params(params, limits))))


@router.post("/params", openapi_extra=body(wire.ParamsBody), responses=answers(wire.ParamsOut, 403, 422))
async def set_params(request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)) -> Response:
    """Merge flat params into the stored ones (nested objects are flattened with ``.``)."""
    target = server_prefix(prefix, access)
    raw = await read_json_body(request)
    return await answer(_set_params, store_of(request), target, raw, limits_of(request))


@router.get("/params", responses=answers(wire.ParamsOut, 403))
async def get_params(request: Request, prefix: str = prefix_query(), access: Access = Depends(caller)) -> Response:
    """The stored params (``version`` 0 and empty ``data`` when none were set)."""
    return await answer(_params_answer, store_of(request), server_prefix(prefix, access))
