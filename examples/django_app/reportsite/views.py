"""Enqueue a report, read it back: plain Django views over a blocking client."""

from __future__ import annotations

import re

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

import stem

from .stem_client import client

_MONTH = re.compile(r"\d{4}-\d{2}")


@csrf_exempt
@require_POST
def create_report(request: HttpRequest) -> JsonResponse:
    month = request.POST.get("month", "")
    rows = request.POST.get("rows", "10")
    if (
        not _MONTH.fullmatch(month)
        or not rows.isdigit()
        or not 1 <= int(rows) <= 10_000
    ):
        return JsonResponse(
            {"error": "month must be YYYY-MM and rows 1..10000"}, status=400
        )
    task_id = client.enqueue("reports.build", {"month": month, "rows": int(rows)})
    return JsonResponse({"task_id": task_id}, status=202)


@require_GET
def read_report(request: HttpRequest, task_id: str) -> JsonResponse:
    try:
        wait = min(max(float(request.GET.get("wait", "0")), 0.0), 30.0)
    except ValueError:
        return JsonResponse({"error": "wait must be a number of seconds"}, status=400)
    try:
        result = client.wait_for(task_id, timeout=wait) if wait else client.get(task_id)
    except stem.WaitTimeout:
        result = client.get(task_id)
    except ValueError as exc:  # a task id no task could have
        return JsonResponse({"error": str(exc)}, status=400)
    if result is None:
        return JsonResponse({"error": "no such task"}, status=404)
    progress = result.progress
    return JsonResponse(
        {
            "task_id": task_id,
            "state": result.state.value,
            "value": result.value,
            "error": None if result.error is None else result.error.message,
            "progress": None
            if progress is None
            else {
                "done": progress.done,
                "total": progress.total,
                "info": progress.info,
            },
        }
    )
