"""The dashboard as an ASGI application (Starlette, served on Trio).

Pages are rendered on the server (Jinja2, autoescaped: every string shown
may come from a hostile producer); htmx swaps fragments in place, and one
server-sent event stream per page (``/events/stream``) carries the events
that the backend's event log relays from every worker, so pages follow the
platform without a reload. Every query behind a page is bounded.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import attrs
import jinja2
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stem._clock import now
from stem._schedule import ScheduleEntry, fire_options
from stem._signals import Event
from stem._states import TaskState
from stem._taskquery import SCAN_BOUND
from stem.contracts import WORKFLOW_ACTIVE, WORKFLOW_FINAL, TaskQuery

from ._auth import COOKIE, DashboardAuth, Principal
from ._hub import EventHub, feed_line

logger = logging.getLogger("stem.dashboard")

HERE = Path(__file__).parent
NAV = (
    ("/", "Overview"),
    ("/tasks", "Tasks"),
    ("/dead", "Dead letters"),
    ("/workflows", "Workflows"),
    ("/schedules", "Schedules"),
    ("/workers", "Workers"),
)
PAGE = 50
Handler = Callable[[Request], Awaitable[Response]]


def _iso(ts: float | None) -> str:
    if ts is None or not isinstance(ts, int | float) or not math.isfinite(ts):
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(ts: Any) -> str:
    if not isinstance(ts, int | float) or not math.isfinite(ts) or ts <= 0:
        return "-"
    delta = now() - ts
    if delta < 0:
        return "in " + _span(-delta)
    return _span(delta) + " ago"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _dumps(value: Any, indent: int | None = None) -> str:
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def chart_svg(counts: dict[float, dict[str, int]], start: float, minutes: int) -> str:
    """Stacked bars per minute (succeeded, failed, revoked) as inline SVG."""
    colors = (("succeeded", "#12805c"), ("failed", "#c4320a"), ("revoked", "#b54708"))
    peak = max([sum(v.values()) for v in counts.values()] + [1])
    width, height = minutes * 10, 140
    bars: list[str] = []
    for i in range(minutes):
        slot = counts.get(start + i * 60.0, {})
        y = float(height)
        for state, color in colors:
            n = slot.get(state, 0)
            if not n:
                continue
            h = n / peak * (height - 10)
            y -= h
            bars.append(
                f'<rect x="{i * 10 + 1}" y="{y:.1f}" width="8" height="{h:.1f}" '
                f'fill="{color}"><title>{n} {state}</title></rect>'
            )
    return (
        f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="tasks finished per minute">'
        f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#d0d5dd"/>'
        + "".join(bars)
        + "</svg>"
        + f'<div class="muted">one bar a minute; the tallest is {peak}</div>'
    )


@attrs.define(eq=False)
class Dashboard:
    """The application state: the client it reads through, the auth, the
    event hub feeding every page's event stream."""

    client: Any
    auth: DashboardAuth
    hub: EventHub
    root: str = ""
    env: jinja2.Environment = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.globals.update(iso=_iso, ago=_ago, dumps=_dumps)

    # -- plumbing ----------------------------------------------------------

    def page(
        self,
        request: Request,
        template: str,
        principal: Principal,
        *,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        here = "/" + request.url.path.removeprefix(self.root).strip("/").split("/")[0]
        flash = request.query_params.get("flash")
        html = self.env.get_template(template).render(
            root=self.root,
            nav=NAV,
            here=here,
            title=context.pop("title", "Stem"),
            principal=principal,
            csrf=self.auth.csrf_token(principal),
            backend=self.client.backend.url,
            flash=flash,
            flash_error=request.query_params.get("error") == "1",
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def fragment(self, template: str, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(root=self.root, **context)
        return HTMLResponse(html)

    def back(
        self, request: Request, path: str, message: str, *, error: bool = False
    ) -> RedirectResponse:
        query = {"flash": message, **({"error": "1"} if error else {})}
        sep = "&" if "?" in path else "?"
        return RedirectResponse(
            f"{self.root}{path}{sep}{urlencode(query)}", status_code=303
        )

    def log_action(self, request: Request, principal: Principal, what: str) -> None:
        peer = request.client.host if request.client else "?"
        logger.info("dashboard action by %s from %s: %s", principal.who, peer, what)

    # -- pages ---------------------------------------------------------------

    async def overview_data(self) -> dict[str, Any]:
        at = now()
        start = math.floor((at - 3600) / 60) * 60 + 60
        counts: dict[float, dict[str, int]] = {}
        results = self.client.backend.results
        if isinstance(results, TaskQuery):
            counts = await results.finished_counts(since=start, bucket=60.0)
        totals = {"succeeded": 0, "failed": 0, "revoked": 0}
        for slot in counts.values():
            for state, n in slot.items():
                totals[state] = totals.get(state, 0) + n
        names = sorted(await self.client.backend.broker.queues())[:100]
        queues = [await self.client.queue_stats(q) for q in names]
        workers = await self.client.workers()
        return {
            "chart": chart_svg(counts, start, 60),
            "totals": totals,
            "queues": queues,
            "workers": workers,
        }

    async def overview(self, request: Request, who: Principal) -> Response:
        data = await self.overview_data()
        return self.page(request, "overview.html", who, title="Overview", **data)

    async def overview_fragment(self, request: Request, who: Principal) -> Response:
        data = await self.overview_data()
        return self.fragment("overview_body.html", ago=_ago, **data)

    def _task_filters(self, request: Request) -> dict[str, str | None]:
        q = request.query_params
        return {
            "state": q.get("state") or None,
            "queue": q.get("queue") or None,
            "name": q.get("name") or None,
        }

    async def _task_page(self, request: Request) -> dict[str, Any]:
        results = self.client.backend.results
        filters = self._task_filters(request)
        before = request.query_params.get("before") or None
        if not isinstance(results, TaskQuery):
            raise LookupError("this backend does not list tasks")  # noqa: TRY004
        if filters["state"] not in (None, *[s.value for s in TaskState]):
            filters["state"] = None
        try:
            page = await results.list_tasks(**filters, limit=PAGE, before=before)
        except ValueError:
            before = None
            page = await results.list_tasks(**filters, limit=PAGE)
        plain = {k: v for k, v in filters.items() if v}
        return {
            "page": page,
            "f": filters,
            "before": before,
            "states": [s.value for s in TaskState],
            "query": urlencode({**plain, **({"before": before} if before else {})}),
            "first_query": urlencode(plain),
            "next_query": urlencode({**plain, "before": page.next_before or ""}),
            "scan_bound": SCAN_BOUND,
        }

    async def tasks(self, request: Request, who: Principal) -> Response:
        data = await self._task_page(request)
        return self.page(request, "tasks.html", who, title="Tasks", **data)

    async def task_rows(self, request: Request, who: Principal) -> Response:
        data = await self._task_page(request)
        return self.fragment("task_rows.html", iso=_iso, ago=_ago, **data)

    async def task_search(self, request: Request, who: Principal) -> Response:
        task_id = request.query_params.get("id", "").strip()
        if not task_id:
            return self.back(request, "/tasks", "Give a task id to find.", error=True)
        return RedirectResponse(f"{self.root}/tasks/{_quote(task_id)}", status_code=303)

    async def task(self, request: Request, who: Principal) -> Response:
        task_id = request.path_params["task_id"]
        backend = self.client.backend
        result = await backend.results.get(task_id)
        dead = None
        queues = [result.queue] if result is not None and result.queue else []
        for queue in queues:
            dead = await backend.broker.get_dead(queue, task_id)
        meta = dict(result.meta) if result is not None else {}
        args = meta.pop("args", None)
        args_bytes = meta.pop("args_bytes", None)
        trace_id = meta.pop("trace_id", None)
        if dead is not None and dead.envelope is not None:
            if args is None:
                args = dead.envelope.args
            if trace_id is None:
                parent = dead.envelope.headers.get("traceparent", "").split("-")
                trace_id = parent[1] if len(parent) == 4 else None
        note = (
            f"Not kept: the arguments are {args_bytes} bytes of JSON (records "
            "keep them up to 1 KiB)."
            if args_bytes
            else "Not kept on this record."
        )
        return self.page(
            request,
            "task.html",
            who,
            title=f"Task {task_id}",
            task_id=task_id,
            result=result,
            dead=dead,
            args=args,
            args_note=note,
            trace_id=trace_id,
            extra_meta=sorted((k, _dumps(v)) for k, v in meta.items()),
        )

    async def dead(self, request: Request, who: Principal) -> Response:
        broker = self.client.backend.broker
        names = sorted(await broker.queues())[:200]
        queue = request.query_params.get("queue") or None
        if queue is None:
            for name in names:
                if (await broker.stats(name)).dead:
                    queue = name
                    break
            else:
                queue = names[0] if names else None
        offset = _int(request.query_params.get("offset"), 0)
        entries = (
            await broker.list_dead(queue, limit=PAGE, offset=offset) if queue else []
        )
        return self.page(
            request,
            "dead.html",
            who,
            title="Dead letters",
            queues=names,
            queue=queue,
            entries=entries,
            offset=offset,
            limit=PAGE,
        )

    async def dead_replay(self, request: Request, who: Principal) -> Response:
        form = await request.form()
        queue = str(form.get("queue", ""))
        task_id = str(form.get("task_id", ""))
        if not queue:
            return self.back(request, "/dead", "Name a queue.", error=True)
        # client.dead_letters resets the replayed tasks' records to QUEUED.
        letters = self.client.dead_letters(queue)
        if form.get("all") == "yes":
            ids = await letters.replay()
            what = f"replayed {len(ids)} dead letter(s) of {queue!r}"
        else:
            ids = await letters.replay([task_id])
            what = f"replayed {task_id!r} of {queue!r}" if ids else ""
        if not ids:
            return self.back(
                request, f"/dead?{urlencode({'queue': queue})}", "Nothing replayed.",
                error=True,
            )  # fmt: skip
        self.log_action(request, who, what)
        return self.back(
            request, f"/dead?{urlencode({'queue': queue})}", what.capitalize() + "."
        )

    async def dead_purge(self, request: Request, who: Principal) -> Response:
        form = await request.form()
        queue = str(form.get("queue", ""))
        target = f"/dead?{urlencode({'queue': queue})}"
        if form.get("confirm") != "yes":
            return self.back(request, target, "Tick 'I am sure' to purge.", error=True)
        count = await self.client.dead_letters(queue).purge()
        what = f"purged {count} dead letter(s) of {queue!r}"
        self.log_action(request, who, what)
        return self.back(request, target, what.capitalize() + ".")

    async def workflows(self, request: Request, who: Principal) -> Response:
        q = request.query_params
        status = q.get("status") or None
        statuses = sorted(WORKFLOW_ACTIVE | WORKFLOW_FINAL)
        if status not in (None, *statuses):
            status = None
        workflow = q.get("workflow") or None
        offset = _int(q.get("offset"), 0)
        runs = await self.client.backend.workflows.list_runs(
            workflow=workflow, status=status, limit=PAGE, offset=offset
        )
        base = {k: v for k, v in (("status", status), ("workflow", workflow)) if v}
        return self.page(
            request,
            "workflows.html",
            who,
            title="Workflows",
            runs=runs,
            run_status=status,
            statuses=statuses,
            workflow=workflow,
            offset=offset,
            limit=PAGE,
            prev_query=urlencode({**base, "offset": max(offset - PAGE, 0)}),
            next_query=urlencode({**base, "offset": offset + PAGE}),
        )

    async def workflow(self, request: Request, who: Principal) -> Response:
        run_id = request.path_params["run_id"]
        store = self.client.backend.workflows
        run = await store.get_run(run_id)
        waiting = []
        if run is not None:
            steps = await store.list_steps(run_id)
            run = attrs.evolve(run, history=tuple(steps[-500:]))
            waiting = [s for s in steps if s.kind == "event" and s.status == "pending"]
        return self.page(
            request,
            "workflow.html",
            who,
            title=f"Run {run_id}",
            run_id=run_id,
            run=run,
            waiting=waiting,
        )

    async def workflow_cancel(self, request: Request, who: Principal) -> Response:
        run_id = request.path_params["run_id"]
        ok = await self.client.workflows.cancel(run_id)
        if ok:
            self.log_action(request, who, f"cancel of workflow run {run_id!r}")
        message = "Cancel requested." if ok else "The run is unknown or already final."
        return self.back(request, f"/workflows/{_quote(run_id)}", message, error=not ok)

    async def schedules(self, request: Request, who: Principal) -> Response:
        at = now()
        entries = []
        for record in (await self.client.backend.schedules.list())[:500]:
            try:
                entry = ScheduleEntry.from_dict(
                    record.definition, enabled=record.enabled
                )
            except ValueError:
                entry = None
            upcoming = []
            if entry is not None and record.enabled:
                after = max(at, record.last_fire or at)
                upcoming = entry.fire_times(after, anchor=record.changed_at, count=1)
            entries.append(
                {
                    "name": record.name,
                    "schedule": entry.describe() if entry else "unreadable definition",
                    "task": entry.task.name if entry else None,
                    "enabled": record.enabled,
                    "next_fire": _iso(upcoming[0]) if upcoming else None,
                    "last_fire": _iso(record.last_fire) if record.last_fire else None,
                    "fire_count": record.fire_count,
                    "runnable": entry is not None,
                }
            )
        return self.page(
            request, "schedules.html", who, title="Schedules", entries=entries
        )

    async def schedule_action(self, request: Request, who: Principal) -> Response:
        name = request.path_params["name"]
        action = request.path_params["action"]
        if action not in ("enable", "disable", "run"):
            raise LookupError(f"no schedule action {action!r}")
        store = self.client.backend.schedules
        record = await store.get(name)
        if record is None:
            return self.back(
                request, "/schedules", f"No entry named {name!r}.", error=True
            )
        if action in ("enable", "disable"):
            await store.update(name, enabled=action == "enable")
            what = f"{action}d schedule {name!r}"
        else:
            entry = ScheduleEntry.from_dict(record.definition, enabled=record.enabled)
            env = self.client.build_envelope(
                entry.task.name,
                dict(entry.task.args or {}),
                meta={"schedule": name, "manual": True},
                **fire_options(entry.task.options or {}),
            )
            await self.client.publish([env])
            what = f"ran schedule {name!r} now (task {env.id})"
        self.log_action(request, who, what)
        return self.back(request, "/schedules", what.capitalize() + ".")

    async def workers(self, request: Request, who: Principal) -> Response:
        infos = await self.client.workers()
        answers: dict[str, Any] = {}
        if infos:
            with trio.move_on_after(2):
                for reply in await self.client.control.active(timeout=1.0):
                    answers[reply.worker_id] = reply
        workers = []
        for info in infos:
            reply = answers.get(info.worker_id)
            tasks = list(reply.data.get("tasks", [])) if reply and reply.ok else None
            paused = info.meta.get("paused") if isinstance(info.meta, dict) else None
            workers.append({"info": info, "tasks": tasks, "paused": paused or []})
        return self.page(request, "workers.html", who, title="Workers", workers=workers)

    async def worker_action(self, request: Request, who: Principal) -> Response:
        worker_id = request.path_params["worker_id"]
        action = request.path_params["action"]
        if action not in ("pause", "resume", "shutdown"):
            raise LookupError(f"no worker action {action!r}")
        control = self.client.control
        target = [worker_id]
        infos = {w.worker_id: w for w in await self.client.workers()}
        info = infos.get(worker_id)
        if info is None:
            return self.back(request, "/workers", "No such live worker.", error=True)
        replies = []
        if action in ("pause", "resume"):
            for queue in info.queues:
                call = control.pause if action == "pause" else control.resume
                replies += await call(queue, timeout=2.0, destination=target)
        else:
            replies = await control.shutdown("warm", timeout=2.0, destination=target)
        ok = any(r.ok for r in replies)
        what = f"{action} of worker {worker_id!r}"
        self.log_action(request, who, what + ("" if ok else " (no answer)"))
        message = f"{what.capitalize()}: {'done' if ok else 'no answer'}."
        return self.back(request, "/workers", message, error=not ok)

    # -- the event stream ----------------------------------------------------

    async def stream(self, request: Request, who: Principal) -> Response:
        receive = self.hub.subscribe()

        async def body() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                while True:
                    event: Event | None = None
                    with trio.move_on_after(15):
                        event = await receive.receive()
                    if event is None:
                        yield ": keep-alive\n\n"
                        continue
                    kind = "task" if event.signal.startswith("task_") else "worker"
                    line = feed_line(event, self.root)
                    yield f"event: {kind}\ndata: {event.signal}\n\n"
                    yield f"event: feed\ndata: {line}\n\n"
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            finally:
                receive.close()

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- login -----------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            token = str(form.get("token", ""))
        else:
            token = request.query_params.get("token", "")
        principal = self.auth.token_principal(token) if token else None
        if principal is None:
            message = "Wrong token." if token else "Sign in with the dashboard's token."
            return self.login_page(message, status=401 if token else 200)
        logger.info("dashboard sign-in: %s", principal.who)
        response = RedirectResponse(f"{self.root}/", status_code=303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", path=self.root or "/"
        )
        return response

    async def logout(self, request: Request, who: Principal) -> Response:
        response = RedirectResponse(f"{self.root}/login", status_code=303)
        response.delete_cookie(COOKIE, path=self.root or "/")
        return response

    def login_page(self, message: str, *, status: int) -> HTMLResponse:
        html = self.env.get_template("login.html").render(
            root=self.root, message=message, basic=self.auth.basic
        )
        headers = {"WWW-Authenticate": 'Basic realm="stem"'} if self.auth.basic else {}
        return HTMLResponse(html, status_code=status, headers=headers)

    # -- the guard -------------------------------------------------------------

    def guarded(
        self, handler: Callable[[Request, Principal], Awaitable[Response]], *, act: bool
    ) -> Handler:
        """``handler`` behind authentication; with ``act``, also the admin
        role, a same-origin request and the session's CSRF token."""

        async def guard(request: Request) -> Response:
            principal = self.auth.authenticate(request.headers, request.cookies)
            if principal is None:
                wants_html = "text/html" in request.headers.get("accept", "")
                if wants_html and request.method == "GET":
                    return self.login_page(
                        "Sign in with the dashboard's token.", status=401
                    )
                headers = (
                    {"WWW-Authenticate": 'Basic realm="stem"'}
                    if self.auth.basic
                    else {}
                )
                return PlainTextResponse(
                    "authentication required", status_code=401, headers=headers
                )
            if act:
                refused = await self._refuse_action(request, principal)
                if refused is not None:
                    return refused
            try:
                return await handler(request, principal)
            except LookupError as exc:
                return PlainTextResponse(str(exc), status_code=404)

        return guard

    async def _refuse_action(
        self, request: Request, principal: Principal
    ) -> Response | None:
        if not principal.can_act:
            logger.warning(
                "dashboard: %s (read-only) tried %s", principal.who, request.url.path
            )
            return PlainTextResponse("read-only access", status_code=403)
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            return PlainTextResponse("cross-origin request refused", status_code=403)
        given = request.headers.get("x-csrf-token")
        if given is None:
            form = await request.form()
            value = form.get("csrf")
            given = value if isinstance(value, str) else None
        if not self.auth.csrf_ok(principal, given):
            logger.warning("dashboard: bad CSRF token from %s", principal.who)
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        return None


def _int(text: str | None, default: int) -> int:
    try:
        return max(0, int(text)) if text is not None else default
    except ValueError:
        return default


def _quote(text: str) -> str:
    return quote(text, safe="")


def create_app(client: Any, auth: DashboardAuth, *, root: str = "") -> Starlette:
    """The dashboard over an open ``stem.Client``. Serve it inside the
    client's Trio run (see :func:`stem.dashboard.serve`); its lifespan runs
    the event hub that feeds every page's event stream."""
    hub = EventHub(client)
    dash = Dashboard(client=client, auth=auth, hub=hub, root=root.rstrip("/"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            yield
            nursery.cancel_scope.cancel()

    def page(fn: Any) -> Handler:
        return dash.guarded(fn, act=False)

    def action(fn: Any) -> Handler:
        return dash.guarded(fn, act=True)

    routes = [
        Route("/", page(dash.overview)),
        Route("/fragments/overview", page(dash.overview_fragment)),
        Route("/tasks", page(dash.tasks)),
        Route("/tasks/rows", page(dash.task_rows)),
        Route("/tasks/search", page(dash.task_search)),
        Route("/tasks/{task_id:path}", page(dash.task)),
        Route("/dead", page(dash.dead)),
        Route("/dead/replay", action(dash.dead_replay), methods=["POST"]),
        Route("/dead/purge", action(dash.dead_purge), methods=["POST"]),
        Route("/workflows", page(dash.workflows)),
        Route("/workflows/{run_id}", page(dash.workflow)),
        Route(
            "/workflows/{run_id}/cancel", action(dash.workflow_cancel), methods=["POST"]
        ),
        Route("/schedules", page(dash.schedules)),
        Route(
            "/schedules/{name}/{action:str}",
            action(dash.schedule_action),
            methods=["POST"],
        ),
        Route("/workers", page(dash.workers)),
        Route(
            "/workers/{worker_id}/{action:str}",
            action(dash.worker_action),
            methods=["POST"],
        ),
        Route("/events/stream", page(dash.stream)),
        Route("/login", dash.login, methods=["GET", "POST"]),
        Route("/logout", action(dash.logout), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
