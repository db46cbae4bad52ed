"""A real-browser test of the widgets: serve JupyterLab on 127.0.0.1, open a tutorial, run all its cells with
Playwright driving Debian's Chromium, check that a widget slider and a plot image rendered, move the slider once and
check the plot changed, and save a screenshot.

Usage: python tools/browser_test.py [--notebook nbs/tutorials/05_memory_planner.ipynb] [--out _out/browser]
Exit status: 0 passed, 1 failed, 77 skipped (no Chromium at --chromium; the reason is printed).
The notebook runs in quick mode (PEFTLAB_FULL unset). Everything is loopback: the server listens on 127.0.0.1 with a
random free port and a random token, and Chromium runs with background networking off.
"""
import argparse, json, os, secrets, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = 77
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDGET = ".peftlab-memory-planner"   # the class MemoryPlanner puts on its container

def log(msg): print(f"[browser_test {time.strftime('%H:%M:%S')}] {msg}", flush=True)

def free_port() -> int:
    "A port nothing listens on now, on the loopback interface."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def start_lab(root: Path, port: int, token: str, logfile):
    "Start JupyterLab (its own session / process group) serving `root`; it exposes `window.jupyterapp`."
    state = root.parent / "jupyter-state"
    settings = state / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"),
               IPYTHONDIR=str(state / "ipython"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.pop("PEFTLAB_FULL", None)      # quick mode
    env.pop("MPLBACKEND", None)        # the kernel uses the inline backend, as a user's would
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--expose-app-in-browser", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
           f"--LabApp.user_settings_dir={state / 'settings'}", f"--LabApp.workspaces_dir={state / 'workspaces'}"]
    if os.geteuid() == 0: cmd.append("--allow-root")   # CI containers run as root
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)

def wait_for_server(proc, port: int, token: str, timeout: float = 60):
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f"JupyterLab exited with status {proc.returncode} (see its log)")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer on 127.0.0.1:{port} within {timeout:.0f}s")

def stop(proc, timeout: float = 15):
    "Stop the server and its kernels: SIGTERM to its process group, SIGKILL if it lingers."
    if proc is None or proc.poll() is not None: return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try: os.killpg(proc.pid, sig)
        except ProcessLookupError: return
        try: proc.wait(wait); return
        except subprocess.TimeoutExpired: pass

# JavaScript run in the page; `window.jupyterapp` is there thanks to --expose-app-in-browser.
JS_NOTEBOOK_READY = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  return !!(w && w.content && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel
            && w.sessionContext.session.kernel.connectionStatus === 'connected'
            && ['idle'].includes(w.sessionContext.session.kernel.status)); }"""
JS_RUN_ALL = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }"
JS_PROGRESS = """() => { const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.model.toJSON().cells.filter(c => c.cell_type === 'code');
  const errors = [];
  for (const c of cells) for (const o of (c.outputs || [])) if (o.output_type === 'error')
    errors.push(o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n').replace(/\\u001b\\[[0-9;]*m/g, ''));
  return {n: cells.length, done: cells.filter(c => c.execution_count !== null).length, errors: errors,
          status: w.sessionContext.session.kernel.status}; }"""
JS_IMG = """(sel) => { const root = document.querySelector(sel); if (!root) return null;
  const im = [...root.querySelectorAll('img')].find(i => i.complete && i.naturalWidth > 100);
  return im ? {src: im.src.slice(0, 200) + ':' + im.src.length, w: im.naturalWidth, h: im.naturalHeight} : null; }"""

def run(notebook: Path, out: Path, chromium: str, budget: float, slider_label: str = "batch") -> int:
    from playwright.sync_api import sync_playwright
    t_start = time.time()
    deadline = lambda: max(1.0, budget - (time.time() - t_start))
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="peftlab-browser-"))
    root = tmp / "lab"; root.mkdir()
    shutil.copy(notebook, root / notebook.name)
    port, token = free_port(), secrets.token_hex(16)
    proc, logf = None, open(out / "jupyterlab.log", "w")
    try:
        log(f"serving {notebook.name} with JupyterLab on 127.0.0.1:{port}")
        proc = start_lab(root, port, token, logf)
        wait_for_server(proc, port, token, timeout=min(60, deadline()))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}", wait_until="domcontentloaded")
                page.wait_for_function(JS_NOTEBOOK_READY, timeout=min(60, deadline()) * 1000, polling=500)
                log("notebook open, kernel idle: running all cells")
                page.evaluate(JS_RUN_ALL)
                t0 = time.time(); prog = None
                while time.time() - t0 < deadline():
                    prog = page.evaluate(JS_PROGRESS)
                    if prog["errors"] or (prog["done"] == prog["n"] and prog["status"] == "idle"): break
                    time.sleep(1)
                else:
                    page.screenshot(path=str(out / "screenshot.png"))
                    raise TimeoutError(f"the notebook did not finish within the time budget: {prog}")
                if prog["errors"]:
                    page.screenshot(path=str(out / "screenshot.png"))
                    raise AssertionError("a cell raised:\n" + "\n\n".join(prog["errors"])[-4000:])
                log(f"all {prog['n']} code cells ran in {time.time() - t0:.1f}s")
                widget = page.locator(WIDGET).first
                widget.wait_for(state="visible", timeout=20_000)
                widget.scroll_into_view_if_needed()
                slider = widget.locator(".widget-slider", has_text=slider_label).first
                slider.wait_for(state="visible", timeout=20_000)
                page.wait_for_function(f"() => ({JS_IMG})('{WIDGET}') !== null", timeout=20_000, polling=250)
                before = page.evaluate(JS_IMG, WIDGET)
                readout = slider.locator(".widget-readout").first
                r0 = readout.inner_text() if readout.count() else None
                log(f"widget slider and plot rendered ({before['w']}x{before['h']} px image); moving the slider")
                handle = slider.locator(".noUi-handle").first
                handle.focus(); page.keyboard.press("ArrowRight")
                try:
                    page.wait_for_function(f"(s) => {{ const i = ({JS_IMG})('{WIDGET}'); return i && i.src !== s; }}",
                                           arg=before["src"], timeout=15_000, polling=100)
                except Exception:
                    log("the keyboard did not move the slider; clicking on its track instead")
                    box = slider.locator(".noUi-target").first.bounding_box()
                    page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
                    page.wait_for_function(f"(s) => {{ const i = ({JS_IMG})('{WIDGET}'); return i && i.src !== s; }}",
                                           arg=before["src"], timeout=15_000, polling=100)
                r1 = readout.inner_text() if readout.count() else None
                log(f"slider moved ({r0!r} -> {r1!r}) and the plot image changed")
                page.wait_for_timeout(300)
                widget.scroll_into_view_if_needed()
                page.screenshot(path=str(out / "screenshot.png"))
                widget.screenshot(path=str(out / "widget.png"))
                log(f"screenshots: {out / 'screenshot.png'}, {out / 'widget.png'}")
            finally:
                browser.close()
        log(f"PASSED in {time.time() - t_start:.0f}s")
        return 0
    finally:
        stop(proc); logf.close()
        shutil.rmtree(tmp, ignore_errors=True)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebook", default=str(ROOT / "nbs" / "tutorials" / "05_memory_planner.ipynb"))
    ap.add_argument("--out", default=str(ROOT / "_out" / "browser"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--budget", type=float, default=420, help="seconds for the whole test")
    ap.add_argument("--slider", default="batch", help="label of the slider to move")
    a = ap.parse_args()
    def interrupted(signum, frame): raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)     # e.g. `timeout`: still stop the server in `finally`
    if not (os.path.isfile(a.chromium) and os.access(a.chromium, os.X_OK)):
        print(f"SKIPPED browser test: no Chromium at {a.chromium} (install Debian's: apt-get install -y chromium)")
        return SKIP
    try: import playwright, jupyterlab  # noqa: F401
    except ImportError as e:
        print(f"FAILED browser test: {e.name} is missing; it is in the dev extra (pip install -e '.[dev]')"); return 1
    try: return run(Path(a.notebook).resolve(), Path(a.out).resolve(), a.chromium, a.budget, a.slider)
    except (Exception, KeyboardInterrupt) as e:
        print(f"FAILED browser test: {type(e).__name__}: {e}\n(JupyterLab's log: {Path(a.out) / 'jupyterlab.log'})")
        return 1

if __name__ == "__main__": sys.exit(main())
