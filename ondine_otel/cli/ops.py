"""``ondine-otel ops export DIR``: write this version's dashboards, rules and configs.

The files match the metric names the installed ondine-otel emits; exporting them from the
package (rather than copying a repository's ``main``) keeps dashboards, alerts and the job on
the same version. Which files each selection writes is ``ondine_otel.ops.SELECTIONS``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ondine_otel.ops import SELECTIONS, ExistingFiles, export

_NEXT_STEPS = {
    "grafana": "Grafana: import {dir}/grafana/dashboards/*.json, or provision them with "
    "{dir}/grafana/provisioning/",
    "prometheus": "Prometheus: rule_files: [{dir}/deploy/prometheus/rules/*.yml]; test them "
    "with (cd {dir} && promtool test rules deploy/prometheus/tests/*.yml)",
    "alertmanager": "Alertmanager: deploy/alertmanager/alertmanager.yml (replace the webhook "
    "receivers with your own)",
    "collector": "Collector: deploy/otel-collector/config.yaml (tail sampling) and gateway.yaml",
    "tempo": "Tempo: deploy/tempo/tempo.yaml",
    "kubernetes": "Kubernetes: kubectl apply -k deploy/k8s",
}


def add_ops_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ops export`` on the ``ondine-otel`` command line."""
    ops = subparsers.add_parser(
        "ops",
        help="write the dashboards, alert rules and collector configs of this version",
        description="Work with the ops files shipped with this ondine-otel version.",
    )
    commands = ops.add_subparsers(title="commands", metavar="COMMAND")
    export_parser = commands.add_parser(
        "export",
        help="write the ops files into a directory",
        description=(
            "Write the Grafana dashboards and provisioning, the Prometheus recording and alert "
            "rules with their promtool tests and runbooks, the Alertmanager example and the "
            "Collector, Tempo and Kubernetes configs into DIR, at the paths they have in the "
            "ondine-otel repository. Without a selection, everything is written."
        ),
    )
    export_parser.add_argument("directory", type=Path, metavar="DIR")
    for name, paths in SELECTIONS.items():
        export_parser.add_argument(
            f"--{name}",
            dest="selected",
            action="append_const",
            const=name,
            help="write " + ", ".join(paths),
        )
    export_parser.add_argument(
        "--force", action="store_true", help="overwrite files that already exist"
    )
    export_parser.set_defaults(handler=_run_export)
    ops.set_defaults(handler=lambda _args: _usage(ops))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _run_export(args: argparse.Namespace) -> int:
    selected: list[str] = args.selected or list(SELECTIONS)
    directory: Path = args.directory
    try:
        written = export(directory, selected, overwrite=args.force)
    except ExistingFiles as error:
        print(f"ondine-otel ops export: {error}; pass --force to overwrite", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"ondine-otel ops export: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} files under {directory}:")
    for path in written:
        print(f"  {path.relative_to(directory).as_posix()}")
    print("next:")
    for name in selected:
        print("  " + _NEXT_STEPS[name].format(dir=directory))
    return 0
