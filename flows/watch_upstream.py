"""Prefect flow `watch-upstream`: new releases of the pinned FlagOS and vendor packages on the
package index, proposed as matrix rows (`flagrelease watch`, and its scheduled deployment).

It reads the index, proposes a matrix patch that satisfies every compatibility rule (or names
the rule that blocks a release), and leaves the report as the `watch-upstream` artifact. With
`build`, the proposed cells run through `release-matrix` from the patched matrix (materialised
under FLAGRELEASE_HOME; matrix.yaml is not touched), pushing only after their gate passed.
With `apply`, the patch is written into the matrix file, after every proposed cell built and
passed when `build` is set too. A scheduled run never applies.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flagrelease.matrix import find_matrix, load_matrix
from flagrelease.schema import MatrixFile
from flagrelease.settings import Settings, load_settings
from flagrelease.steps import watch as watch_step
from flagrelease.steps.watch import BuiltCell, WatchReport
from flows.release_matrix import release_matrix


@task(name="watch", cache_policy=NO_CACHE)
def watch_task(matrix: MatrixFile, index: str, settings: Settings) -> WatchReport:
    return watch_step.watch(matrix, index, ca_bundle=settings.build.ca_bundle)


@flow(name="watch-upstream")
def watch_upstream(
    matrix: str | None = None,
    index: str | None = None,
    build: bool = False,
    apply: bool = False,
    registry: str | None = None,
    push: bool = True,
) -> WatchReport:
    """Watch the index for `matrix`: `watch_upstream(index="http://127.0.0.1:8080/simple/")`."""
    settings = load_settings(registry=registry)
    matrix_file = load_matrix(find_matrix(Path(matrix) if matrix else None))
    report = watch_task(matrix_file, index or matrix_file.watch.index, settings)
    if build and report.candidates:
        candidate = watch_step.candidate_matrix(matrix_file, report, settings.home)
        for row in report.candidates:
            for outcome in release_matrix(chip=row.chip, matrix=str(candidate), registry=registry, push=push):
                report.built.append(
                    BuiltCell(
                        cell=outcome.cell, status=outcome.status, exit_code=outcome.exit_code, error=outcome.error
                    )
                )
    if apply and report.candidates and not any(b.exit_code for b in report.built):
        watch_step.apply(report)
    create_markdown_artifact(
        key="watch-upstream", markdown=watch_step.markdown(report), description="FlagRelease watch"
    )
    return report
