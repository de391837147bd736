"""Fetching a Harness run: :func:`fetch_harness_execution` (the execution API, saved, then loaded).

All HTTP goes through ``formats/http.get`` (an overall deadline, a bounded body); the API key is
sent only as ``x-api-key`` and redacted in every form from every message.

It stands on :mod:`.harness_json` (the answer checked before it is kept) and
:mod:`.harness_frame` (the saved file loaded as a trace).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HarnessExecutionError, excerpt
from .harness_frame import load_harness_execution
from .harness_json import MAX_BYTES, parse_execution_json, unwrap

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["BASE_URL", "fetch_harness_execution"]

#: where Harness SaaS answers (``base_url=`` for another cluster or a gateway path)
BASE_URL = "https://app.harness.io"
_PATH = "/pipeline/api/pipelines/execution/v2/{id}"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def fetch_harness_execution(
    plan_execution_id: str,
    *,
    account: str,
    org: str,
    project: str,
    api_key: str | None = None,
    base_url: str = BASE_URL,
    path: str | os.PathLike | None = None,
    timeout: float = 60.0,
) -> pd.DataFrame:
    """Fetch a run from Harness's API, save its JSON, and load it (:func:`load_harness_execution`).

    Calls ``GET {base_url}/pipeline/api/pipelines/execution/v2/{plan_execution_id}`` with
    ``renderFullBottomGraph=true`` (needs ``httpx``: ``pip install 'notebook-pipelines[harness]'``).

    Args:
        plan_execution_id: the run's id (in the execution's URL).
        account, org, project: the account, organization and project identifiers.
        api_key: a personal or service-account token; default: the ``HARNESS_API_KEY``
            environment variable. It is sent in the ``x-api-key`` header only: never printed,
            stored, or put in an error message.
        base_url: Harness's address.
        path: where to save the JSON (default ``harness-execution-<id>.json`` in the current
            directory, i.e. next to the notebook); the file holds the response only (with
            ``***`` where it echoed the key, in any letter case or encoding).
        timeout: seconds for the whole call (connecting, the headers and the whole body; a
            server that answers slowly cannot stretch it). The body is read as a stream and
            refused at 100 MB (after decompression). See ``formats/http.py``.

    Raises:
        HarnessExecutionError: no key (or a key that cannot be sent: non-ASCII), an HTTP error
            (status and Harness's message, the key redacted in any letter case or encoding), no
            complete answer within ``timeout``, an answer over 100 MB, one that is not JSON
            (nested too deeply, too many objects) or not an execution. No message shows the key
            or the ``user:password@`` of ``base_url``.
    """
    from . import http

    key = api_key or os.environ.get("HARNESS_API_KEY")
    if not key:
        raise HarnessExecutionError(
            "fetch_harness_execution(): no API key: pass api_key=… or set HARNESS_API_KEY"
        )
    if not isinstance(plan_execution_id, str) or not _SAFE_ID.match(plan_execution_id):
        raise HarnessExecutionError(
            f"fetch_harness_execution(): {excerpt(repr(plan_execution_id), 80)} is not a planExecutionId "
            "(letters, digits, '-' and '_')"
        )
    url = base_url.rstrip("/") + _PATH.format(id=plan_execution_id)
    params = {
        "accountIdentifier": account,
        "orgIdentifier": org,
        "projectIdentifier": project,
        "renderFullBottomGraph": "true",
    }
    what = "fetch_harness_execution()"
    try:
        response = http.get(
            url,
            params=params,
            headers={"x-api-key": key, "Accept": "application/json"},
            timeout=timeout,
            max_bytes=MAX_BYTES,
            secrets=[key],
            what=what,
        )
    except http.HttpTooLarge:
        raise HarnessExecutionError(
            f"{what}: the execution {plan_execution_id} is over {MAX_BYTES // 2**20} MB: refused "
            "(reading stopped there); fetch the run per stage (stageNodeId=…)"
        ) from None
    except http.HttpError as err:
        message = str(err)
        if "the x-api-key header" in message:
            message = message.replace("the x-api-key header", "the API key")
        raise HarnessExecutionError(message) from None
    body = response.body
    if response.status != 200:
        message = ""
        try:
            answer = http.load_json(body, "the answer", max_containers=10_000)
            message = str(answer.get("message") or "") if isinstance(answer, dict) else ""
        except ValueError:
            pass
        secrets = [key, *http.url_secrets(base_url)]
        message = excerpt(http.redact(message, secrets), 200)
        raise HarnessExecutionError(
            f"{what}: Harness answered {response.status} for {plan_execution_id}"
            + (f": {message}" if message else "")
            + (" (check the API key and its permissions)" if response.status in (401, 403) else "")
        )
    doc = parse_execution_json(body, f"the answer for {plan_execution_id}")
    unwrap(doc, f"the answer for {plan_execution_id}")  # refuse before saving
    doc, echoed = http.redact_values(doc, [key, *http.url_secrets(base_url)])  # a key the answer echoes
    target = Path(path) if path is not None else Path(f"harness-execution-{plan_execution_id}.json")
    target.write_bytes(json.dumps(doc).encode() if echoed else body)
    return load_harness_execution(doc)
