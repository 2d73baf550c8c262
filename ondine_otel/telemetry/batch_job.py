"""A Batch-API job as telemetry keeps it, in a sidecar file beside ondine's run registry.

`Pipeline.submit()` and `ondine status` / `ondine collect` run in different processes, hours
apart; ondine's run registry (SQLite) is what they share. What telemetry needs from the submit
in a later process (the submit span's traceparent for the Link, the pipeline label, provider,
model, requests, submit time, completion window, estimated cost, and the last state a process
saw) is kept in `<registry dir>/otel/<run_id>.json`, so ondine's schema and the `metrics` JSON
it shows users stay untouched. Never the LLM spec, keys or headers. Written atomically (a
temporary file renamed over the old one), so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The directory, beside ondine's `runs.db`, that holds one sidecar per job.
SIDECAR_DIR = "otel"
#: OpenAI's (and ondine's) completion window, in seconds: ondine always asks for "24h".
DEFAULT_COMPLETION_WINDOW_S = 24 * 3600.0
#: Rough characters per token, for the input estimate made before the provider counts.
CHARS_PER_TOKEN = 4.0
#: Registry statuses after which a job is no longer in flight.
TERMINAL_REGISTRY_STATUSES = frozenset({"succeeded", "failed", "partial"})


@dataclass
class BatchJob:
    """One job: who submitted it (labels, trace) and what the last process saw of it."""

    run_id: str
    provider_job_id: str = ""
    pipeline: str = ""
    provider: str = "unknown"
    model: str = "unknown"
    requests: int = 0
    submitted_at: float = 0.0
    completion_window_s: float = DEFAULT_COMPLETION_WINDOW_S
    estimated_cost_usd: float = 0.0
    traceparent: str | None = None
    status: str = "submitted_remote"
    completed: int = 0
    failed: int = 0
    checked_at: float = 0.0

    @property
    def deadline(self) -> float:
        """Unix time the provider's completion window ends."""
        return self.submitted_at + self.completion_window_s

    @property
    def in_flight(self) -> bool:
        return self.status not in TERMINAL_REGISTRY_STATUSES


def registry_dir(path: Path | str) -> Path:
    """The directory of a registry opened with `RunRegistry(path)`, resolved as ondine does
    (a directory, or a path without suffix, holds `runs.db`; anything else is the file)."""
    path = Path(path)
    if path.is_dir() or (not path.exists() and path.suffix == ""):
        return path
    return path.parent


def sidecar_path(directory: Path, run_id: str) -> Path:
    return directory / SIDECAR_DIR / f"{run_id}.json"


def save(directory: Path, job: BatchJob) -> None:
    """Write the job's sidecar atomically (temp file in the same directory, then rename)."""
    target = sidecar_path(directory, job.run_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{job.run_id}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(dataclasses.asdict(job), out)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def find(directory: Path, provider_job_id: str) -> BatchJob | None:
    """The sidecar of the job the provider knows as `provider_job_id`, if `directory` has one:
    a poll or collect by hand names the provider's id, not ondine's run id."""
    folder = directory / SIDECAR_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        job = load(directory, path.stem)
        if job is not None and job.provider_job_id == provider_job_id:
            return job
    return None


def load(directory: Path, run_id: str) -> BatchJob | None:
    """The job's sidecar, or None when there is none (submitted without telemetry)."""
    try:
        data: dict[str, Any] = json.loads(sidecar_path(directory, run_id).read_text())
    except FileNotFoundError:
        return None
    known = {f.name for f in dataclasses.fields(BatchJob)}
    return BatchJob(**{k: v for k, v in data.items() if k in known and v is not None})


def batch_prices(provider: str, model: str) -> tuple[float, float]:
    """USD per (input, output) token at the provider's Batch-API rates, from litellm's cost
    map; both supported providers bill batches at half the live price, which is the fallback
    when litellm has no batch rate for the model (0 when it knows nothing of it).

    litellm is imported here, not with ondine-otel: importing it changes warning filters and
    logging, and `import ondine_otel` must change nothing (a collect has imported it anyway)."""
    import litellm

    entry = litellm.model_cost.get(model) or litellm.model_cost.get(f"{provider}/{model}") or {}
    prices = []
    for kind in ("input", "output"):
        batch = entry.get(f"{kind}_cost_per_token_batches")
        live = entry.get(f"{kind}_cost_per_token")
        prices.append(float(batch) if batch is not None else float(live or 0.0) / 2)
    return prices[0], prices[1]


def estimated_cost(provider: str, model: str, prompt_chars: int) -> float:
    """Input-side estimate of a job before the provider counts its tokens: characters over
    `CHARS_PER_TOKEN`, at the batch input rate (output tokens are not known until collect)."""
    input_price, _ = batch_prices(provider, model)
    return prompt_chars / CHARS_PER_TOKEN * input_price


def final_status(provider_status: str | None, completed: int, failed: int) -> str:
    """A collected job's status label: the provider's end state, split by its requests."""
    status = (provider_status or "").lower()
    if status in ("expired", "cancelled", "canceled"):
        return "cancelled" if status.startswith("cancel") else "expired"
    if status == "failed" or (failed and not completed):
        return "failed"
    return "partial" if failed else "succeeded"
