"""The main job of `make demo`: build the release pipeline, draw it, run it, draw the run.

Writes ``out/release.svg`` (the plan), ``out/release-run.svg`` (the same picture coloured by
the run), ``out/trace.csv`` (the execution trace) and prints the trace as a table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

import notebook_pipelines as nbp

OUT = Path(__file__).resolve().parents[1] / "out"


def work(seconds: float, message: str):
    """A step body that prints a line and takes ``seconds``."""

    def body(ctx: nbp.StepContext) -> dict:
        print(f"{ctx.id}: {message}")
        time.sleep(seconds)
        return {"took": seconds}

    body.__name__ = message.replace(" ", "_")
    return body


def build() -> nbp.Pipeline:
    p = nbp.Pipeline("release", variables={"env": "prod"})
    with p.stage("build") as build:
        build.step("checkout", run=work(0.05, "checking out"))
        with build.step_group("tests") as tests:
            with tests.parallel():
                tests.step("unit", run=work(0.20, "unit tests"))
                tests.step("lint", run=work(0.10, "linting"))
            with tests.parallel():
                tests.step("integration", run=work(0.15, "integration tests"))
                tests.step("e2e", run=work(0.25, "end-to-end tests"))
        build.step("package", run=work(0.05, "packaging"))
    with p.parallel():
        with p.stage("deploy_eu") as eu:
            eu.step("rollout", run=work(0.10, "rolling out to eu"))
        with p.stage("deploy_us") as us:
            us.step("rollout", run=work(0.12, "rolling out to us"))
    return p


def main() -> int:
    OUT.mkdir(exist_ok=True)
    p = build()
    picture = p.render()  # the plan; a picture saves itself as .svg, .png, .pdf or .dot
    print(picture.outline)
    picture.save(OUT / "release.svg")
    trace = p.run(run_id="demo")
    after = p.render(trace)  # the same picture coloured by the run
    after.save(OUT / "release-run.svg")
    trace.to_csv(OUT / "trace.csv", index=False)
    columns = [
        "stage",
        "step_group",
        "step",
        "kind",
        "block",
        "attempt",
        "status",
        "start_s",
        "duration_s",
        "worker",
    ]
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print()
        print(trace[columns].astype(object).fillna("").to_string(index=False))
    print()
    print(after.outline)
    for name in ("release.svg", "release-run.svg", "trace.csv"):
        print(f"wrote {OUT / name}")
    status = str(trace.loc[trace.kind == "pipeline", "status"].iloc[0])
    return 0 if status == "Success" else 1


if __name__ == "__main__":
    sys.exit(main())
