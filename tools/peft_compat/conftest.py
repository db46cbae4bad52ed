"""pytest plugin for the PEFT compatibility run; `run.py` copies it next to PEFT's tests as `conftest.py`.

Installs the `peft` -> peftlab name shim before PEFT's test modules import `peft`, and talks to run.py through files:
  PEFT_COMPAT_MANIFEST  write one JSON line per collected test: nodeid, file, method (the PEFT method it tests)
  PEFT_COMPAT_SELECT    a file of node ids, one a line: deselect every other test
  PEFT_COMPAT_RESULTS   append one JSON line per test phase report: nodeid, when, outcome, message, text
"""
import json, os, re, sys
from pathlib import Path

sys.path.insert(0, os.environ.get("PEFT_COMPAT_TOOLS", str(Path(__file__).parent)))
import peft_shim  # noqa: E402

peft_shim.install()
peft_shim.DEFER_CALLS = True   # until collection ends: see peft_shim.DEFER_CALLS


def pytest_collection_finish(session):
    peft_shim.DEFER_CALLS = False

# The PEFT method a test exercises, from its parameters (config classes / instances / kwargs) or else its node id.
CONFIG_METHOD = {"LoraConfig": "LoRA", "AdaLoraConfig": "AdaLoRA", "IA3Config": "IA3", "LoHaConfig": "LoHa",
                 "LoKrConfig": "LoKr", "VeraConfig": "VeRA", "PromptTuningConfig": "prompt tuning",
                 "PrefixTuningConfig": "prefix tuning", "PromptEncoderConfig": "p-tuning",
                 "MultitaskPromptTuningConfig": "multitask prompt tuning", "TrainableTokensConfig": "trainable tokens"}
# on the node id, CamelCase split and lower-cased, words joined by "_"
NODEID_METHOD = [(r"(^|_)ro_ad(_|$)", "Road"), (r"(^|_)trainable_?tokens?(_|$)", "trainable tokens"),
                 (r"(^|_)ada_?lora", "AdaLoRA"), (r"(^|_)dora", "DoRA"), (r"(^|_)lora", "LoRA"), (r"(^|_)ia_?3", "IA3"),
                 (r"(^|_)loha", "LoHa"), (r"(^|_)lokr", "LoKr"), (r"(^|_)vera(_|$|config)", "VeRA"),
                 (r"(^|_)prefix", "prefix tuning"), (r"(^|_)(p_?tuning|prompt_?encoder)", "p-tuning"),
                 (r"(^|_)multitask", "multitask prompt tuning"), (r"(^|_)prompt", "prompt tuning")]
IMPLEMENTED_DIRS = {"lora", "adalora", "ia3", "loha", "lokr", "vera", "prompt_tuning", "prefix_tuning", "p_tuning",
                    "multitask_prompt_tuning", "trainable_tokens", "mixed"}


def _walk(v, depth=0):
    yield v
    if depth < 3:
        if isinstance(v, (list, tuple, set)):
            for x in v: yield from _walk(x, depth + 1)
        elif isinstance(v, dict):
            for k, x in v.items():
                yield k
                yield from _walk(x, depth + 1)


def _other_methods():
    d = peft_shim._src() / "tuners"
    return sorted((p.name for p in d.iterdir() if (p / "__init__.py").exists()), key=len, reverse=True)


def method_of(item):
    configs, dora, texts = [], False, []
    cs = getattr(item, "callspec", None)
    if cs is not None:
        for v in _walk(list(cs.params.values())):
            if isinstance(v, type) and v.__name__.endswith("Config"): configs.append(v.__name__)
            elif type(v).__name__.endswith("Config") and not isinstance(v, type):
                configs.append(type(v).__name__)
                dora = dora or bool(getattr(v, "use_dora", False))
            elif isinstance(v, dict) and v.get("use_dora"): dora = True
            elif isinstance(v, str): texts.append(v)
    configs = [c for c in configs if c not in ("PeftConfig", "PromptLearningConfig")]
    if configs:
        out = [c for c in configs if c not in CONFIG_METHOD]
        if out: return out[0][: -len("Config")]
        m = CONFIG_METHOD[configs[0]]
        if m == "LoRA" and (dora or any("dora" in t.lower() for t in texts)): return "DoRA"
        return m
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", item.nodeid.split("/")[-1]).lower()
    tokens = [t for t in re.split(r"[^a-z0-9]+", words) if t]
    starts = ["".join(tokens[i:]) for i in range(len(tokens))]   # the id from each word boundary on
    for name in _other_methods():   # a method peftlab does not implement, named in the test id
        if name in IMPLEMENTED_DIRS: continue
        key = name.replace("_", "")
        if (len(key) > 4 and any(x.startswith(key) for x in starts)) or key in tokens: return name
    joined = "_".join(tokens)
    for pat, m in NODEID_METHOD:
        if re.search(pat, joined): return m
    return "general"


def pytest_collection_modifyitems(session, config, items):
    man = os.environ.get("PEFT_COMPAT_MANIFEST")
    if man:
        with open(man, "w") as f:
            for it in items:
                f.write(json.dumps({"nodeid": it.nodeid, "file": it.nodeid.split("::")[0],
                                    "method": method_of(it)}) + "\n")
    sel = os.environ.get("PEFT_COMPAT_SELECT")
    if sel:
        keep = set(Path(sel).read_text().splitlines())
        chosen = [it for it in items if it.nodeid in keep]
        dropped = [it for it in items if it.nodeid not in keep]
        items[:] = chosen
        config.hook.pytest_deselected(items=dropped)


def pytest_runtest_logreport(report):
    out = os.environ.get("PEFT_COMPAT_RESULTS")
    if not out: return
    msg, text = "", ""
    if report.outcome != "passed":
        lr = report.longrepr
        if isinstance(lr, tuple): msg = str(lr[2])               # a skip: (file, line, reason)
        else:
            crash = getattr(lr, "reprcrash", None)
            msg = crash.message if crash is not None else str(lr).strip().splitlines()[-1:][0] if str(lr).strip() else ""
            text = str(lr)[-4000:]
    with open(out, "a") as f:
        f.write(json.dumps({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                            "message": msg[:2000], "text": text, "duration": round(report.duration, 3)}) + "\n")
