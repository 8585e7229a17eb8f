#!/usr/bin/env python3
"""Kill and signal campaign for `fthost run` (standard library only).

Runs a config once uninterrupted (the reference), then, per trial, runs it again and
interrupts it at random points -- SIGKILL, SIGTERM, SIGINT, or SIGTERM twice -- resumes
with `--resume` (interrupting some resumes too) until it completes, and compares the
result with the reference: the deterministic fields of every metrics.jsonl line, every
file under each stage's final/ (byte for byte; tensor by tensor when not), and
summary.json's statuses and deterministic stage fields. After every attempt it checks
the run directory's invariants (exit code, summary.json, leftover temporary names,
metrics.jsonl a prefix of the reference's). Usage: bench/kill_campaign.sh --help.
"""
import argparse
import ctypes
import glob
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALLER_CWD = os.environ.get("KILL_CAMPAIGN_CWD", os.getcwd())

# metrics.jsonl fields that measure time, not the computation: never compared.
TIMING_FIELDS = {"tokens_per_s", "seconds", "elapsed", "elapsed_s", "time", "wall_s"}
# summary.json stage fields that must equal the reference's (the rest are timings, RSS).
SUMMARY_FIELDS = ["status", "steps", "tokens", "train_examples", "eval_examples", "skipped_malformed",
                  "base_eval", "eval", "teacher_eval"]
SIGNALS = ["KILL", "TERM", "INT", "TERM2"]
EXPECTED_RC = {"TERM": 143, "INT": 130, "TERM2": 143}

_live = []  # Popen objects of running fthost processes (killed on the script's own Ctrl-C)


# ---- the default config: configs/quickstart.toml, short, checkpointing every 5 steps ----------

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if any(c in r for c in ".einf") else r + ".0"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def toml_dump(table, prefix=""):
    """A minimal TOML writer: scalars and arrays of scalars, tables, arrays of tables."""
    out = []
    scalars = {k: v for k, v in table.items()
               if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
    for k, v in scalars.items():
        out.append(f"{k} = {toml_value(v)}")
    for k, v in table.items():
        if k in scalars:
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += ["", f"[{name}]"] + toml_dump(v, name + ".")
        else:
            for item in v:
                out += ["", f"[[{name}]]"] + toml_dump(item, name + ".")
    return out


def default_config(path, threads):
    with open(os.path.join(ROOT, "configs", "quickstart.toml"), "rb") as f:
        cfg = tomllib.load(f)
    cfg["run"].update(name="kill-campaign", threads=threads, output_dir=os.path.join(os.path.dirname(path), "unused"))
    short = {"pretrain": dict(steps=40, warmup_steps=5, log_every=1, eval_every=20, checkpoint_every=5),
             "finetune": dict(steps=30, warmup_steps=3, log_every=1, eval_every=15, checkpoint_every=5)}
    for st in cfg["stage"]:
        st["train"].update(short[st["name"]])
        for key in ("train", "eval"):  # data paths work from any working directory
            if key in st.get("data", {}):
                st["data"][key] = os.path.join(ROOT, st["data"][key])
        if "eval" in st:
            st["eval"]["max_examples"] = 24
    text = ("# Written by bench/kill_campaign.py: configs/quickstart.toml with 40 + 30 steps,\n"
            "# a checkpoint every 5 steps, a metrics line every step and a 24-example graded eval.\n"
            + "\n".join(toml_dump(cfg)) + "\n")
    with open(path, "w") as f:
        f.write(text)


# ---- running fthost ---------------------------------------------------------------------------

class Attempt:
    def __init__(self):
        self.signal = None        # None (run to the end), or one of SIGNALS
        self.delay = None         # seconds after start the (first) signal is due ...
        self.on_dir = None        # ... or this many seconds after the run directory appears (fresh runs)
        self.gap = None           # TERM2: seconds between the two signals ...
        self.gap_on_ckpt = None   # ... or this many seconds after a checkpoint's temporary directory appears
        self.trigger = ""         # what actually triggered the signal(s), for the table
        self.sent = []            # what was actually delivered: ["TERM", "TERM"] ...
        self.resume = False
        self.rc = None            # Popen.returncode: negative = killed by that signal
        self.wall = 0.0
        self.timed_out = False
        self.resumed_from = ""    # "pretrain@35", "finetune@0" (restarted), "done", "-" (fresh run)
        self.at = ""              # the last metrics line's stage@step after the attempt
        self.status = ""          # summary.json's run status after the attempt
        self.temps = []           # leftover temporary names after the attempt
        self.problems = []        # invariant violations (strings)
        self.notes = []

    def label(self):
        return "-" if self.signal is None else f"{self.signal}@{self.trigger}"


def die_with_parent():
    """In the child before exec: SIGKILL when the campaign dies, even of SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def wait_until(p, pred, limit):
    """Polls pred() every 0.5 ms until it holds (True), p exits or limit seconds pass (False)."""
    end = time.monotonic() + limit
    while p.poll() is None and time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.0005)
    return False


def dir_started(run_dir):
    """The run directory, or the temporary sibling it is made in before its rename, exists."""
    parent, name = os.path.split(os.path.abspath(run_dir))
    return os.path.isdir(run_dir) or os.path.isdir(os.path.join(parent, ".tmp-" + name))


def checkpoint_temps(run_dir):
    return set(glob.glob(os.path.join(glob.escape(run_dir), "stages", "*", "checkpoints", ".tmp-step-*")))


def run_fthost(cmd, log_path, a, run_dir, timeout):
    """Starts fthost, delivers the attempt's signal(s) when due, waits (with a timeout)."""
    def send(signo, name):
        if p.poll() is not None:
            return False
        try:
            p.send_signal(signo)  # Popen checks the child was not reaped first
        except ProcessLookupError:
            return False
        a.sent.append(name)
        return True

    def sleep(seconds):
        try:
            p.wait(timeout=max(0.0, seconds))
        except subprocess.TimeoutExpired:
            pass

    fresh = not dir_started(run_dir)
    with open(log_path, "w") as log:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True,  # the script's Ctrl-C does not reach it
                             preexec_fn=die_with_parent)
        _live.append(p)
        try:
            if a.signal is not None:
                if a.on_dir is not None and fresh:
                    if wait_until(p, lambda: dir_started(run_dir), timeout):
                        sleep(a.on_dir)
                    a.trigger = f"dir+{a.on_dir:.3f}"
                else:
                    sleep(a.delay - (time.monotonic() - t0))
                    a.trigger = f"{a.delay:.2f}"
                first = signal.SIGKILL if a.signal == "KILL" else signal.SIGINT if a.signal == "INT" else signal.SIGTERM
                before = checkpoint_temps(run_dir)
                if send(first, "TERM" if a.signal == "TERM2" else a.signal) and a.signal == "TERM2":
                    if a.gap_on_ckpt is not None:
                        seen = wait_until(p, lambda: bool(checkpoint_temps(run_dir) - before), 5.0)
                        sleep(a.gap_on_ckpt)
                        a.trigger += f"+ckpt+{a.gap_on_ckpt:.3f}" if seen else "+ckpt(none seen)"
                    else:
                        sleep(a.gap)
                        a.trigger += f"+{a.gap:.2f}"
                    send(signal.SIGTERM, "TERM")
            try:
                p.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                a.timed_out = True
                p.kill()
                p.wait()
        finally:
            _live.remove(p)
        a.wall = time.monotonic() - t0
        a.rc = p.returncode


# ---- reading a run directory -------------------------------------------------------------------

def read_metrics(run_dir):
    """(lines as dicts, problems): a trailing partial line is reported, not parsed."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return [], []
    with open(path, "rb") as f:
        data = f.read()
    lines, problems = [], []
    parts = data.split(b"\n")
    if parts and parts[-1] != b"":
        problems.append(f"metrics.jsonl ends in a partial line ({len(parts[-1])} bytes)")
    for i, raw in enumerate(parts[:-1]):
        try:
            j = json.loads(raw)
            if not isinstance(j, dict):
                raise ValueError("not an object")
            lines.append(j)
        except ValueError as e:
            problems.append(f"metrics.jsonl line {i + 1} is not a JSON object ({e}): {raw[:80]!r}")
    return lines, problems


def deterministic(line, ignore):
    return {k: v for k, v in line.items() if k not in ignore}


def describe_line(line):
    kind = "eval" if any(k.startswith("eval/") for k in line) else "train"
    return f"{line.get('stage')}@{line.get('step')}({kind})"


def compare_metrics(ref, got, ignore, prefix_only):
    """None when equal (or, with prefix_only, a prefix of ref); else the first difference."""
    for i, (a, b) in enumerate(zip(ref, got)):
        da, db = deterministic(a, ignore), deterministic(b, ignore)
        if da != db:
            keys = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
            k = keys[0]
            return (f"line {i + 1} {describe_line(a)}: {k} = {db.get(k)!r}, reference {da.get(k)!r}"
                    + (f" (+{len(keys) - 1} more fields)" if len(keys) > 1 else ""))
    if len(got) > len(ref):
        return f"{len(got)} lines, reference {len(ref)} (first extra: {describe_line(got[len(ref)])})"
    if len(got) < len(ref) and not prefix_only:
        return f"{len(got)} lines, reference {len(ref)} (first missing: {describe_line(ref[len(got)])})"
    return None


def read_summary(run_dir):
    """(summary or None, problem or None)."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            return json.load(f), None
    except ValueError as e:
        return None, f"summary.json is not valid JSON: {e}"


def temp_entries(run_dir):
    """Temporary names (atomic_file: '.tmp-NAME-PID' files, '.tmp-DIR' / '.old-DIR' directories)
    and checkpoint directories without trainer_state.json, relative to the run directory."""
    found = []
    parent, name = os.path.split(os.path.abspath(run_dir))
    for sibling in (".tmp-" + name, ".old-" + name):  # a run directory made whole, then renamed
        if os.path.exists(os.path.join(parent, sibling)):
            found.append(os.path.join("..", sibling) + "/")
    if not os.path.isdir(run_dir):
        return found
    for dirpath, dirnames, filenames in os.walk(run_dir):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), run_dir)
            if name.startswith(".tmp-") or name.startswith(".old-"):
                found.append(rel + ("/" if name in dirnames else ""))
            elif (name in dirnames and os.path.basename(dirpath) == "checkpoints" and name.startswith("step-")
                  and not os.path.exists(os.path.join(dirpath, name, "trainer_state.json"))):
                found.append(rel + "/ (no trainer_state.json)")
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return sorted(found)


def final_files(run_dir):
    out = {}
    stages = os.path.join(run_dir, "stages")
    if not os.path.isdir(stages):
        return out
    for st in sorted(os.listdir(stages)):
        final = os.path.join(stages, st, "final")
        if not os.path.isdir(final):
            continue
        for dirpath, _, filenames in os.walk(final):
            for name in filenames:
                full = os.path.join(dirpath, name)
                out[os.path.relpath(full, run_dir)] = full
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safetensors_diff(a_path, b_path):
    """Why two safetensors files differ: header, names, or the first tensors that differ
    (with the largest absolute difference for F32)."""
    def load(p):
        with open(p, "rb") as f:
            data = f.read()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        header.pop("__metadata__", None)
        return header, data[8 + n:]
    try:
        ha, da = load(a_path)
        hb, db = load(b_path)
    except (ValueError, struct.error) as e:
        return f"unreadable safetensors ({e})"
    if set(ha) != set(hb):
        return (f"tensor names differ: only in the reference {sorted(set(ha) - set(hb))[:3]}, "
                f"only here {sorted(set(hb) - set(ha))[:3]}")
    diffs = []
    for name in sorted(ha):
        ta, tb = ha[name], hb[name]
        if ta["dtype"] != tb["dtype"] or ta["shape"] != tb["shape"]:
            diffs.append(f"{name}: {tb['dtype']}{tb['shape']} vs {ta['dtype']}{ta['shape']}")
            continue
        ba = da[ta["data_offsets"][0]:ta["data_offsets"][1]]
        bb = db[tb["data_offsets"][0]:tb["data_offsets"][1]]
        if ba == bb:
            continue
        if ta["dtype"] == "F32":
            fa = struct.unpack(f"<{len(ba) // 4}f", ba)
            fb = struct.unpack(f"<{len(bb) // 4}f", bb)
            m = max(abs(x - y) for x, y in zip(fa, fb) if not (math.isnan(x) and math.isnan(y)))
            diffs.append(f"{name}: max abs diff {m:.3g}")
        else:
            diffs.append(f"{name}: bytes differ")
    if not diffs:
        return "same tensors, different header bytes"
    return f"{len(diffs)} tensor(s) differ: " + "; ".join(diffs[:3])


def compare_final(ref_dir, got_dir):
    problems = []
    ref, got = final_files(ref_dir), final_files(got_dir)
    if not ref:
        problems.append("the reference has no final/ files")
    for rel in sorted(set(ref) - set(got)):
        problems.append(f"{rel} missing")
    for rel in sorted(set(got) - set(ref)):
        problems.append(f"{rel} not in the reference")
    for rel in sorted(set(ref) & set(got)):
        if sha256(ref[rel]) == sha256(got[rel]):
            continue
        if rel.endswith(".safetensors"):
            problems.append(f"{rel}: {safetensors_diff(ref[rel], got[rel])}")
            continue
        # Text files may name their own run directory (adapter_config.json's
        # base_model_name_or_path): equal once each run's path is replaced by one name.
        with open(ref[rel], "rb") as f:
            a = f.read().replace(os.path.abspath(ref_dir).encode(), b"<RUN_DIR>")
        with open(got[rel], "rb") as f:
            b = f.read().replace(os.path.abspath(got_dir).encode(), b"<RUN_DIR>")
        if a != b:
            problems.append(f"{rel}: bytes differ (beyond the run directory's path)")
    return problems, len(ref)


def compare_summary(ref, got):
    problems = []
    if got is None:
        return ["no summary.json"]
    if got.get("status") != "completed":
        problems.append(f"summary status {got.get('status')!r}")
    rs = {s["name"]: s for s in ref.get("stages", [])}
    gs = {s.get("name"): s for s in got.get("stages", [])}
    if list(rs) != list(gs):
        problems.append(f"summary stages {list(gs)}, reference {list(rs)}")
    for name, r in rs.items():
        g = gs.get(name)
        if g is None:
            continue
        for k in SUMMARY_FIELDS:
            if r.get(k) != g.get(k):
                problems.append(f"summary {name}.{k} = {g.get(k)!r}, reference {r.get(k)!r}")
    return problems


def snapshot(run_dir):
    """What an attempt that never got past start-up must leave unchanged."""
    if not os.path.isdir(run_dir):
        return None
    items = []
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            st = os.stat(full)
            items.append((os.path.relpath(full, run_dir), st.st_size, st.st_mtime_ns))
    return items


# ---- the invariants after one attempt ----------------------------------------------------------

def check_attempt(a, run_dir, log_text, before, temps_before, ref_metrics, ignore):
    """Classifies the attempt's end and records invariant violations in a.problems."""
    summary, bad_json = read_summary(run_dir)
    if bad_json:
        a.problems.append(bad_json)
    a.status = summary.get("status", "?") if summary else ("no-summary" if os.path.isdir(run_dir) else "no-dir")
    lines, mproblems = read_metrics(run_dir)
    a.at = describe_line(lines[-1]).split("(")[0] if lines else "-"
    a.temps = [t for t in temp_entries(run_dir) if t not in temps_before]  # this attempt's
    starts = [f"{m[1]}@{m[2] or 0}" for m in re.finditer(
        r"stage '([^']+)' (?:resumes from .*step-(\d+)|has no checkpoint to resume from)", log_text)]
    # done: every stage had completed already; ?: stopped before saying where it resumed
    a.resumed_from = "+".join(starts) if starts else "done" if a.rc == 0 else "?"

    rc = a.rc
    sent = a.sent
    graceful_exit = rc in (130, 143) and len(sent) == 1  # one signal, handled: the documented path
    crashed_by_kill = rc == -signal.SIGKILL
    early_death = rc in (-signal.SIGTERM, -signal.SIGINT)  # signalled before the handlers were installed

    if a.timed_out:
        a.problems.append(f"timed out after {a.wall:.0f} s (killed)")
    elif rc == 0:
        if a.status != "completed":
            a.problems.append(f"exit 0 but summary status {a.status!r}")
        if sent:
            a.notes.append("completed before/despite the signal")
    elif not sent:
        a.problems.append(f"exit {rc} without a signal")
    elif crashed_by_kill:
        if sent[0] != "KILL":
            a.problems.append(f"died of SIGKILL after {sent}")
    elif early_death:
        a.notes.append("killed by the default action (before the handlers were installed)")
        if snapshot(run_dir) != before:
            a.problems.append(f"killed by signal {-rc} (default action) after the run directory changed")
    elif rc in (130, 143):
        want = EXPECTED_RC["INT" if sent[0] == "INT" else "TERM"]
        if rc != want:
            a.problems.append(f"exit {rc} after {sent}, expected {want}")
        if a.signal == "KILL":
            a.problems.append(f"exit {rc} after SIGKILL")
    else:
        a.problems.append(f"exit {rc} after {'+'.join(sent)}" + (" (crashed by a signal)" if rc < 0 else ""))

    # summary.json: whole, and never "running" once the process could say otherwise.
    if summary is not None and not bad_json:
        if a.status == "failed":
            a.problems.append("summary status 'failed'")
        if graceful_exit or rc == 0:
            allowed = {"completed"} if rc == 0 else {"interrupted"}
            if a.status not in allowed:
                a.problems.append(f"summary status {a.status!r} after exit {rc}")
        elif rc == 143 and a.signal == "TERM2":
            if a.status not in ("running", "interrupted", "completed"):
                a.problems.append(f"summary status {a.status!r} after the second signal")
    elif graceful_exit or rc == 0:
        if summary is None and not bad_json:
            a.problems.append(f"no summary.json after exit {rc}")

    if graceful_exit and summary is not None:
        sig_name = "SIGINT" if sent[0] == "INT" else "SIGTERM"
        inter = [s for s in summary.get("stages", []) if s.get("status") == "interrupted"]
        if "continue with: fthost run" not in log_text:
            a.problems.append("no 'continue with' message")
        if inter:
            s = inter[-1]
            if s.get("signal") != sig_name:
                a.problems.append(f"stage {s.get('name')} records signal {s.get('signal')!r}, sent {sig_name}")
            if s.get("steps", 0) > 0:
                ck = s.get("checkpoint")
                state = os.path.join(ck or "", "trainer_state.json")
                if not ck or not os.path.exists(state):
                    a.problems.append(f"stage {s.get('name')} interrupted at step {s.get('steps')} "
                                      "without a checkpoint")
                else:
                    with open(state) as f:
                        step = json.load(f).get("step")
                    if step != s.get("steps"):
                        a.problems.append(f"checkpoint {os.path.basename(ck)} holds step {step}, "
                                          f"stage stopped at {s.get('steps')}")
        elif "interrupted before stage" not in log_text:
            a.problems.append("interrupted, but no stage is and no 'interrupted before stage' message")

    # Temporary names: none after an orderly exit; after SIGKILL or the second signal's
    # immediate exit the docs allow stale ".tmp-" names (atomic_file.hpp), reported.
    if a.temps and (graceful_exit or rc == 0):
        a.problems.append(f"temporary entries after exit {rc}: {', '.join(a.temps)}")

    # metrics.jsonl: whole lines (a partial last line only after SIGKILL / _exit), and at
    # every moment a prefix of the reference's.
    for p in mproblems:
        if p.startswith("metrics.jsonl ends in a partial line") and not (graceful_exit or rc == 0):
            a.notes.append(p)
        else:
            a.problems.append(p)
    diff = compare_metrics(ref_metrics, lines, ignore, prefix_only=True)
    if diff:
        a.problems.append(f"metrics.jsonl is not a prefix of the reference's: {diff}")


# ---- the campaign -----------------------------------------------------------------------------

def plan_trial(rng, ref_wall, startup, args):
    """1 to args.max_interrupts interruptions, each a dict of Attempt fields."""
    n = 1
    while n < args.max_interrupts and rng.random() < args.again:
        n += 1
    plan = []
    for i in range(n):
        sig = rng.choice(args.signals)
        span = ref_wall * (1.05 if i == 0 else 0.8)  # a resume has less left to run
        early = rng.random() < args.startup_fraction  # loading, the run directory, setup
        step = {"signal": sig, "delay": round(rng.uniform(0.0, startup if early else span), 3)}
        if i == 0 and rng.random() < args.dir_fraction:
            step["on_dir"] = round(rng.uniform(0.0, 0.015), 4)  # creating the run directory
        if sig == "TERM2":
            if rng.random() < args.ckpt_fraction:
                step["gap_on_ckpt"] = round(rng.uniform(0.0, 0.01), 4)  # while the stop's checkpoint is written
            else:
                step["gap"] = round(rng.uniform(0.005, args.max_gap), 3)
        plan.append(step)
    return plan


def run_trial(k, plan, args, cfg, ref, work):
    run_dir = os.path.join(work, f"trial-{k:03d}")
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = [f"run.output_dir={run_dir}"] + args.set
    base_cmd = [args.fthost, "run", cfg] + [x for s in sets for x in ("--set", s)]
    attempts, problems = [], []
    todo = list(plan)
    for n in range(args.max_attempts):
        a = Attempt()
        if todo:
            for key, value in todo.pop(0).items():
                setattr(a, key, value)
        resumable = os.path.isdir(run_dir) and os.listdir(run_dir)
        if resumable and not os.path.exists(os.path.join(run_dir, "summary.json")):
            # A directory without summary.json: `run` refuses it (not empty); does `--resume`?
            probe = Attempt()
            probe_log = os.path.join(work, f"trial-{k:03d}.attempt-{n + 1}.probe.log")
            run_fthost(base_cmd + ["--resume", run_dir], probe_log, probe, run_dir, args.timeout)
            if probe.rc != 0:
                with open(probe_log, errors="replace") as f:
                    why = (f.read().strip().splitlines() or [""])[-1]
                problems.append(f"attempt {n + 1}: run directory left unresumable "
                                f"({', '.join(sorted(os.listdir(run_dir)))}): --resume exits {probe.rc}: {why}")
                shutil.rmtree(run_dir)  # to go on with the trial
                resumable = False
        a.resume = bool(resumable)
        cmd = base_cmd + (["--resume", run_dir] if a.resume else [])
        before, temps_before = snapshot(run_dir), temp_entries(run_dir)
        log_path = os.path.join(work, f"trial-{k:03d}.attempt-{n + 1}.log")
        run_fthost(cmd, log_path, a, run_dir, args.timeout)
        with open(log_path, errors="replace") as f:
            log_text = f.read()
        check_attempt(a, run_dir, log_text, before, temps_before, ref["metrics"], args.ignore)
        attempts.append(a)
        problems += [f"attempt {n + 1} ({a.label()}, exit {a.rc}): {p}" for p in a.problems]
        if a.timed_out or a.rc == 0:
            break
    else:
        problems.append(f"not completed after {args.max_attempts} attempts")

    done = bool(attempts) and attempts[-1].rc == 0
    invariants_ok = not problems  # every attempt's checks, and the directory always resumable
    checks = {"metrics": None, "final": None, "summary": None, "stale": None}  # None: not compared (not done)
    if done:
        lines, mp = read_metrics(run_dir)
        d = compare_metrics(ref["metrics"], lines, args.ignore, prefix_only=False)
        checks["metrics"] = mp + ([f"metrics.jsonl: {d}"] if d else [])
        checks["final"] = compare_final(ref["dir"], run_dir)[0]
        summary, bad = read_summary(run_dir)
        checks["summary"] = [bad] if bad else compare_summary(ref["summary"], summary)
        stale = temp_entries(run_dir)
        checks["stale"] = [f"temporary entries left in the completed run: {', '.join(stale)}"] if stale else []
        for found in checks.values():
            problems += found
    return {"k": k, "plan": plan, "attempts": attempts, "problems": problems, "done": done, "checks": checks,
            "invariants_ok": invariants_ok, "run_dir": run_dir}


def timeline(run_dir, p, t0, deadline):
    """Start-up milestones of an uninterrupted run, polled while it runs (killed at the deadline)."""
    seen = {}
    last_stage = None
    while p.poll() is None:
        now = time.monotonic() - t0
        if now > deadline:
            p.kill()
            p.wait()
            fail_setup(f"the uninterrupted run {run_dir} ran past {deadline:.0f} s (--timeout)")
        if "run dir" not in seen and dir_started(run_dir):
            seen["run dir"] = now
        if "summary.json" not in seen and os.path.exists(os.path.join(run_dir, "summary.json")):
            seen["summary.json"] = now
        try:
            with open(os.path.join(run_dir, "metrics.jsonl")) as f:
                lines = f.read().splitlines()
            if lines:
                st = json.loads(lines[-1]).get("stage")
                if st != last_stage:
                    seen[f"first {st} line"] = now
                    last_stage = st
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    return seen


def build_fingerprint(fthost):
    """sha256 over fthost, the libraries beside it and its plugin folder: a rebuild in the
    middle of a campaign would compare another build with the reference."""
    build = os.path.dirname(fthost)
    files = [fthost] + sorted(glob.glob(os.path.join(glob.escape(build), "*.so")) +
                              glob.glob(os.path.join(glob.escape(build), "plugins", "*.so")))
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(f.encode() + sha256(f).encode())
        except OSError:
            h.update(f.encode() + b"?")
    return h.hexdigest()


def fail_setup(msg):
    print(f"kill_campaign: {msg}", file=sys.stderr)
    sys.exit(2)


def reference_run(args, cfg, work, name):
    """One uninterrupted run (with its start-up timeline)."""
    run_dir = os.path.join(work, name)
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [args.fthost, "run", cfg] + [x for s in [f"run.output_dir={run_dir}"] + args.set for x in ("--set", s)]
    log_path = os.path.join(work, name + ".log")
    with open(log_path, "w") as log:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=die_with_parent)
        _live.append(p)
        try:
            seen = timeline(run_dir, p, t0, args.timeout or 1800.0)
            p.wait()
        finally:
            _live.remove(p)
        wall = time.monotonic() - t0
    if p.returncode != 0:
        with open(log_path, errors="replace") as f:
            sys.stderr.write(f.read()[-3000:])
        fail_setup(f"the uninterrupted run {run_dir} failed (exit {p.returncode})")
    metrics, mp = read_metrics(run_dir)
    summary, bad = read_summary(run_dir)
    if mp or bad or not summary or summary.get("status") != "completed" or temp_entries(run_dir):
        fail_setup(f"the uninterrupted run directory {run_dir} is not sound: {mp} {bad} {temp_entries(run_dir)}")
    return {"dir": run_dir, "metrics": metrics, "summary": summary, "wall": wall, "timeline": seen}


def attempt_text(a):
    where = f"[{a.at} {a.status}]" if a.signal and a.rc != 0 else ""
    return f"{a.label()}:{a.rc}{where}" + ("(timeout)" if a.timed_out else "")


PROBLEM_KINDS = [  # (kind, pattern) for the failure tally; the first match names a problem
    ("run directory left unresumable", r"left unresumable"),
    ("temporary entries left in a completed run", r"temporary entries left in the completed run"),
    ("metrics.jsonl differs", r"metrics\.jsonl"),
    ("final/ differs", r"/final/|final/ files"),
    ("summary.json", r"summary"),
    ("exit code", r"exit|died|killed"),
    ("timeout", r"timed out|not completed"),
]


def problem_kind(p):
    return next((k for k, pat in PROBLEM_KINDS if re.search(pat, p)), "other")


def print_trial(t, out, verbose):
    atts = t["attempts"]
    ok = not t["problems"]
    resumed = ",".join(a.resumed_from for a in atts if a.resume) or "-"
    temps = sum(len(a.temps) for a in atts)
    print(f"{t['k']:>5}  {'PASS' if ok else 'FAIL':<6} {len(atts):>3}  {resumed:<34} {temps:>5}  "
          + "  ".join(attempt_text(a) for a in atts), file=out, flush=True)
    for p in t["problems"]:
        print(f"       ! {p}", file=out, flush=True)
    if verbose:
        for i, a in enumerate(atts):
            for n in a.notes:
                print(f"       - attempt {i + 1}: {n}", file=out, flush=True)


def main():
    ap = argparse.ArgumentParser(prog="bench/kill_campaign.sh", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Exit status: 0 every trial matched, 1 a mismatch or an invariant broke, "
                                        "2 the reference run failed or bad arguments, 130 interrupted.")
    ap.add_argument("config", nargs="?", help="config to run (default: a short quickstart written to the work dir)")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1, help="seeds the signals, delays and plans (default 1)")
    ap.add_argument("--fthost", default=os.path.join(ROOT, "build", "fthost"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to every fthost run (besides run.output_dir)")
    ap.add_argument("--threads", type=int, default=1, help="[run] threads of the default config (default 1)")
    ap.add_argument("--signals", default=",".join(SIGNALS), help="comma-separated subset of " + ",".join(SIGNALS))
    ap.add_argument("--max-interrupts", type=int, default=3, help="interruptions per trial at most (default 3)")
    ap.add_argument("--again", type=float, default=0.45,
                    help="probability that a resume is interrupted too (default 0.45)")
    ap.add_argument("--startup-fraction", type=float, default=0.15,
                    help="share of signals aimed at start-up (loading, the run directory, setup; default 0.15)")
    ap.add_argument("--dir-fraction", type=float, default=0.2,
                    help="share of first signals sent 0-15 ms after the run directory appears (default 0.2)")
    ap.add_argument("--ckpt-fraction", type=float, default=0.5,
                    help="TERM2: share of second signals sent as the stop's checkpoint is being written (default 0.5)")
    ap.add_argument("--max-gap", type=float, default=0.5, help="TERM2: most seconds between the two signals otherwise")
    ap.add_argument("--timeout", type=float, default=0, help="seconds per fthost run (default: 10 x reference, >= 120)")
    ap.add_argument("--max-attempts", type=int, default=8)
    ap.add_argument("--ignore", action="append", default=[], metavar="FIELD",
                    help="another metrics.jsonl field not to compare (timing fields are never compared)")
    ap.add_argument("--work", help="work directory (default: a new temporary one)")
    ap.add_argument("--no-determinism-check", dest="determinism_check", action="store_false",
                    help="skip the second uninterrupted run that checks the run is deterministic")
    ap.add_argument("--verbose", action="store_true", help="also print each attempt's notes")
    ap.add_argument("--keep", action="store_true", help="keep the work directory even when every trial passes")
    args = ap.parse_args()
    args.signals = [s.strip().upper() for s in args.signals.split(",") if s.strip()]
    if not args.signals or any(s not in SIGNALS for s in args.signals) or args.trials < 0:
        ap.error(f"--signals takes a subset of {','.join(SIGNALS)}; --trials >= 0")
    args.ignore = set(args.ignore) | TIMING_FIELDS
    args.fthost = os.path.abspath(os.path.join(CALLER_CWD, args.fthost))
    if not os.access(args.fthost, os.X_OK):
        ap.error(f"{args.fthost} is not an executable (build first, or --fthost PATH)")

    if args.work:
        work = os.path.abspath(os.path.join(CALLER_CWD, args.work))
    else:
        work = tempfile.mkdtemp(prefix="kill-campaign-")
    os.makedirs(work, exist_ok=True)
    if args.config:
        cfg = os.path.abspath(os.path.join(CALLER_CWD, args.config))
    else:
        cfg = os.path.join(work, "campaign.toml")
        default_config(cfg, args.threads)

    def on_signal(signo, _frame):  # Ctrl-C of the script: no fthost left behind
        for p in list(_live):
            try:
                p.kill()
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        print(f"\nkill_campaign: interrupted (signal {signo}); work directory kept: {work}", file=sys.stderr)
        os._exit(130)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    start = time.monotonic()
    print(f"kill campaign: {args.trials} trials, seed {args.seed}, signals {','.join(args.signals)}")
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        commit, cpu = "unknown", "?"
    print(f"machine: {os.cpu_count()} cores, {cpu}; date {time.strftime('%Y-%m-%d', time.gmtime())}, commit {commit}")
    print(f"fthost: {args.fthost}")
    print(f"config: {cfg}" + (f"  --set {' --set '.join(args.set)}" if args.set else ""))
    print(f"work:   {work}")
    fingerprint = build_fingerprint(args.fthost)
    ref = reference_run(args, cfg, work, "reference")
    if args.determinism_check:
        # Resume can only reproduce a deterministic run: a second uninterrupted run must equal the first.
        again = reference_run(args, cfg, work, "reference-2")
        why = compare_metrics(ref["metrics"], again["metrics"], args.ignore, prefix_only=False)
        why = ([f"metrics.jsonl: {why}"] if why else []) + compare_final(ref["dir"], again["dir"])[0] \
            + compare_summary(ref["summary"], again["summary"])
        if why:
            fail_setup("two uninterrupted runs differ, so the run is not deterministic (threads? a GPU?): "
                       + "; ".join(why[:5]))
        print(f"determinism: a second uninterrupted run ({again['wall']:.1f} s) equals the first")
        shutil.rmtree(again["dir"], ignore_errors=True)
    if not args.timeout:
        args.timeout = max(120.0, 10 * ref["wall"])
    ms = "  ".join(f"{k} {v:.2f}s" for k, v in ref["timeline"].items())
    n_train = sum(1 for l in ref["metrics"] if not any(k.startswith("eval/") for k in l))
    print(f"reference: {ref['wall']:.1f} s, {len(ref['metrics'])} metrics lines ({n_train} training), "
          f"{len(final_files(ref['dir']))} final/ files; {ms}")
    startup = ref["timeline"].get(next((k for k in ref["timeline"] if k.startswith("first")), ""), 2.0)
    print()
    print(f"{'trial':>5}  {'result':<6} {'att':>3}  {'resumed from (per resume)':<34} {'temps':>5}  "
          "attempts: signal@delay[+gap]:exit[last metrics line]")
    results = []
    for k in range(1, args.trials + 1):
        rng = random.Random(f"{args.seed}:{k}")
        plan = plan_trial(rng, ref["wall"], startup, args)
        t = run_trial(k, plan, args, cfg, ref, work)
        if build_fingerprint(args.fthost) != fingerprint:
            fail_setup(f"{args.fthost} or its plugins changed during trial {k} (a rebuild?): the trials would compare "
                       f"another build with the reference; run the campaign again (work directory: {work})")
        results.append(t)
        print_trial(t, sys.stdout, args.verbose)
        if not t["problems"]:
            shutil.rmtree(t["run_dir"], ignore_errors=True)  # failed trials keep theirs

    wall = time.monotonic() - start
    failed = [t for t in results if t["problems"]]
    atts = [a for t in results for a in t["attempts"]]
    print()
    print("signals delivered and how the process ended:")
    kinds = {}
    for a in atts:
        if a.signal is None:
            key = ("(none: ran to the end)", "exit 0" if a.rc == 0 else f"exit {a.rc}")
        else:
            if a.rc == 0:
                how = "exit 0 (completed anyway)" if a.sent else "exit 0"
            else:
                how = f"killed by {signal.Signals(-a.rc).name}" if a.rc < 0 else f"exit {a.rc}"
            key = (a.signal if a.sent else f"{a.signal} (not sent: exited first)", how)
        kinds[key] = kinds.get(key, 0) + 1
    for (sig, how), n in sorted(kinds.items()):
        print(f"  {sig:<32} {how:<28} {n:>4}")
    stages_hit = {}
    for a in atts:
        if a.sent and a.rc != 0:
            stages_hit[a.at.split("@")[0]] = stages_hit.get(a.at.split("@")[0], 0) + 1
    print("interrupted attempts by where the last metrics line was: "
          + ", ".join(f"{k} {v}" for k, v in sorted(stages_hit.items())))
    n_temps = sum(1 for a in atts if a.temps)
    print(f"attempts that left temporary names (allowed after SIGKILL / a second signal): {n_temps}")
    for a in atts:
        for tmp in a.temps:
            print(f"    {a.label()}: {tmp}")
    n = len(results)

    def count(key):
        return sum(1 for t in results if t["checks"][key] == [])
    print(f"completed trials: {sum(1 for t in results if t['done'])}/{n}; identical to the reference: "
          f"metrics.jsonl {count('metrics')}/{n}, final/ {count('final')}/{n}, summary.json {count('summary')}/{n}; "
          f"no temporary names left: {count('stale')}/{n}; invariants after every attempt held: "
          f"{sum(1 for t in results if t['invariants_ok'])}/{n}")
    print(f"attempts: {len(atts)} ({sum(1 for a in atts if a.resume)} with --resume); wall time {wall:.0f} s")
    if failed:
        kinds = {}
        for t in failed:
            for k in {problem_kind(p) for p in t["problems"]}:
                kinds.setdefault(k, []).append(t["k"])
        for k, ts in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
            print(f"  failing: {k}: trials {', '.join(map(str, ts))}")
        print(f"FAIL: {len(failed)} trial(s): {', '.join(str(t['k']) for t in failed)}; their run directories and logs "
              f"are in {work}")
        return 1
    print("PASS")
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
