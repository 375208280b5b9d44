"""The dashboard's JSON endpoints, its reading of run directories (half-written and corrupt history
lines, the read-only cache), its refusal of paths outside the run directories, the export and the
command line. The page in a real browser: test_dashboard_browser.py."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time

import numpy as np
import pytest

pytest.importorskip("plotly", reason="the dashboard needs plotly (pip install 'evoforge[dashboard]')")

from dashboard_runs import serve  # noqa: E402,F401  (the fixture)
from dashboard_runs import (L_ZDT, cache_rows, compress_like_run, expected_front, front_like_run, get_json,
                            nsga2_run, opl_run, raw_get)
from evoforge import pareto
from evoforge.dashboard import Dashboard, export_html


def _tree(d):
    return {p.relative_to(d): (p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*")}


def test_runs_and_detail_of_an_nsga2_run(tmp_path, serve):
    run = nsga2_run(tmp_path / "zdt1", generations=6)
    port = serve([run])
    runs = get_json(port, "/api/runs")["runs"]
    assert len(runs) == 1
    r = runs[0]
    hist = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert r["name"] == "zdt1" and r["kind"] == "NSGA2" and r["n_objectives"] == 2
    assert r["generations"] == 6 and r["evaluations"] == hist[-1]["evaluations"]
    assert r["state"] in ("running", "stopped")  # just written: within the stale window
    assert r["hypervolume"] is not None and r["hv_computed"]
    d = get_json(port, "/api/run/0")
    hv = d["series"]["hypervolume"]
    assert hv["generation"] == list(range(1, 7)) and hv["computed"]
    assert all(b >= a - 1e-12 for a, b in zip(hv["value"], hv["value"][1:]))  # the front only improves
    front = d["front"]
    assert set(front["ids"]) == expected_front(run) and front["total"] == len(front["ids"])
    ids, F, genomes = cache_rows(run)
    assert front["evaluated"] == len(ids) and len(front["cloud"][0]) == len(ids) - front["total"]
    # the computed hypervolume of the last generation: the front of every row, against the reference
    ref = np.array(d["hv_reference"])
    rank0 = F[pareto.nondominated_rank(F) == 0]
    assert hv["value"][-1] == pytest.approx(pareto.hypervolume(rank0[(rank0 < ref).all(axis=1)], ref))
    # one point's genome, as the cache holds it
    pid = front["ids"][0]
    g = get_json(port, f"/api/run/0/genome/{pid}")
    row = int(pid[1:])
    k = int(np.nonzero(ids == row)[0][0])
    assert g["genome"] == pytest.approx(genomes[k]) and len(g["bars"][0]["y"]) == L_ZDT
    assert [g["objectives"]["f1"], g["objectives"]["f2"]] == pytest.approx(F[k].tolist())
    assert raw_get(port, "/api/run/0/genome/r999999")[0] == 404
    assert raw_get(port, "/api/run/0/genome/x1")[0] == 404
    assert raw_get(port, "/api/run/7")[0] == 404


def test_recorded_hypervolume_is_used(tmp_path, serve):
    run = nsga2_run(tmp_path / "hv", generations=4, ref_point=[11.0, 11.0])
    port = serve([run])
    hv = get_json(port, "/api/run/0")["series"]["hypervolume"]
    recorded = [json.loads(x)["hypervolume"] for x in (run / "history.jsonl").read_text().splitlines()]
    assert hv["value"] == pytest.approx(recorded) and not hv["computed"]


def test_half_written_and_corrupt_history_lines(tmp_path, serve):
    run = nsga2_run(tmp_path / "r", generations=3)
    port = serve([run])
    assert get_json(port, "/api/runs")["runs"][0]["generations"] == 3
    lines = (run / "history.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    nxt = dict(last, generation=4)
    text = json.dumps(nxt)
    with open(run / "history.jsonl", "a") as f:  # a writer caught mid-line
        f.write(text[: len(text) // 2])
    r = get_json(port, "/api/runs")["runs"][0]
    assert r["generations"] == 3 and r["bad_lines"] == 0
    with open(run / "history.jsonl", "a") as f:
        f.write(text[len(text) // 2:] + "\n")
    assert get_json(port, "/api/runs")["runs"][0]["generations"] == 4
    with open(run / "history.jsonl", "ab") as f:  # garbage, then a good line
        f.write(b"{not json\n\xff\xfe\n[1, 2]\n" + json.dumps(dict(last, generation=5)).encode() + b"\n")
    r = get_json(port, "/api/runs")["runs"][0]
    assert r["generations"] == 5 and r["bad_lines"] == 3
    d = get_json(port, "/api/run/0")
    assert any("3 unreadable line" in n for n in d["notes"])
    assert d["series"]["generation"] == [1, 2, 3, 4, 5]
    # a resumed run rewrites the file: read again from the start
    tmp = run / "history.tmp"
    tmp.write_text("".join(x + "\n" for x in lines[:2]))
    os.replace(tmp, run / "history.jsonl")
    r = get_json(port, "/api/runs")["runs"][0]
    assert r["generations"] == 2 and r["bad_lines"] == 0


def test_reads_without_writing_or_blocking_a_writer(tmp_path, serve):
    run = nsga2_run(tmp_path / "ro", generations=3)
    before = _tree(run)
    port = serve([run])
    for path in ("/api/runs", "/api/run/0", "/", "/static/app.js"):
        assert raw_get(port, path)[0] == 200
    get_json(port, "/api/run/0/genome/" + get_json(port, "/api/run/0")["front"]["ids"][0])
    assert _tree(run) == before  # no file created (no -wal, no -shm), none changed
    for method in ("POST", "PUT", "DELETE"):
        assert raw_get(port, "/api/runs", method=method)[0] == 501
    # a writer holding the write lock blocks no read, and a read blocks no write
    from evoforge.cache import EvaluationCache

    cache = EvaluationCache(run)
    con = sqlite3.connect(run / "evaluations.sqlite", timeout=5)
    con.execute("BEGIN IMMEDIATE")
    con.execute("UPDATE meta SET value = value WHERE name = 'count'")
    t0 = time.perf_counter()
    assert raw_get(port, "/api/run/0")[0] == 200 and raw_get(port, "/api/runs")[0] == 200
    assert time.perf_counter() - t0 < 2.0
    con.execute("COMMIT")
    con.close()
    cache.put(b"k" * 16, np.array([0.0, 0.0]), genome=np.zeros(L_ZDT))  # a new dominating point
    cache.flush()
    d = get_json(port, "/api/run/0")
    assert d["front"]["total"] == 1
    cache.close()


@pytest.mark.parametrize("path", [
    "/run/0/file/../../../../etc/passwd", "/run/0/file/..%2f..%2f..%2fetc%2fpasswd",
    "/run/0/file/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/run/0/file/%2E%2E%2Fsecret.json",
    "/run/0/file//etc/passwd", "/run/0/file/%2Fetc%2Fpasswd", "/run/0/file/..\\secret.json",
    "/run/0/file/sub/../../secret.json", "/run/0/file/escape.json", "/run/0/file/escape_dir/secret.json",
    "/run/0/file/checkpoint.pkl", "/run/0/file/evaluations.sqlite", "/run/0/file/.%00/report.md",
    "/static/../python/evoforge/dashboard/runs.py", "/static/%2e%2e/runs.py", "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd", "/api/run/0/../../../etc/passwd",
])
def test_paths_outside_the_run_directories_are_refused(tmp_path, serve, path):
    run = nsga2_run(tmp_path / "run", generations=1)
    (run / "report.md").write_text("# ok\n")
    (tmp_path / "secret.json").write_text('{"secret": 1}')
    (run / "escape.json").symlink_to(tmp_path / "secret.json")
    (run / "escape_dir").symlink_to(tmp_path)
    port = serve([run])
    status, body = raw_get(port, path)
    assert status in (403, 404), (path, status)
    assert b"secret" not in body and b"root:" not in body
    assert raw_get(port, "/run/0/file/report.md") == (200, b"# ok\n")  # what is inside is served


def test_host_header_must_name_this_machine(tmp_path, serve):
    port = serve([nsga2_run(tmp_path / "r", generations=1)])
    assert raw_get(port, "/api/runs", host="evil.example:80")[0] == 403
    assert raw_get(port, "/api/runs", host=f"localhost:{port}")[0] == 200


def test_compression_runs_report_heatmap_and_front(tmp_path, serve):
    comp = compress_like_run(tmp_path / "sparsity")
    front = front_like_run(tmp_path / "front")
    port = serve([comp, front])
    runs = {r["name"]: r for r in get_json(port, "/api/runs")["runs"]}
    assert runs["sparsity"]["kind"] == "compress sparsity (OnePlusLambda)"
    assert runs["sparsity"]["state"] == "finished" and runs["front"]["state"] == "finished"
    assert runs["sparsity"]["best"] == pytest.approx(1 / 6) and runs["sparsity"]["hit_rate"] == pytest.approx(6 / 54)
    assert runs["front"]["objectives"] == ["kl", "bytes", "latency"] and runs["front"]["front_size"] == 7
    d = get_json(port, "/api/run/0")
    s = d["series"]
    assert s["best"] == pytest.approx([1 / g for g in range(1, 7)]) and s["spread_label"] == "median"
    assert len(s["stage_best"]) == 2
    h = d["heatmap"]
    assert h["labels"][0] == "model.layers.0.q_proj" and h["generation"] == list(range(1, 7))
    assert h["z"] == [[2, 3, 3, 2, 2, 1], [2] * 6, [2, 1, 1, 2, 2, 3]]  # carried between changes
    rows = {row[0]: row for row in d["report"]["rows"]}
    assert set(rows) == {"dense", "uniform", "owl", "evoforge"} and rows["evoforge"][1:] == [0.22, 11.5]
    f = get_json(port, "/api/run/1")["front"]
    assert f["ids"] == [f"p{i}" for i in range(7)] and f["uniform"]["ids"] == ["u0"]
    assert f["cols"][1] == [1000.0 - 100 * i for i in range(7)]
    g = get_json(port, "/api/run/1/genome/p2")
    assert [b["name"] for b in g["bars"]] == ["sparsity", "bits"] and g["labels"] == ["l0", "l1", "l2", "l3"]
    assert g["bars"][0]["y"] == [0.5, 0.0, 0.0, 0.5] and g["objectives"]["kl"] == pytest.approx(0.22)
    assert raw_get(port, "/api/run/1/genome/p7")[0] == 404
    # a final file written after the last generation changes the run's version, and so its views
    v = runs["sparsity"]["version"]
    (comp / "report.json").write_text(json.dumps(dict(json.loads((comp / "report.json").read_text()), kl_search=0.2)))
    r = get_json(port, "/api/runs")["runs"][0]
    assert r["version"] != v and get_json(port, "/api/run/0")["report"]["rows"][-1][1] == 0.2


def test_one_plus_lambda_history_draws_the_parent_over_generations(tmp_path, serve):
    run, engine = opl_run(tmp_path / "opl", generations=10)
    hist = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert "parent" in hist[0] and all(("parent" in h) == h["improved"] for h in hist[1:])
    assert all(len(h["stage_best"]) == 2 and "median_fitness" in h for h in hist)
    port = serve([run])
    d = get_json(port, "/api/run/0")
    assert d["kind"] == "OnePlusLambda" and d["front"] is None
    z = np.array(d["heatmap"]["z"])
    assert z.shape == (12, 10) and z[:, -1].tolist() == engine.best[0].tolist()
    assert d["series"]["best"] == [h["best_fitness"] for h in hist]


def test_state_of_stopped_and_stale_runs(tmp_path):
    run = nsga2_run(tmp_path / "r", generations=2)
    dash = Dashboard([run, compress_like_run(tmp_path / "c")], stale_after=0.5)
    dash.runs_json()
    later = time.time() + 5
    assert dash.runs[0].state(later)[0] == "stopped"
    (run / "evaluations.sqlite-wal").write_bytes(b"")  # as a killed writer leaves it
    assert dash.runs[0].state(later)[0] == "stale"
    (tmp_path / "c" / "report.json").unlink()
    dash.runs_json()
    assert dash.runs[1].state(later)[0] == "failed or stale"


def test_export_is_one_self_contained_file(tmp_path):
    a = nsga2_run(tmp_path / "a", generations=3)
    b = compress_like_run(tmp_path / "b")
    out = export_html([a, b], tmp_path / "report.html")
    html = out.read_text()
    tags = re.sub(r"<script>.*?</script>|<style>.*?</style>", "", html, flags=re.S)  # the page less its inlined code
    assert "<script" not in tags and "stylesheet" not in tags
    assert not re.search(r'(src|href)\s*=\s*["\']?(?!data:)[a-z]*:?//', tags)  # nothing fetched from elsewhere
    assert html.count("</script>") == 3 and "Plotly" in html
    boot = html.split("window.EVOFORGE_BOOT = ", 1)[1].split(";</script>", 1)[0]
    data = json.loads(boot.replace("<\\/", "</"))
    assert data["live"] is False and [r["name"] for r in data["runs"]] == ["a", "b"]
    assert set(data["genomes"]["0"]) == set(data["details"]["0"]["front"]["ids"])


def test_cli(tmp_path, capsys):
    from evoforge.cli import main

    run = nsga2_run(tmp_path / "a", generations=2)
    assert main(["dashboard", str(run), "--export", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 1_000_000  # plotly.js inlined
    capsys.readouterr()
    for argv in (["dashboard", str(tmp_path / "missing")], ["dashboard", str(run / "history.jsonl")],
                 ["dashboard", str(run), "--export", str(tmp_path)],
                 ["dashboard", str(run), "--export", str(tmp_path / "no" / "r.html")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("evoforge: error:"), err
    for argv in (["dashboard"], ["dashboard", str(run), "--port", "70000"], ["dashboard", str(run), "--port", "x"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
