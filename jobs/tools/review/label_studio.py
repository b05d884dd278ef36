"""Label Studio over its REST API (urllib): push a review queue into a project, and read the
annotators' answers out of a project export (JSON).

The API key is sent in the Authorization header only; it never appears in a message, a log
or a file. A legacy token is sent as ``Token <key>``; a personal access token (a JWT) is first
exchanged for a short-lived access token (``/api/token/refresh/``), as the official SDK does.
"""
from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from jobs.tools.review.queue import LS_CHOICES, ReviewError, label_config

TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Answer:
    """One annotator's answer for one video, from a review file (Label Studio export or CSV)."""

    video_uri: str
    label: str
    reviewer: str | None
    reviewed_at: dt.datetime | None
    where: str  # where in the file, for messages: "task 12", "line 3"


class LabelStudio:
    def __init__(self, url: str, api_key: str):
        if not api_key:
            raise ReviewError("--to-label-studio needs the API key in LABEL_STUDIO_API_KEY")
        self.url = url.rstrip("/")
        self._auth = f"Token {api_key}"
        if api_key.count(".") == 2:  # a JWT: a personal access token (refresh token)
            access = self._call("POST", "/api/token/refresh/", {"refresh": api_key}, auth=False)["access"]
            self._auth = f"Bearer {access}"

    def _call(self, method: str, path: str, body=None, *, auth: bool = True):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        if auth:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise ReviewError(f"Label Studio {self.url}: {method} {path} answered {exc.code} {exc.reason}: "
                              f"{detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ReviewError(f"Label Studio {self.url}: {method} {path} failed ({exc})") from None

    def push(self, project: int, tasks: list[dict], class_names: list[str]) -> int:
        """Import ``tasks`` into ``project``, first giving it our labelling config if it has another
        one (the answers are read by its tag names); returns how many tasks Label Studio took."""
        config = label_config(class_names)
        current = self._call("GET", f"/api/projects/{project}")
        if (current.get("label_config") or "").strip() != config.strip():
            self._call("PATCH", f"/api/projects/{project}", {"label_config": config})
        answer = self._call("POST", f"/api/projects/{project}/import", tasks)
        return int(answer.get("task_count", len(tasks))) if isinstance(answer, dict) else len(tasks)


def read_label_studio_export(text: str, source: str) -> tuple[list[Answer], int]:
    """The answers in a Label Studio JSON export (a list of tasks) and how many tasks had none.

    A task's answer is its latest annotation that was not cancelled and has a choice in the
    ``label`` tag; the video is the task's ``data.video_uri`` (written by `stam-label review`).
    Anything else in the file's shape is a ReviewError naming the task.
    """
    try:
        tasks = json.loads(text)
    except ValueError as exc:
        raise ReviewError(f"{source}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list):
        raise ReviewError(f"{source}: not a Label Studio JSON export (expected a list of tasks, "
                          f"got {type(tasks).__name__})")
    answers, unanswered = [], 0
    for n, task in enumerate(tasks, 1):
        where = f"task {task.get('id', n) if isinstance(task, dict) else n}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ReviewError(f"{source}: {where} is not a Label Studio task (no 'data' object)")
        uri = task["data"].get("video_uri")
        if not isinstance(uri, str) or not uri:
            raise ReviewError(f"{source}: {where} has no data.video_uri (was it made by `stam-label review`?)")
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise ReviewError(f"{source}: {where}: 'annotations' is not a list")
        picked = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled") and _choice(a)]
        if not picked:
            unanswered += 1
            continue
        latest = max(picked, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
        answers.append(Answer(uri, _choice(latest), _reviewer(latest), _time(latest), where))
    return answers, unanswered


def _choice(annotation: dict) -> str | None:
    for result in annotation.get("result") or []:
        if isinstance(result, dict) and result.get("from_name") == LS_CHOICES:
            choices = (result.get("value") or {}).get("choices") or []
            if choices:
                return str(choices[0])
    return None


def _reviewer(annotation: dict) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return None if who is None else (str(who) if isinstance(who, str) else f"label-studio user {who}")


def _time(annotation: dict) -> dt.datetime | None:
    text = annotation.get("updated_at") or annotation.get("created_at")
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
