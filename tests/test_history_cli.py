"""``notebook-pipelines history fetch …`` and ``history show`` (issue 26), against the local server."""

from __future__ import annotations

from test_history_fetch import SECRET, github_routes, server  # noqa: F401 - the fixture

from notebook_pipelines.frontends.cli import main


def fetch_github(url: str, cache: str, *more: str) -> list[str]:
    """``history fetch github o/r --workflow ci.yml`` against the server at ``url``, into ``cache``."""
    return ["history", "fetch", "github", "o/r", "--workflow", "ci.yml", *more,
            "--base-url", url, "--cache", cache]  # fmt: skip


def test_history_fetch_github_then_show(server, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    github_routes(server, [3, 2, 1])
    cache = str(tmp_path / "cache")
    code = main(fetch_github(server.url, cache, "--last", "2"))
    out, err = capsys.readouterr()
    assert code == 0, err
    # every run of the fixture takes 318 s (2 s to 320 s): p50 = p95 = 5m 18s; both runs succeeded
    assert out.splitlines() == [
        "source  pipeline    runs  first             last              p50     p95     success",
        "github  o/r/ci.yml  2     2026-01-02 10:00  2026-01-03 10:00  5m 18s  5m 18s  100%",
    ]
    assert "GitHub o/r/ci.yml: 2/2 runs fetched" in err and SECRET not in out + err
    assert main(["history", "show", cache]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("github  o/r/ci.yml  2 ")
    assert main(["history", "show", cache, "--source", "gitlab"]) == 0
    assert capsys.readouterr().out == "no runs\n"


def test_history_errors_exit_2_with_one_clear_line(server, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    server.routes[("GET", "/repos/o/r/actions/workflows/ci.yml/runs")] = lambda q, b: (401, {}, b"{}")
    code = main(fetch_github(server.url, str(tmp_path)))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: GitHub answered 401") and SECRET not in err
    assert main(["history", "show", str(tmp_path / "nothing")]) == 2
    assert "no history at" in capsys.readouterr().err


def test_history_usage_mistakes_exit_2(capsys):
    assert main(["history", "fetch", "github", "o/r"]) == 2  # --workflow is required
    assert "--workflow" in capsys.readouterr().err
