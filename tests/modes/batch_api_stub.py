"""An offline stand-in for the OpenAI Batch API, shared by processes through a directory.

ondine's provider-batch backend builds its SDK client lazily in
``ProviderBatchBackend._ensure_client``; ondine's own tests replace the client there, and so do
these. State lives in files under ``state_dir`` so that a job submitted by one process can be
polled and collected by another (as with the real API). Every request succeeds with fixed usage,
except prompts containing ``FAIL``, which come back as per-request errors.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

PROMPT_TOKENS = 11
COMPLETION_TOKENS = 3
ANSWER = "positive"


class _Files:
    def __init__(self, state: Path) -> None:
        self._state = state

    def create(self, *, file: tuple[str, io.BytesIO, str], purpose: str) -> SimpleNamespace:
        file_id = f"file-in-{len(list(self._state.glob('file-in-*.jsonl')))}"
        (self._state / f"{file_id}.jsonl").write_bytes(file[1].getvalue())
        return SimpleNamespace(id=file_id, purpose=purpose)

    def content(self, file_id: str) -> SimpleNamespace:
        return SimpleNamespace(content=(self._state / f"{file_id}.jsonl").read_bytes())


class _Batches:
    def __init__(self, state: Path) -> None:
        self._state = state

    def create(self, *, input_file_id: str, **_: Any) -> SimpleNamespace:
        batch_id = f"batch_{len(list(self._state.glob('batch_*.json')))}"
        requests = [
            json.loads(line)
            for line in (self._state / f"{input_file_id}.jsonl").read_text().splitlines()
            if line.strip()
        ]
        results = [_result(request) for request in requests]
        output_id = f"file-out-{batch_id}"
        (self._state / f"{output_id}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in results)
        )
        failed = sum(1 for r in results if r["error"] is not None)
        (self._state / f"{batch_id}.json").write_text(
            json.dumps(
                {
                    "id": batch_id,
                    "status": "completed",
                    "output_file_id": output_id,
                    "total": len(results),
                    "completed": len(results) - failed,
                    "failed": failed,
                }
            )
        )
        return SimpleNamespace(id=batch_id, status="validating")

    def retrieve(self, batch_id: str) -> SimpleNamespace:
        saved = json.loads((self._state / f"{batch_id}.json").read_text())
        return SimpleNamespace(
            id=saved["id"],
            status=saved["status"],
            output_file_id=saved["output_file_id"],
            error_file_id=None,
            request_counts=SimpleNamespace(
                total=saved["total"], completed=saved["completed"], failed=saved["failed"]
            ),
        )


def _result(request: dict[str, Any]) -> dict[str, Any]:
    body = request["body"]
    prompt = " ".join(m["content"] for m in body["messages"])
    if "FAIL" in prompt:
        return {
            "custom_id": request["custom_id"],
            "response": None,
            "error": {"code": "invalid_request", "message": "refused by the stub"},
        }
    return {
        "custom_id": request["custom_id"],
        "response": {
            "status_code": 200,
            "body": {
                "model": body["model"],
                "choices": [{"message": {"role": "assistant", "content": ANSWER}}],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS},
            },
        },
        "error": None,
    }


class StubBatchClient:
    """The parts of ``openai.OpenAI`` that ondine's batch backend uses."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.files = _Files(state_dir)
        self.batches = _Batches(state_dir)


def install(state_dir: Path) -> None:
    """Make every ProviderBatchBackend in this process use the stub (ondine's boundary)."""
    from ondine.orchestration.backends.provider_batch import ProviderBatchBackend

    def ensure_client(self: Any) -> Any:
        if self._client is None:
            self._client = StubBatchClient(state_dir)
        return self._client

    ProviderBatchBackend._ensure_client = ensure_client  # type: ignore[method-assign]
