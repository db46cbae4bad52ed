"""Execute the tutorial notebooks headless and write executed .ipynb and .html files.

Usage: python tools/run_tutorials.py [--out DIR] [NAME ...]   (PEFTLAB_FULL=1 selects full size)
"""
import argparse, os, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="_out/tutorials")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ap.add_argument("names", nargs="*", help="tutorial names (default: all)")
    a = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    nbs = sorted((root / "nbs" / "tutorials").glob("*.ipynb"))
    if a.names: nbs = [p for p in nbs if any(n in p.stem for n in a.names)]
    failed = []
    for p in nbs:
        t0 = time.time(); print(f"running {p.name} (PEFTLAB_FULL={os.environ.get('PEFTLAB_FULL', '0')}) ...", flush=True)
        nb = nbformat.read(p, as_version=4)
        client = NotebookClient(nb, timeout=a.timeout, kernel_name="python3", resources={"metadata": {"path": str(p.parent)}})
        try: client.execute()
        except Exception as e:
            failed.append(p.name); print(f"  FAILED: {type(e).__name__}: {str(e)[-2000:]}", flush=True)
        nbformat.write(nb, out / p.name)
        body, _ = HTMLExporter().from_notebook_node(nb)
        (out / p.with_suffix(".html").name).write_text(body, encoding="utf-8")
        print(f"  wrote {out / p.name} and .html in {time.time() - t0:.0f}s", flush=True)
    print(f"{len(nbs) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)

if __name__ == "__main__": main()
