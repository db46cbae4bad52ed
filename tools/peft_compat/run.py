#!/usr/bin/env python
"""Run PEFT's own test suite against peftlab and write COMPAT.md.

  python tools/peft_compat/run.py                                  # test_config.py, every in-scope test
  python tools/peft_compat/run.py --files test_config.py test_custom_models.py --sample 400
  python tools/peft_compat/run.py --out COMPAT.md            (downloads the peft==0.21.2 sdist; --peft-src DIR reuses an unpacked one)

Steps: get PEFT's sdist (`pip download --no-deps --no-binary :all: peft==VERSION`, unless --peft-src is given), copy
its tests/ to a temp folder with conftest.py (the `peft` -> peftlab name shim, peft_shim.py), collect, keep the tests
for methods peftlab implements (IN_SCOPE, plus tests that name no method), optionally a seeded sample of N of them,
run them offline on CPU with pytest, classify every failure by its exception text and write the report.

Selection is deterministic: the in-scope node ids, sorted; `--sample N` takes random.Random(--seed).sample of that
sorted list, per file in proportion (at least one each), so the same PEFT version, files, N and seed always give
the same tests.
"""
import argparse, collections, datetime, json, os, random, re, shutil, subprocess, sys, tarfile, tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PEFT_VERSION = "0.21.2"
IN_SCOPE = ["LoRA", "DoRA", "AdaLoRA", "IA3", "LoHa", "LoKr", "VeRA", "prompt tuning", "prefix tuning", "p-tuning",
            "multitask prompt tuning", "trainable tokens", "general"]
DEFAULT_FILES = ["test_config.py"]
CAUSES = ["PEFT-internal name", "not implemented in peftlab", "hub/CUDA", "known difference", "behaviour"]
# behaviour failures where peftlab deliberately or necessarily differs: (node id regex, why). Each is listed in the
# report with the number of tests it matched; a failure only counts here when it is a behaviour failure.
KNOWN_DIFFERENCES = [
    (r"TestDynamicDispatch::test_target_layer_without_in_features_out_features",
     "the test subclasses `(nn.Module, lora.LoraLayer)`; peftlab's LoraLayer is itself an nn.Module, so that base "
     "order has no method resolution order (the peftlab spelling is `class MyLora(LoraLayer)`)"),
    (r"::test_(modules_to_save|trainable_token_indices)_targets_lora_layer_raises",
     "peftlab raises PEFT's sentence, but the test's regex spells PEFT's own class paths "
     "(`<class 'peft.utils.other.ModulesToSaveWrapper'>`), where peftlab names its classes"),
    (r"::test_mixed_adapter_batches_lora_with_dora_raises",
     "peftlab's mixed-adapter batches support DoRA adapters (each row equals that row run alone with its adapter: "
     "`check_method` in nbs/02b_dora); PEFT refuses them"),
    (r"::test_mixed_adapter_batches_partly_overlapping_target_layers\[LoRA",
     "a flaky test: its model is not seeded and it compares log-softmax outputs near 0 with rtol 1e-5, so rounding "
     "differences of 1e-6 fail it for some weights; PEFT itself fails it for 6 of 200 seeds"),
]


def cause_of(nodeid, msg, text=""):
    "classify(), with behaviour failures of the KNOWN_DIFFERENCES tests set apart."
    c = classify(msg, text)
    if c == "behaviour" and any(re.search(p, nodeid) for p, _ in KNOWN_DIFFERENCES): return "known difference"
    return c
# behaviour failures where peftlab does the right thing but says it in other words than PEFT (pytest.raises(match=),
# pytest.warns(match=), or an assert on the message text)
WORDING = re.compile(r"Regex pattern did not match|matching the regex|\.startswith\b|where False = .* in ", re.I)


def is_wording(msg, text):
    "A behaviour failure about message text: the crash message, or the `E ` lines pytest explains an assert with."
    return bool(WORDING.search(msg + "\n" + "\n".join(l for l in text.splitlines() if l.startswith("E "))))

HUB_CUDA = re.compile(r"offline|HF_HUB_OFFLINE|huggingface\.co|LocalEntryNotFound|OfflineModeIsEnabled|"
                      r"couldn't connect|cannot find the requested files|not a valid model identifier|"
                      r"Max retries exceeded|HTTPError|RepositoryNotFound|GatedRepo|\bCUDA\b|\bcuda\b|nccl|"
                      r"Torch not compiled with CUDA|No GPU", re.I)
MISSING_FEATURE = re.compile(r"got an unexpected keyword argument|has no attribute|NotImplementedError|"
                             r"^AttributeError: [A-Z][A-Z0-9_]*$|not supported|is not implemented|"
                             r"not yet implemented|unsupported|does not implement|cannot wrap", re.I)


# attributes of PEFT's own classes that its tests monkeypatch (PEFT's LoRA-variant dispatch inside its layer class)
PEFT_INTERNAL_ATTR = re.compile(r"does not have the attribute '(lora_variants|resolve_lora_variant)'")


def classify(msg, text=""):
    "The cause of a failure, from its exception text."
    if "not in peftlab [PEFT-internal name]" in msg or PEFT_INTERNAL_ATTR.search(msg): return "PEFT-internal name"
    if "not in peftlab [not implemented in peftlab]" in msg: return "not implemented in peftlab"
    if HUB_CUDA.search(msg): return "hub/CUDA"
    if "not in peftlab [PEFT-internal name]" in text: return "PEFT-internal name"
    if "not in peftlab [not implemented in peftlab]" in text: return "not implemented in peftlab"
    if MISSING_FEATURE.search(msg): return "not implemented in peftlab"
    return "behaviour"


def normalise(msg):
    "A failure message with its variable parts blurred, so equal failures group together."
    m = msg.strip().splitlines()[0] if msg.strip() else "(no message)"
    m = re.sub(r"0x[0-9a-f]+", "0x…", m)
    m = re.sub(r"/tmp/[^\s'\"]+", "/tmp/…", m)
    m = re.sub(r"\d+\.\d+(e[-+]?\d+)?", "N", m)
    m = re.sub(r"tensor\(.*", "tensor(…)", m)
    m = re.sub(r"\b(AdaLora|IA3|LoHa|LoKr|Lora|Vera|PromptTuning|PrefixTuning|PromptEncoder|MultitaskPromptTuning)"
               r"(Config|Model|Layer)\b", r"<X>\2", m)
    return m[:220]


def group_key(msg, nodeid):
    "normalise(msg); a bare assert (`assert False`, `AssertionError`, `assert 0 == 1`) also names its test function."
    k = normalise(msg)
    if k in ("AssertionError", "(no message)") or (k.startswith("assert ") and len(k) < 40):
        k += f" — in {nodeid.split('::')[-1].split('[')[0]}"
    return k


def get_peft_src(args, work):
    if args.peft_src: return Path(args.peft_src).resolve()
    dl = work / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    f"peft=={PEFT_VERSION}", "-d", str(dl)], check=True)
    tgz = next(dl.glob("peft-*.tar.gz"))
    with tarfile.open(tgz) as t: t.extractall(work, filter="data")
    return work / f"peft-{PEFT_VERSION}"


def env_for(peft_src, **extra):
    env = dict(os.environ, PEFT_COMPAT_TOOLS=str(HERE), PEFT_COMPAT_SRC=str(peft_src / "src" / "peft"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("PYTHONPATH", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def pytest_cmd(files, *more):
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN", "--no-header",
            "-W", "ignore::DeprecationWarning", *more, *[f"tests/{f}" for f in files]]


def select(manifest, sample, seed, full=()):
    "The in-scope node ids, sorted; with `sample`, a seeded sample of N from the files not in `full`."
    inscope = sorted(r["nodeid"] for r in manifest if r["method"] in IN_SCOPE)
    full = {f"tests/{f}" for f in full}
    chosen = [n for n in inscope if n.split("::")[0] in full]
    rest = [n for n in inscope if n.split("::")[0] not in full]
    if not sample or sample >= len(rest): return sorted(chosen + rest)
    inscope = rest
    byfile = collections.defaultdict(list)
    for n in inscope: byfile[n.split("::")[0]].append(n)
    rng = random.Random(seed)
    for f in sorted(byfile):
        k = max(1, round(sample * len(byfile[f]) / len(inscope)))
        chosen += rng.sample(byfile[f], min(k, len(byfile[f])))
    return sorted(chosen)


def outcomes(results_file):
    "nodeid -> (outcome, message, text) from the per-phase reports."
    per = {}
    if not results_file.exists(): return per
    for line in results_file.read_text().splitlines():
        r = json.loads(line)
        cur = per.get(r["nodeid"])
        if r["outcome"] == "failed" and (cur is None or cur[0] != "failed"):
            per[r["nodeid"]] = ("failed", r["message"], r["text"])
        elif r["outcome"] == "skipped" and cur is None: per[r["nodeid"]] = ("skipped", r["message"], "")
        elif r["outcome"] == "passed" and r["when"] == "call" and cur is None: per[r["nodeid"]] = ("passed", "", "")
    return per


def table(rows, keys):
    head = "| " + " | ".join(keys) + " |\n|" + "|".join("---" for _ in keys) + "|\n"
    return head + "".join("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |\n" for r in rows)


def write_report(out, args, cmdline, manifest, selected, res, collect_rc, run_rc, started, seconds, peft_src):
    meth = {r["nodeid"]: r["method"] for r in manifest}
    keys = ["run", "passed", "failed", "skipped", "not run"] + CAUSES
    def count(ids):
        c = collections.Counter()
        for n in ids:
            o = res.get(n)
            if o is None: c["not run"] += 1; continue
            c["run"] += 1
            c[o[0]] += 1
            if o[0] == "failed": c[cause_of(n, o[1], o[2])] += 1
        return c
    files = sorted({n.split("::")[0] for n in selected})
    lines = [f"# PEFT {PEFT_VERSION}'s own tests, run against peftlab\n",
             "Generated by `tools/peft_compat/run.py`; do not edit by hand. "
             "PEFT's test files are run unchanged; `tools/peft_compat/peft_shim.py` answers `import peft` with "
             "peftlab's objects (names only, no behaviour).\n",
             "## What was run\n",
             f"- date: {started:%Y-%m-%d %H:%M} UTC, {seconds/60:.0f} min wall time",
             f"- command: `{cmdline}`",
             f"- PEFT test files: {', '.join(args.files)} (from the peft=={PEFT_VERSION} sdist: `{peft_src.name}`)",
             f"- collected: {len(manifest)} tests; in scope (methods {', '.join(IN_SCOPE)}): "
             f"{sum(1 for r in manifest if r['method'] in IN_SCOPE)}",
             (f"- **a SAMPLE**: {len(selected)} tests: every in-scope test of {', '.join(args.full) or 'no file'}, and "
              f"`--sample {args.sample} --seed {args.seed}` of the other files' in-scope tests "
              f"(random.Random(seed).sample of the sorted in-scope node ids, per file in proportion). "
              f"These figures are NOT the full suite." if args.sample else
              f"- selection: every in-scope test ({len(selected)})"),
             f"- environment: CPU only (`CUDA_VISIBLE_DEVICES=`), offline (`HF_HUB_OFFLINE=1`), per-test timeout "
             f"{args.timeout}s, python {sys.version.split()[0]}; pytest exit codes: collect {collect_rc}, run {run_rc}",
             "- failure causes, from the exception text (`run.py: classify`): **PEFT-internal name** (the shim could "
             "not map a name internal to PEFT), **not implemented in peftlab** (a public PEFT name peftlab lacks, or "
             "a missing option/attribute: unexpected keyword, no attribute, NotImplementedError, not supported), "
             "**hub/CUDA** (needs the Hub or a GPU), **known difference** (a behaviour failure of a test listed, with "
             "its reason, under 'Known differences' below), **behaviour** (everything else: peftlab ran and differs).\n",
             "## Totals\n", table([dict(count(selected), scope="all selected")], ["scope"] + keys),
             "Of the behaviour failures, {} are about wording: an error or warning of the right kind whose text differs "
             "from PEFT's (`pytest.raises(match=)` / `pytest.warns(match=)` / an assert on the message).\n".format(sum(
                 1 for n in selected if (o := res.get(n)) and o[0] == "failed" and cause_of(n, o[1], o[2]) == "behaviour"
                 and is_wording(o[1], o[2]))),
             "## Per test file\n",
             table([dict(count([n for n in selected if n.split('::')[0] == f]), file=f) for f in files],
                   ["file"] + keys),
             "## Per method\n",
             table([dict(count([n for n in selected if meth[n] == m]), method=m) for m in IN_SCOPE
                    if any(meth[n] == m for n in selected)], ["method"] + keys)]
    out_of_scope = collections.Counter(r["method"] for r in manifest if r["method"] not in IN_SCOPE)
    lines += ["Not run (methods peftlab does not implement), collected tests per method: " +
              ", ".join(f"{m} {c}" for m, c in sorted(out_of_scope.items())) + ".\n"]
    lines += ["## Top failure messages per cause\n"]
    for cause in CAUSES:
        msgs = collections.Counter()
        example = {}
        for n in selected:
            o = res.get(n)
            if o and o[0] == "failed" and cause_of(n, o[1], o[2]) == cause:
                k = group_key(o[1], n); msgs[k] += 1; example.setdefault(k, n)
        if not msgs: continue
        lines.append(f"### {cause} ({sum(msgs.values())} failures, {len(msgs)} distinct messages)\n")
        lines.append(table([{"count": c, "message": "`" + m.replace("|", "\\|").replace("`", "'") + "`",
                             "example test": "`" + example[m].split("/")[-1] + "`"}
                            for m, c in msgs.most_common(args.top)], ["count", "message", "example test"]))
    lines += ["## Known differences\n", table([{"tests": "`" + p.replace("\\\\", "\\").replace("|", "\\|") + "`", "why": why,
        "failed here": sum(1 for n in selected if re.search(p, n) and (o := res.get(n)) and o[0] == "failed"
                           and cause_of(n, o[1], o[2]) == "known difference"),
        "passed here": sum(1 for n in selected if re.search(p, n) and (o := res.get(n)) and o[0] == "passed")}
        for p, why in KNOWN_DIFFERENCES], ["tests", "why", "failed here", "passed here"])]
    skips = collections.Counter(normalise(o[1]) for n in selected if (o := res.get(n)) and o[0] == "skipped")
    if skips:
        lines += ["## Skip reasons\n", table([{"count": c, "reason": "`" + m.replace("|", "\\|") + "`"}
                                              for m, c in skips.most_common(10)], ["count", "reason"])]
    out.write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="+", default=DEFAULT_FILES, help="PEFT test files (names in its tests/)")
    ap.add_argument("--sample", type=int, default=0, help="run a fixed, seeded sample of N in-scope tests")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full", nargs="*", default=[], help="of --files: run these entirely even with --sample")
    ap.add_argument("--peft-src", help="an unpacked peft sdist (default: pip download it)")
    ap.add_argument("--timeout", type=int, default=120, help="per-test timeout in seconds (pytest-timeout)")
    ap.add_argument("--top", type=int, default=12, help="failure messages listed per cause")
    ap.add_argument("--out", default=str(REPO / "COMPAT.md"))
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (printed)")
    ap.add_argument("--report-from", help="only rewrite the report from a folder a --keep run left")
    ap.add_argument("--passing", help="also write the node ids of the tests that passed to this file (one per line)")
    ap.add_argument("--expect", help="regression guard: select (with --sample N, a seeded sample) only among the node "
                                     "ids in this file, tests that passed before, and exit 1 if any of them does not pass")
    args = ap.parse_args()
    if args.report_from: return report_from(Path(args.report_from), args.out, args.top)
    started, t0 = datetime.datetime.now(datetime.timezone.utc), datetime.datetime.now().timestamp()
    argv = list(sys.argv[1:])          # the report shows a command anyone can run: no local --peft-src path
    for flag in ("--peft-src", "--keep-dir"):
        while flag in argv:
            i = argv.index(flag); del argv[i:i + 2]
    cmdline = "python tools/peft_compat/run.py " + " ".join(argv)
    work = Path(tempfile.mkdtemp(prefix="peft_compat_"))
    try:
        peft_src = get_peft_src(args, work)
        shutil.copytree(peft_src / "tests", work / "tests")
        (work / "tests" / "__init__.py").touch()
        shutil.copy(HERE / "conftest.py", work / "tests" / "conftest.py")
        (work / "pytest.ini").write_text("[pytest]\n")
        man_f, sel_f, res_f = work / "manifest.jsonl", work / "selected.txt", work / "results.jsonl"
        c = subprocess.run(pytest_cmd(args.files, "--collect-only"), cwd=work, capture_output=True, text=True,
                           env=env_for(peft_src, PEFT_COMPAT_MANIFEST=man_f))
        manifest = [json.loads(l) for l in man_f.read_text().splitlines()] if man_f.exists() else []
        if c.returncode not in (0, 5) or not manifest:
            print(c.stdout[-5000:], c.stderr[-3000:], file=sys.stderr)
        if args.expect:
            known = {m["nodeid"] for m in manifest}
            expected = sorted(set(Path(args.expect).read_text().splitlines()) & known)
            selected = random.Random(args.seed).sample(expected, min(args.sample, len(expected))) if args.sample else expected
        else: selected = select(manifest, args.sample, args.seed, args.full)
        sel_f.write_text("\n".join(selected) + "\n")
        print(f"peft_compat: {len(manifest)} collected, {len(selected)} selected; running in {work}", flush=True)
        timeout = ["--timeout", str(args.timeout)] if _has_timeout() else []
        r = subprocess.run(pytest_cmd(args.files, *timeout), cwd=work, env=env_for(
            peft_src, PEFT_COMPAT_SELECT=sel_f, PEFT_COMPAT_RESULTS=res_f), capture_output=True, text=True)
        print(r.stdout[-1500:], flush=True)
        res = outcomes(res_f)
        seconds = datetime.datetime.now().timestamp() - t0
        (work / "run.json").write_text(json.dumps({"args": vars(args), "cmdline": cmdline, "collect_rc": c.returncode,
                                                   "run_rc": r.returncode, "started": started.isoformat(),
                                                   "seconds": seconds, "peft_src": str(peft_src)}))
        write_report(Path(args.out), args, cmdline, manifest, selected, res, c.returncode, r.returncode, started,
                     seconds, peft_src)
        print(f"peft_compat: wrote {args.out}")
        if args.passing:
            Path(args.passing).write_text("".join(f"{n}\n" for n in sorted(n for n, o in res.items() if o[0] == "passed")))
        if args.expect:
            lost = [n for n in selected if res.get(n, ("not run",))[0] != "passed"]
            print(f"peft_compat: {len(selected) - len(lost)} of {len(selected)} tests that passed before pass now")
            for n in lost: print(f"  no longer passes ({res.get(n, ('not run', '', ''))[0]}): {n}  {res.get(n, ('', '', ''))[1][:200]}")
            if lost or not selected: return 1
    finally:
        if args.keep: print(f"peft_compat: kept {work}")
        else: shutil.rmtree(work, ignore_errors=True)


def report_from(work, out, top):
    "Rewrite the report from a kept work folder (run.json, manifest.jsonl, selected.txt, results.jsonl)."
    meta = json.loads((work / "run.json").read_text())
    args = argparse.Namespace(**meta["args"])
    args.top = top
    manifest = [json.loads(l) for l in (work / "manifest.jsonl").read_text().splitlines()]
    selected = [l for l in (work / "selected.txt").read_text().splitlines() if l]
    write_report(Path(out), args, meta["cmdline"], manifest, selected, outcomes(work / "results.jsonl"),
                 meta["collect_rc"], meta["run_rc"], datetime.datetime.fromisoformat(meta["started"]),
                 meta["seconds"], Path(meta["peft_src"]))
    print(f"peft_compat: wrote {out}")


def _has_timeout():
    try:
        import pytest_timeout  # noqa: F401
        return True
    except ImportError: return False


if __name__ == "__main__": sys.exit(main())
