"""One Batch-API command in a process of its own, as users run ondine's CLI hours apart.

    python -m tests.modes.batch_cli STATE SETTINGS_JSON submit [ROWS FAILING]
    python -m tests.modes.batch_cli STATE SETTINGS_JSON status|collect RUN_ID

The process is instrumented with `ondine_otel.instrument(**SETTINGS_JSON)`, the provider is the
offline stub (batch_api_stub.py, its state under STATE/api) and ondine's run registry lives in
STATE/ckpt. `submit` prints `RUN_ID <id>`; `status`/`collect` run ondine's own click commands.
`run()` starts one and returns its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ondine import PipelineBuilder

from tests.modes.offline import reviews

ROWS, FAILING = 12, (5,)
REPO = Path(__file__).resolve().parents[2]


def batch_builder(checkpoint_dir: Path, rows: int = ROWS, failing: tuple[int, ...] = FAILING
                  ) -> Any:  # fmt: skip
    """A provider-batch pipeline over `rows` reviews; those in `failing` fail at the provider."""
    return (
        PipelineBuilder.create()
        .from_dataframe(reviews(rows, failing), input_columns=["review"], output_columns=["s"])
        .with_prompt("Sentiment of: {review}")
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-test")
        .with_execution_mode("provider_batch")
        .with_checkpoint_dir(str(checkpoint_dir))
    )


def run(state: Path, settings: dict[str, Any], *args: str, **env: str) -> str:
    """Run one command in a fresh interpreter (OTEL_*/ONDINE_OTEL_* of this one left out)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ONDINE_OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "tests.modes.batch_cli", str(state), json.dumps(settings), *args],
        cwd=REPO,
        env={**clean, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_id_of(output: str) -> str:
    return next(x for x in output.splitlines() if x.startswith("RUN_ID ")).split()[1]


def main(argv: list[str]) -> None:
    from ondine.cli.main import cli
    from ondine.orchestration import RunRegistry

    import ondine_otel
    from tests.modes.batch_api_stub import install

    state, settings, command, *rest = argv
    install(Path(state) / "api")
    telemetry = ondine_otel.instrument(**json.loads(settings))
    registry_dir = Path(state) / "ckpt"
    try:
        if command == "submit":
            rows = int(rest[0]) if rest else ROWS
            failing = tuple(int(i) for i in rest[1].split(",") if i) if rest else FAILING
            pipeline = batch_builder(registry_dir, rows, failing).build()
            handle = pipeline.submit(registry=RunRegistry(registry_dir))
            print(f"RUN_ID {handle.run_id}", flush=True)
        elif command == "poll":  # by hand, as a user's own script polls: the provider's job id
            from ondine.core.specifications import LLMSpec
            from ondine.orchestration.backends.provider_batch import ProviderBatchBackend

            job_id = RunRegistry(registry_dir).get(rest[0]).provider_job_id
            ProviderBatchBackend(LLMSpec(provider="openai", model="gpt-4o-mini")).poll(job_id)
        else:
            cli([command, rest[0], "--checkpoint-dir", str(registry_dir)], standalone_mode=False)
    finally:
        telemetry.shutdown(timeout=5)


if __name__ == "__main__":
    main(sys.argv[1:])
