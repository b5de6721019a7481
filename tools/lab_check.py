"""Open notebooks in a real JupyterLab (`make lab`'s server) in headless Chromium over the DevTools protocol and
report, per notebook, whether Lab marks it modified (jp-mod-dirty) once its kernel runs; a screenshot of each page
goes to /tmp/labcheck-<name>.png. A manual check (CI has no browser): needs Debian's chromium.

    WAIT=20 .venv/bin/python tools/lab_check.py notebooks/04_module3_shortlists.ipynb runs/<id>/notebooks/06_evaluate.ipynb
"""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request
import websocket
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from mufin_lib.lab import install_overrides, lab_command

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

install_overrides()
port, dport = free_port(), free_port()
lab = subprocess.Popen(lab_command(port, ["--no-browser", "--IdentityProvider.token=t", "--ServerApp.ip=127.0.0.1"]),
                       stdout=open("/tmp/labcheck-lab.log", "w"), stderr=subprocess.STDOUT)
prof = tempfile.mkdtemp()
chrome = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={prof}", f"--remote-debugging-port={dport}", "--remote-allow-origins=*", "--window-size=1400,900", "about:blank"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(60):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token=t", timeout=2); break
        except OSError:
            time.sleep(0.5)
    for _ in range(60):
        try:
            tabs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{dport}/json", timeout=2).read()); break
        except OSError:
            time.sleep(0.5)
    page = next(t for t in tabs if t["type"] == "page")
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
    n = [0]
    def cdp(method, **params):
        n[0] += 1; ws.send(json.dumps({"id": n[0], "method": method, "params": params}))
        while True:
            m = json.loads(ws.recv())
            if m.get("id") == n[0]: return m.get("result", {})
    def js(expr):
        return cdp("Runtime.evaluate", expression=expr, returnByValue=True).get("result", {}).get("value")
    for nb in sys.argv[1:]:
        cdp("Page.navigate", url=f"http://127.0.0.1:{port}/lab/tree/{nb}?token=t&reset")
        time.sleep(float(os.environ.get("WAIT", "25")))
        state = js("""JSON.stringify({tabs: [...document.querySelectorAll('.lm-TabBar-tab')].map(t => ({title: t.textContent.trim().slice(0, 40), dirty: t.classList.contains('jp-mod-dirty')})),
                    kernel: (document.querySelector('.jp-Notebook-ExecutionIndicator') || {}).title || null,
                    readonly: [...document.querySelectorAll('.jp-mod-readOnly, .jp-DocumentWidget [title*=read]')].length,
                    toasts: [...document.querySelectorAll('.Toastify__toast')].map(t => t.textContent.slice(0, 80))})""")
        print(nb, state)
        shot = cdp("Page.captureScreenshot", format="png")
        import base64
        open(f"/tmp/labcheck-{os.path.basename(nb)}.png", "wb").write(base64.b64decode(shot["data"]))
finally:
    chrome.terminate(); lab.terminate()
    chrome.wait(10); lab.wait(10)
