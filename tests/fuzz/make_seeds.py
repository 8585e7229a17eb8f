#!/usr/bin/env python3
"""Writes the committed seed corpora of tests/fuzz/corpus/<target>/ from the repo's own
configs, data, fixtures and a few hand-made edge cases. Deterministic; run from anywhere:
    python3 tests/fuzz/make_seeds.py
Regression inputs for fixed findings live in tests/fuzz/corpus/<target>/regress-* and are
kept (this script only rewrites the seed-* files)."""
import glob, json, os, struct, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def rd(path, mode="r"):
    with open(os.path.join(ROOT, path), mode) as f:
        return f.read()


def head_lines(path, n):
    return "".join(rd(path).splitlines(True)[:n])


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clear(target):
    d = os.path.join(CORPUS, target)
    for f in glob.glob(os.path.join(d, "seed-*")):
        os.remove(f)


# ---- run configs ------------------------------------------------------------------------
clear("run_config")
for f in sorted(glob.glob(os.path.join(ROOT, "configs", "*.toml"))):
    out("run_config", os.path.basename(f), rd(f))
qs = rd("configs/quickstart.toml")
out("run_config", "quickstart-sets", qs + "\n#--set\nstage.finetune.train.steps=100\nrun.seed=7\nstage.pretrain.data.packing=true\nstage.nope.x=1\nbad\n")
out("run_config", "empty", "")
out("run_config", "run-only", '[run]\noutput_dir = "runs/x"\n')
out("run_config", "bad-toml", "[[stage]\nname = \n")
out("run_config", "minimal-stage",
    '[run]\noutput_dir = "runs/x"\n[[stage]]\nname = "a"\n[stage.model]\nplugin = "decoder"\n'
    '[stage.param]\nplugin = "lora"\nrank = 0\n[stage.objective]\nplugin = "sft"\n'
    '[stage.data]\ntrain = "data/quickstart/train.jsonl"\nmax_seq_len = 1\n[stage.train]\nsteps = -1\nbatch_size = 0\n'
    '[[stage.grader]]\nplugin = "program"\ncommand = []\n[[stage.grader]]\nplugin = "multi"\n[stage.grader.graders.em]\nplugin = "exact_match"\n')
out("run_config", "dup-stages",
    '[run]\noutput_dir = "o"\n[[stage]]\nname = "s"\ninit_from = "s"\n[[stage]]\nname = "s"\nteacher = "t/final"\n')
out("run_config", "types", '[run]\noutput_dir = 5\nseed = 1e400\nthreads = 9223372036854775807\n"\u00e9" = "x"\n')

# ---- JSONL rows: two settings bytes (fuzz_jsonl.cpp), then the file ----------------------
clear("jsonl")
# byte 0: shape | policy << 2 | reader << 3 | skip << 5 | packing << 6 | span << 7
# byte 1: len index | (batch - 1) << 3 | shuffle << 5 | eval_fraction index << 6
files = [
    ("corpus", "data/quickstart/corpus.jsonl", 0, [0, 1, 2]),
    ("train", "data/quickstart/train.jsonl", 0, [0, 1, 2]),
    ("chat", "data/quickstart/chat_train.jsonl", 0, [0, 1]),
    ("preference", "data/quickstart/preference_train.jsonl", 1, [0, 1]),
    ("feedback", "data/quickstart/feedback_train.jsonl", 2, [0, 1]),
    ("completions", "data/quickstart/eval.jsonl", 3, [0, 1, 2]),
    ("coedit", "data/coedit/train.jsonl", 0, [2]),
    ("coedit-corpus", "data/coedit/corpus.jsonl", 0, [2]),
]
for name, path, shape, readers in files:
    text = head_lines(path, 4)
    for reader in readers:
        for policy in (0, 1):
            a = shape | (policy << 2) | (reader << 3)
            out("jsonl", "%s-r%d-p%d" % (name, reader, policy), bytes([a, 4 | (1 << 3) | (1 << 5)]) + text.encode())
    out("jsonl", name + "-short", bytes([shape | (1 << 6), 1 | (3 << 3) | (2 << 6)]) + text.encode())
out("jsonl", "span", bytes([0 | (2 << 3) | 128, 5 | (1 << 3)]) + head_lines("data/coedit/corpus.jsonl", 6).encode())
out("jsonl", "packing", bytes([0 | 64, 4 | (3 << 3)]) + head_lines("data/quickstart/corpus.jsonl", 8).encode())
edge = "\n".join([
    '{"text": ""}', '{"text": 5}', '[1, 2]', '   ', '{"prompt": "", "completion": ""}',
    '{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}]}',
    '{"messages": []}', '{"messages": [{"role": "user", "content": "no answer"}]}',
    '{"messages": [{"role": "assistant", "content": ""}]}', '{"prompt": "p", "chosen": "a", "rejected": ""}',
    '{"prompt": "p", "completion": "c", "label": 1}', '{"prompt": "p", "completion": "c", "label": true}',
    '{"prompt": "\\u0000\\ud800", "completion": "\\u00e9\\u4e2d"}', '{"text": "\\u00ff\\u00fe"}',
    '{"prompt": "p", "completion": "c", "extra": {"nested": [1, {"a": null}]}}', '{"text": "a"} trailing',
]) + "\r\n\r\n"
for a in (0, 1, 2, 3, 32, 33, 34, 35, 8 | 32, 16 | 32, 16 | 32 | 128):
    out("jsonl", "edge-%d" % a, bytes([a, 0 | (1 << 3)]) + edge.encode())
out("jsonl", "invalid-utf8", bytes([32, 7]) + b'{"text": "\xff\xfe bad"}\n{"prompt": "\xc3", "completion": "\xe2\x82"}\n')

# ---- safetensors ---------------------------------------------------------------------------
clear("safetensors")


def st(tensors, meta=None, pad=True, extra=b""):
    header, blob = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob + extra


out("safetensors", "one-f32", st([("w", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))], {"format": "pt"}))
out("safetensors", "dtypes", st([("a", "F64", [1], b"\0" * 8), ("b", "F16", [3], b"\0" * 6), ("c", "BF16", [1, 1], b"\0" * 2),
                                 ("d", "I64", [1], b"\1" + b"\0" * 7), ("e", "I32", [], b"\0" * 4), ("f", "I16", [2], b"\0" * 4),
                                 ("g", "I8", [1], b"\0"), ("h", "U8", [2], b"ab"), ("i", "BOOL", [1], b"\1")]))
out("safetensors", "empty-tensor", st([("z", "F32", [0, 5], b""), ("y", "F32", [1], b"\0" * 4)]))
out("safetensors", "misaligned", st([("b", "U8", [1], b"x"), ("w", "F32", [1], b"\0" * 4)], pad=False))
out("safetensors", "no-tensors", st([], {"k": "v"}))
out("safetensors", "header-only", struct.pack("<Q", 2) + b"{}")
out("safetensors", "short", b"\x10\0\0")
out("safetensors", "bad-json", struct.pack("<Q", 5) + b"{\"a\":")
out("safetensors", "overlap", struct.pack("<Q", 88) + json.dumps(
    {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}).encode()[:88].ljust(88) + b"\0" * 8)
out("safetensors", "huge-len", struct.pack("<Q", 1 << 62) + b"{}")
# Real headers: the fixtures' tensor names and dtypes, shapes shrunk so the data is small.
for fx in ("hf/qwen2_bias", "hf/t5_v11_gated_untied"):
    raw = rd("tests/fixtures/%s/model.safetensors" % fx, "rb")
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    tensors = []
    for name, info in list(header.items()):
        if name == "__metadata__":
            continue
        size = {"F32": 4, "F16": 2, "BF16": 2}.get(info["dtype"], 4)
        shape = [min(d, 2) for d in info["shape"]]
        count = 1
        for d in shape:
            count *= d
        tensors.append((name, info["dtype"], shape, b"\0" * (count * size)))
    out("safetensors", fx.replace("/", "-"), st(tensors[:12], header.get("__metadata__")))

# ---- tokenizer.json: the file, NUL, a text, (NUL, tokenizer_config.json) ------------------
clear("tokenizer_json")
corpus = rd("tests/fixtures/tokenizers/corpus.txt").splitlines()
text = "\n".join(corpus[:3])
for fx in ("gpt2", "llama3", "qwen2", "t5", "t5_v5", "spm_llama", "spm_llama_metaspace", "spm_gemma"):
    tj = rd("tests/fixtures/tokenizers/%s/tokenizer.json" % fx)
    out("tokenizer_json", fx, tj + "\0" + text)
    cfg = "tests/fixtures/tokenizers/%s/tokenizer_config.json" % fx
    if os.path.exists(os.path.join(ROOT, cfg)):
        out("tokenizer_json", fx + "-config", tj + "\0" + text + "\0" + rd(cfg))
out("tokenizer_json", "qwen2-chat", rd("tests/fixtures/hf/qwen2_chat/tokenizer.json") + "\0hello <|im_start|> world\0" +
    rd("tests/fixtures/hf/qwen2_chat/tokenizer_config.json"))
bpe = {"version": "1.0", "added_tokens": [{"id": 3, "content": "<s>", "special": True, "normalized": False, "lstrip": False, "rstrip": False}],
       "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                          "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}},
       "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"],
                                                     "byte_fallback": False, "ignore_merges": False}}
out("tokenizer_json", "tiny-bpe", json.dumps(bpe) + "\0abab ba <s>")
uni = {"version": "1.0", "added_tokens": [], "normalizer": {"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
       "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
       "post_processor": None, "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
       "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["\u2581", -1.0], ["a", -2.0], ["b", -2.5], ["ab", -1.5]], "byte_fallback": False}}
out("tokenizer_json", "tiny-unigram", json.dumps(uni) + "\0ab ba a")
out("tokenizer_json", "wordlevel", '{"model": {"type": "WordLevel", "vocab": {"a": 0}}}\0a')
out("tokenizer_json", "not-json", "{\"model\": \0x")
out("tokenizer_json", "merges-pairs", json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}}) + "\0ab")

# ---- chat templates: codec byte, flags byte, messages (role byte + content) split by 0x1E
clear("chat_template")
rows = [json.loads(l) for l in rd("data/quickstart/chat_train.jsonl").splitlines()[:2]]
roles = {"system": 0, "user": 1, "assistant": 2, "tool": 3}


def conv(msgs):
    return b"\x1e".join(bytes([roles.get(m["role"], 4)]) + (m["content"] if m["role"] in roles else m["role"] + ":" + m["content"]).encode() for m in msgs)


for codec in range(13):
    for flags in (0, 1):
        out("chat_template", "c%d-g%d" % (codec, flags), bytes([codec, flags]) + conv(rows[codec % 2]["messages"]))
    alt = [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "\n yo \n"}, {"role": "user", "content": "<|im_end|>"},
           {"role": "assistant", "content": "<|eot_id|></s>[INST]<think>\n</think>\n\n<end_of_turn><|end|> x"}]
    out("chat_template", "c%d-alternating" % codec, bytes([codec, 0]) + conv(alt))
    out("chat_template", "c%d-custom-role" % codec, bytes([codec, 1]) + conv([{"role": "narrator", "content": "x"}, {"role": "assistant", "content": ""}]))
out("chat_template", "jinja", b"\xfe" + rd("tests/fixtures/hf/qwen2_chat/chat_template.jinja", "rb"))
for t in ("chatml", "llama3", "mistral", "gemma", "gemma3", "phi3", "qwen3", "unknown"):
    out("chat_template", "config-" + t, b"\xff" + rd("tests/fixtures/chat_templates/%s/tokenizer_config.json" % t, "rb"))
out("chat_template", "config-list", b"\xff" + json.dumps({"chat_template": [{"name": "default", "template": "<|im_start|><|im_end|>"}, {"name": "x"}]}).encode())

# ---- program grader output: item count byte, then what the program printed ----------------
clear("program_grader")
for name, n, text in [("scores", 2, '{"scores": [1, 0]}'), ("bare", 2, "[0.5, null]"), ("mismatch", 1, '{"scores": [1, 0, 1]}'),
                      ("garbage", 3, "not json"), ("range", 2, "[1e308, -5]"), ("string", 1, '{"scores": "x"}'), ("empty", 4, ""),
                      ("bool", 1, "[true]"), ("nested", 2, '{"scores": [[1], {"a": 1}]}'), ("zero-items", 0, "[]"),
                      ("newline", 3, '{"scores": [0.25, 0.5, 0.75]}\n'), ("object-no-scores", 1, '{"score": [1]}'),
                      ("nan", 1, "[NaN]"), ("big-int", 2, "[18446744073709551615, -9223372036854775808]")]:
    out("program_grader", name, bytes([n]) + text.encode())
# The parser alone (fuzz_program_output) reads the same inputs, and bytes a program may print.
clear("program_output")
for f in glob.glob(os.path.join(CORPUS, "program_grader", "seed-*")):
    out("program_output", os.path.basename(f)[len("seed-"):], rd(f, "rb"))
out("program_output", "invalid-utf8", bytes([1]) + b'{"scores": [1], "\xff\xfe": 0}')
out("program_output", "invalid-utf8-garbage", bytes([1]) + b"\xc3(\x00\x1b[31m")
out("program_output", "deep", bytes([1]) + b"[" * 2000)

# ---- plugin descriptors (fuzz_plugin_desc.cpp's byte reader) --------------------------------
clear("plugin_desc")


def desc(kind, torch_choice, options=(), vt_mask=0xFFFFFFFF, extra_vt=b"", name_choice=2):
    b = bytes([1])  # not NULL
    b += bytes([0, 0, 0, kind, 0])  # exact size, ABI major/minor as the host's, kind, flags
    b += bytes([name_choice, 2, 2, torch_choice])  # name "fuzz"/..., version, description, torch_version
    b += bytes([len(options)])
    if options:
        b += bytes([1])  # options array present
        for o in options:
            b += o
    else:
        b += bytes([0])  # count 0: array present
    b += bytes([1, 0]) + struct.pack("<I", vt_mask) + extra_vt
    return b


opt = lambda ty, default: bytes([0, 2, ty, 1, default, 1])  # exact size, "rank", type, optional, default choice, help
out("plugin_desc", "grader", bytes([1]) + desc(4, 0, [opt(1, 2)]))
out("plugin_desc", "model", bytes([1]) + desc(1, 2, [opt(2, 3), opt(4, 5)], extra_vt=bytes([1])))  # inputs TEXT
out("plugin_desc", "model-fields", bytes([1]) + desc(1, 2, [], vt_mask=0x0000FFFF, extra_vt=bytes([2 | 8])))
out("plugin_desc", "objective", bytes([1]) + desc(3, 2, [opt(3, 4)], extra_vt=bytes([2, 1])))
out("plugin_desc", "param", bytes([1]) + desc(2, 2, [opt(5, 7)]))
out("plugin_desc", "three", bytes([3]) + desc(4, 0) + desc(4, 0) + desc(1, 4, [], extra_vt=bytes([1])))
out("plugin_desc", "zeros", bytes(64))
out("plugin_desc", "null-list", bytes([255]) + desc(4, 0))
out("plugin_desc", "short-desc", bytes([1, 1, 200, 0, 0, 4]))
print("seeds written to", CORPUS)
