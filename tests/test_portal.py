"""The portal (`runctl ui`): its JSON API against a real server on a free loopback port,
server-sent events, safety (paths, token, escaping), and a real headless Chromium
(Debian's, tests/infra/up-browser.sh) watching a chart grow while its job runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import Project, require_service, wait_for

XSS = "<script>alert(1)</script>"


class Portal:
    def __init__(self, proj: Project, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "runctl", "ui", "--port", "0", *args], cwd=proj.root,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("http://127.0.0.1:"), (line, self.proc.stderr.read() if self.proc.poll() else "")
        self.url = line
        self.base = line.split("?")[0].rstrip("/")

    def get(self, path: str, **kw: Any) -> Any:
        import httpx

        return httpx.get(self.base + path, timeout=30, **kw)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=20)  # (closes its pipes)


@pytest.fixture
def portal(project: Project) -> Iterator[Any]:
    started: list[Portal] = []

    def start(*args: str) -> Portal:
        p = Portal(project, *args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def finished_run(project: Project, code: str, name: str = "job.yaml", **fields: Any) -> str:
    job = project.script_job(code, name=name, **fields)
    r = project.cli("submit", str(job), "-q", "--wait")
    assert r.out.strip(), r.err
    return r.out.strip()


def test_the_json_api(project: Project, portal: Any) -> None:
    good = finished_run(project, """
        from azureml.core import Run
        run = Run.get_context()
        for i in range(5):
            run.log("loss", 1.0 / (i + 1))
        run.log_row("sine", x=0.5, y=0.48)
        run.log_row("sine", x=0.1, y=0.1)
        import os, struct, zlib
        os.makedirs("outputs", exist_ok=True)
        open("outputs/model.txt", "w").write("weights")
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(b"\\x00\\x80")) + chunk(b"IEND", b""))
        open("dot.png", "wb").write(png)
        run.log_image("dot", path="dot.png")
        print("done")
        """, tags={"lr": "0.1", "evil": XSS})
    bad = finished_run(project, "raise SystemExit(3)\n", name="bad.yaml")
    p = portal()
    assert p.get("/api/experiments").json()[0]["name"] == "test"
    runs = p.get("/api/runs", params={"experiment": "test", "metrics": "loss"}).json()
    assert {r["id"]: r["status"] for r in runs} == {good: "Completed", bad: "Failed"}
    assert next(r for r in runs if r["id"] == good)["latest"]["loss"] == 0.2
    assert [r["id"] for r in p.get("/api/runs", params={"status": "Failed"}).json()] == [bad]
    assert [r["id"] for r in p.get("/api/runs", params={"tag": "lr:0.1"}).json()] == [good]
    assert [r["id"] for r in p.get("/api/runs", params={"sort": "number"}).json()] == [good, bad]
    assert p.get("/api/runs", params={"sort": "nonsense"}).status_code == 400
    run = p.get(f"/api/runs/{good}").json()
    assert run["tags"]["evil"] == XSS and run["portal_url"] == f"{p.base}/runs/{good}"
    assert {m["name"]: m["kind"] for m in run["metrics"]} == {"loss": "scalar", "sine": "row", "dot": "image"}
    [image] = run["images"]
    img = p.get(f"/api/runs/{good}/files/{image['path']}", params={"inline": "1"})
    assert img.status_code == 200 and img.content.startswith(b"\x89PNG") and "inline" in img.headers["content-disposition"]
    assert run["outputs"] == [{"path": "outputs/model.txt", "size": 7}]
    loss = p.get(f"/api/runs/{good}/metrics/loss").json()
    assert loss["y"] == [1.0, 0.5, 1 / 3, 0.25, 0.2] and loss["downsampled"] is False and loss["x"] == [0, 1, 2, 3, 4]
    by_time = p.get(f"/api/runs/{good}/metrics/loss", params={"x": "time"}).json()
    assert by_time["x_label"] == "time" and by_time["x"] == sorted(by_time["x"]) and by_time["x"][0] > 1.7e9
    assert p.get(f"/api/runs/{good}/metrics/loss", params={"x": "nonsense"}).status_code == 400
    assert p.get(f"/api/runs/{good}/metrics/sine").json()["columns"] == {"x": [0.5, 0.1], "y": [0.48, 0.1]}
    assert "done" in p.get(f"/api/runs/{good}/logs").json()["text"]
    r = p.get(f"/api/runs/{good}/files/outputs/model.txt")
    assert r.status_code == 200 and r.content == b"weights" and "attachment" in r.headers["content-disposition"]
    shown = json.loads(project.cli("show", good, "--json", check=True).out)
    assert shown["portal_url"] == f"{p.base}/runs/{good}", "the address of the portal that runs"
    assert p.get("/api/runs/nosuch").status_code == 404
    for page in ("/", f"/runs/{good}", "/experiments/test", f"/compare?runs={good},{bad}"):
        assert p.get(page).status_code == 200 and "uPlot.iife.min.js" in p.get(page).text
    assert p.get("/static/uPlot.iife.min.js").status_code == 200, "served from the package, no CDN"


def test_no_request_reads_outside_the_store(project: Project, portal: Any, home: Path, tmp_path: Path) -> None:
    rid = finished_run(project, "import os\nos.makedirs('outputs', exist_ok=True)\nopen('outputs/a.txt','w').write('a')\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    os.symlink(secret, home / "runs" / rid / "outputs" / "link.txt")  # as if a link had got into the store
    p = portal()
    for path in ("outputs/../../../secret.txt", "outputs/link.txt", "../store.db", "/etc/passwd", "code/x.py",
                 "outputs/%2e%2e/%2e%2e/x"):
        r = p.get(f"/api/runs/{rid}/files/{path}")
        assert r.status_code in (400, 404) and b"host secret" not in r.content, (path, r.status_code)
    assert p.get(f"/api/runs/{rid}/logs", params={"name": "outputs/link.txt"}).status_code == 400


def test_a_token_guards_the_portal_when_asked(project: Project, portal: Any) -> None:
    from runctl.web.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    p = portal("--token", "s3cret-token")
    assert p.url.endswith("?token=s3cret-token")
    assert p.get("/api/experiments").status_code == 401
    assert p.get("/api/experiments", params={"token": "wrong"}).status_code == 401
    r = p.get("/api/experiments", params={"token": "s3cret-token"})
    assert r.status_code == 200 and "runctl_token=" in r.headers["set-cookie"]
    assert p.get("/api/experiments", cookies={"runctl_token": "s3cret-token"}).status_code == 200


def test_a_million_values_are_downsampled_min_max_and_say_so(project: Project, portal: Any) -> None:
    rid = finished_run(project, """
        import math
        from azureml.core import Run
        run = Run.get_context()
        for i in range(1_000_000):
            run.log("wave", math.sin(i / 5000.0) + (5.0 if i == 777_777 else 0.0))
        """)
    p = portal()
    t0 = time.monotonic()
    m = p.get(f"/api/runs/{rid}/metrics/wave", params={"points": 1000}).json()
    took = time.monotonic() - t0
    assert m["total"] == 1_000_000 and m["downsampled"] is True and m["shown"] <= 1000
    assert "min and max" in m["method"]
    assert max(m["y"]) == pytest.approx(5.0 + __import__("math").sin(777_777 / 5000.0)), "the spike survives"
    assert min(m["y"]) == pytest.approx(-1.0, abs=1e-6)
    assert m["x"] == sorted(m["x"])
    print(f"1M-point series, downsampled to {m['shown']}: {took:.2f} s")  # (a figure, not an assertion)


def test_server_sent_events_follow_a_live_run(project: Project, portal: Any) -> None:
    import httpx

    p = portal()
    job = project.script_job("""
        import time
        from azureml.core import Run
        run = Run.get_context()
        print("portal", run.get_portal_url(), flush=True)
        for i in range(12):
            run.log("i", i)
            print("tick", i, flush=True)
            time.sleep(0.3)
        """)
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    seen: list[dict] = []
    with httpx.stream("GET", f"{p.base}/api/events", params={"runs": rid}, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:])[rid])
                if seen[-1]["status"] == "Completed" and seen[-1]["synced"]:
                    break
    seqs = [s["metrics_seq"] for s in seen]
    assert len(seen) >= 4 and seqs == sorted(seqs) and seqs[-1] > seqs[0], seen
    assert project.cli("metrics", rid, "--json", check=True).json()["i"] == list(range(12)), "synced by the portal"
    assert f"portal {p.base}/runs/{rid}" in project.cli("logs", rid, check=True).out, "the job knows the address"


def browser_ready() -> bool:
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


def test_a_browser_sees_the_chart_grow_the_log_tail_and_escaped_tags(project: Project, portal: Any,
                                                                     tmp_path: Path) -> None:
    require_service("headless Chromium", browser_ready(), "run tests/infra/up-browser.sh")
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service

    job = project.script_job("""
        import math, time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(60):
            run.log_row("sine", x=i / 10.0, y=math.sin(i / 10.0))
            if i == 40:
                print("late line after the page loaded", flush=True)
            time.sleep(0.25)
        """, tags={"evil": XSS})
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    p = portal()
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))  # type: ignore[arg-type]
    try:
        driver.set_window_size(1280, 1600)
        driver.get(f"{p.base}/runs/{rid}")

        def js(expr: str) -> Any:  # read the page in one step (it re-renders as the run changes)
            return driver.execute_script(f"return {expr};")

        def points() -> int:
            return int(js("(document.querySelector('.plot[data-points]') || {dataset: {}}).dataset.points || 0"))

        def text(element_id: str) -> str:
            return str(js(f"(document.getElementById('{element_id}') || {{}}).textContent || ''"))

        first = wait_for(lambda: points() or None, timeout_s=30, what="the chart to appear")
        assert "late line" not in text("log")
        wait_for(lambda: points() > first + 5, timeout_s=40, what="the chart to grow without a reload")
        wait_for(lambda: "late line after the page loaded" in text("log"), timeout_s=40,
                 what="the log tail to show a line printed after the page loaded")
        assert f"evil: {XSS}" in text("run-tags"), "the tag is shown as text"
        assert js("document.querySelectorAll('#run-tags script').length") == 0
        try:
            _ = driver.switch_to.alert
            pytest.fail("the tag's script ran")
        except NoAlertPresentException:
            pass
        wait_for(lambda: "Completed" in text("run-status"), timeout_s=60,
                 what="the status to turn Completed live")
        wait_for(lambda: points() == 60, timeout_s=15, what="the chart to show every row once the run ended")
        driver.save_screenshot(str(tmp_path / "run-page.png"))
        assert (tmp_path / "run-page.png").stat().st_size > 10_000
    finally:
        driver.quit()


def chrome(tmp_path: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))  # type: ignore[arg-type]


def test_a_browser_compares_runs_parameters_metrics_system_and_code(project: Project, portal: Any,
                                                                     tmp_path: Path) -> None:
    require_service("headless Chromium", browser_ready(), "run tests/infra/up-browser.sh")
    code = ("import sys, time\nfrom azureml.core import Run\nrun = Run.get_context()\nlr = float(sys.argv[2])\n"
            "for i in range(5):\n    run.log('loss', lr / (i + 1))\n    time.sleep(0.1)\nrun.log('accuracy', {acc})\n")
    project.write("train.py", code.format(acc=0.5))
    job = project.job(script="train.py", arguments=["--lr", "0.1"], tags={"variant": "a"}, system_metrics_interval_s=0.2)
    a = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    project.write("train.py", code.format(acc=0.8))
    job = project.job(script="train.py", arguments=["--lr", "0.01"], tags={"variant": "b <b>x</b>"},
                      system_metrics_interval_s=0.2)
    b = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    p = portal()
    api = p.get("/api/compare", params={"runs": f"{a},{b}"}).json()
    assert [r["final"]["accuracy"] for r in api["runs"]] == [0.5, 0.8]
    assert "system/cpu_percent" in api["system_metrics"] and "system/cpu_percent" not in api["metrics"]
    assert p.get("/api/diff", params={"a": a, "b": b}).json()["config"]["arguments"]["changed"][0]["key"] == "--lr"
    assert p.get("/api/compare", params={"runs": a}).status_code == 400
    driver = chrome(tmp_path)
    try:
        driver.set_window_size(1280, 2400)
        driver.get(f"{p.base}/compare?runs={a},{b}")

        def js(expr: str) -> Any:
            return driver.execute_script(f"return {expr};")

        def text(element_id: str) -> str:
            return str(js(f"(document.getElementById('{element_id}') || {{}}).textContent || ''"))

        wait_for(lambda: "+run.log('accuracy', 0.8)" in text("compare-diff"), timeout_s=30, what="the code diff")
        params = text("compare-params")
        assert "--lr 0.1" in params and "--lr 0.01" in params and "0.5" in params and "0.8" in params
        assert "b <b>x</b>" in params and js("document.querySelectorAll('#compare-params b').length") == 0
        wait_for(lambda: js("document.querySelectorAll('#compare-charts .plot[data-points]').length") >= 2,
                 timeout_s=30, what="the metric charts")
        wait_for(lambda: js("document.querySelectorAll('#compare-system .plot[data-points]').length") >= 2,
                 timeout_s=30, what="the system metrics charted")
        assert "--lr: 0.1 \u2192 0.01" in text("compare-diff")
        driver.save_screenshot(str(tmp_path / "compare.png"))
        assert (tmp_path / "compare.png").stat().st_size > 10_000
    finally:
        driver.quit()


def test_the_portal_keeps_to_its_origin(project: Project, portal: Any, home: Path) -> None:
    """DNS rebinding (a foreign Host header) is refused; a job's HTML is never served as a page
    of the portal's origin; bad numbers are 400s; ui.json is private; a long log_list is
    downsampled like a scalar series."""
    import stat

    rid = finished_run(project, """
        import os
        from azureml.core import Run
        run = Run.get_context()
        os.makedirs("outputs", exist_ok=True)
        open("outputs/page.html", "w").write("<script>fetch('/api/runs')</script>")
        run.log_list("long", list(range(1_000_000)))
        """)
    p = portal()
    port = p.base.rsplit(":", 1)[1]
    assert p.get("/api/runs", headers={"Host": f"evil.example:{port}"}).status_code == 421
    assert p.get("/", headers={"Host": "attacker.test"}).status_code == 421
    for ok_host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert p.get("/api/runs", headers={"Host": ok_host}).status_code == 200
    for inline in ("0", "1"):
        r = p.get(f"/api/runs/{rid}/files/outputs/page.html", params={"inline": inline})
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "sandbox"
    assert p.get(f"/api/runs/{rid}/files/outputs/page.html").headers["content-disposition"].startswith("attachment")
    for path, params in (("/api/runs", {"limit": "abc"}), (f"/api/runs/{rid}/metrics/long", {"points": "abc"}),
                         (f"/api/runs/{rid}/logs", {"offset": "1e99"})):
        r = p.get(path, params=params)
        assert r.status_code == 400 and "whole number" in r.json()["error"], (path, r.text)
    assert stat.S_IMODE((home / "ui.json").stat().st_mode) == 0o600
    m = p.get(f"/api/runs/{rid}/metrics/long", params={"points": 1000}).json()
    assert m["total"] == 1_000_000 and m["downsampled"] and m["shown"] <= 1000 and max(m["y"]) == 999_999


def test_a_browser_shows_a_tuning_runs_trials_best_first_and_their_chart(project: Project, portal: Any,
                                                                          tmp_path: Path) -> None:
    require_service("headless Chromium", browser_ready(), "run tests/infra/up-browser.sh")
    code = ("import argparse, time\nfrom azureml.core import Run\np = argparse.ArgumentParser()\n"
            "p.add_argument('--x', type=float)\na = p.parse_args()\nrun = Run.get_context()\n"
            "for i in range(4):\n    run.log('score', (1 - (a.x - 0.3) ** 2) * (i + 1) / 4)\n    time.sleep(0.4)\n")
    job = project.script_job(code, name="tune.yaml", hyperdrive={
        "sampling": "grid", "parameter_space": {"--x": {"choice": [0.1, 0.3, 0.9, 0.5]}},
        "primary_metric_name": "score", "primary_metric_goal": "maximize", "max_concurrent_runs": 2})
    parent = project.cli("submit", str(job), "-q", check=True, env={"RUNCTL_TUNING_POLL_S": "0.2"}).out.strip()
    p = portal()
    driver = chrome(tmp_path)
    try:
        driver.set_window_size(1280, 2000)
        driver.get(f"{p.base}/runs/{parent}")

        def js(expr: str) -> Any:
            return driver.execute_script(f"return {expr};")

        wait_for(lambda: js("document.querySelectorAll('#trials-table tr').length") == 5, timeout_s=60,
                 what="four trials in the table, live")
        wait_for(lambda: "Completed" in str(js("document.getElementById('run-status').textContent")), timeout_s=60,
                 what="the tuning run to complete, live")
        wait_for(lambda: js("document.getElementById('trials-chart').dataset.series") == "4", timeout_s=30,
                 what="a series per trial in the chart")
        first = str(js("document.querySelectorAll('#trials-table tr')[1].textContent"))
        assert f"{parent}_1" in first and "--x=0.3" in first, first  # the best first (x = 0.3)
        detail = p.get(f"/api/runs/{parent}").json()["tuning"]
        assert detail["best_run"]["id"] == f"{parent}_1" and [len(s["y"]) for s in detail["series"]] == [4] * 4
        driver.save_screenshot(str(tmp_path / "trials.png"))
        shutil.copy(tmp_path / "trials.png", "/tmp/trials.png") if os.environ.get("RUNCTL_KEEP_SCREENSHOTS") else None
        assert (tmp_path / "trials.png").stat().st_size > 10_000
    finally:
        driver.quit()
