"""What the fuzzer types: for every subcommand, its options with a strategy of good values and one of any values
(junk, out-of-range numbers, bad neurons), its positionals and its required options (tests/fuzzing.py draws
argument vectors from these)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

VIEWS = ["up", "gate", "down"]
JUNK = st.one_of(
    st.text(max_size=24),
    st.sampled_from(
        [
            "",
            " ",
            "-",
            "--",
            "-x",
            "--nope",
            "\t",
            "L1:N7",
            "1:7",
            "demo.gguf",
            "a/b",
            "org/name",
            "~nobody/x",
            "/",
            ".",
            "..",
            "x" * 300,
            "L-1:N2",
            "9" * 40,
            "nan",
            "inf",
            "-inf",
            "1e400",
            "\u0120dog",
            "dog",
            "\U0001f436",
            "L1:N7=3",
            "=",
            "1:7=",
            "cuda",
            "cuda:9",
            "cpu",
            "auto",
            "x\ry",
            "a\nb",
            "L1\n:N2",
            "\u2028",
            "\x1b[31mred",
            "dog\n",
        ]
    ),
)
NUMBER = st.one_of(
    st.integers(-3, 60).map(str),
    st.sampled_from(["0", "1", "2", "255", "256", "100000", "1e9", "0.5", "-1", "nan", "inf", "x", ""]),
    JUNK,
)
SMALL = st.one_of(st.integers(-2, 6).map(str), st.sampled_from(["0", "1", "1001", "100000", "-1", "x", "1.5"]))
FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["0", "0.7", "1", "101", "-0.1", "x"])
)


GOOD_PROMPT = st.sampled_from(["t5 t9 dog", "dog", "a b c", "hello there"])
CORPUS = str(Path(__file__).parent / "data" / "corpus.txt")  # a few hundred words of the fixtures' vocabulary


def neuron() -> st.SearchStrategy[str]:
    ints = st.integers(-2, 70)
    return st.one_of(
        st.builds(lambda a, b: f"L{a}:N{b}", ints, ints), st.builds(lambda a, b: f"{a}:{b}", ints, ints), JUNK
    )


def clamp_spec() -> st.SearchStrategy[str]:
    return st.one_of(st.builds(lambda n, v: f"{n}={v}", neuron(), st.one_of(NUMBER, FLOAT)), JUNK)


def good_neuron() -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, b, short: f"{a}:{b}" if short else f"L{a}:N{b}", st.integers(0, 1), st.integers(0, 63), st.booleans()
    )


# option -> (a strategy of good values, a strategy of any values); None: a flag without a value
def opt(good, bad=None):
    return (good, st.one_of(good, bad if bad is not None else JUNK))


ENGINE = {
    "--device": opt(st.just("cpu"), st.sampled_from(["auto", "cuda", "cuda:3", "gpu", "CPU", ""])),
    "--dtype": opt(st.sampled_from(["float32", "auto"]), st.sampled_from(["bfloat16", "float16", ""])),
    "--trust-remote-code": None,
}
OPTIONS = {
    "decode": {
        **ENGINE,
        "--views": opt(
            st.sampled_from(["up", "gate", "down", "up,down", "up,gate,down"]), st.sampled_from(["", ",", "side"])
        ),
        "--top-k": opt(st.sampled_from(["5", "10"]), NUMBER),
        "--rebuild": None,
        "--json": None,
        "--devices": opt(st.sampled_from(["cpu", "cuda:0,cuda:1", "cpu,", "x,y"])),
    },
    "show": {
        **ENGINE,
        "--view": opt(st.sampled_from(VIEWS), st.sampled_from(["side", "", "dec", "enc"])),
        "--direction": opt(st.sampled_from(["pos", "neg"]), st.just("both")),
        "--sae": opt(  # a SAELens folder for the tiny models (tests/sae_plant.py), or one that cannot be used
            st.just("{sae}"),
            st.sampled_from(["{root}/sae-wide", "{root}/nope", "{root}/notes.txt", "{root}", "{root}/sae-damaged"]),
        ),
        "--json": None,
    },
    "search": {
        **ENGINE,
        "--view": opt(st.sampled_from(VIEWS)),
        "--direction": opt(st.sampled_from(["pos", "neg"])),
        "--max-rank": opt(st.sampled_from(["1", "3", "10"]), NUMBER),
        "--match": opt(st.sampled_from(["word", "exact", "prefix", "contains", "label"]), st.just("regex")),
        "--limit": opt(st.sampled_from(["1", "5", "50"]), NUMBER),
        "--heads": None,
        "--json": None,
    },
    "models": {"--json": None},
    "clamp": {
        **ENGINE,
        "--set": opt(
            st.builds(lambda n, v: f"{n}={v}", good_neuron(), st.sampled_from(["3", "-2.5", "0", "20"])), clamp_spec()
        ),
        "--mode": opt(st.sampled_from(["set", "add", "scale"]), st.just("mul")),
        "--positions": opt(st.sampled_from(["all", "generated"]), st.just("some")),
        "--prompt": opt(GOOD_PROMPT),
        "--chat": None,
        "--target": opt(st.sampled_from(["dog", "cat", "t5"])),
        "--max-new-tokens": opt(st.sampled_from(["1", "2", "3"]), SMALL),
        "--samples": opt(st.sampled_from(["1", "2"]), SMALL),
        "--temperature": opt(st.sampled_from(["0", "0.7", "1"]), FLOAT),
        "--top-p": opt(st.sampled_from(["0.9", "1"]), FLOAT),
        "--seed": opt(st.sampled_from(["0", "7"]), NUMBER),
        "--preset": opt(st.sampled_from(["dogs", "nope"])),
        "--save-preset": opt(st.sampled_from(["dogs", "b.1"])),
        "--json": None,
    },
    "compare": {
        **ENGINE,
        "--view": opt(st.sampled_from(VIEWS)),
        "--direction": opt(st.sampled_from(["pos", "neg"])),
        "--top": opt(st.sampled_from(["1", "5"]), SMALL),
        "--json": None,
    },
    "tui": {**ENGINE, "--compare": opt(st.just("{model}"))},
    "trace": {
        **ENGINE,
        "--prompt": opt(GOOD_PROMPT),
        "--chat": None,
        "--top": opt(st.sampled_from(["1", "3"]), SMALL),
        "--neuron": opt(good_neuron(), neuron()),
        "--attribute": opt(good_neuron(), neuron()),
        "--at": opt(st.sampled_from(["0", "-1", "2"]), NUMBER),
        "--json": None,
    },
    "circuit": {
        **ENGINE,
        "--top": opt(st.sampled_from(["1", "5"]), NUMBER),
        "--via": opt(st.sampled_from(["gate", "up"]), st.just("down")),
        "--devices": opt(st.sampled_from(["cuda:0,cuda:1", "cpu", "x,y", ","])),
        "--json": None,
    },
    "examples": {
        **ENGINE,
        "--corpus": opt(
            st.just("{corpus}"),
            st.sampled_from(
                [
                    "{root}/notes.bin",
                    "{root}/nope.txt",
                    "{root}/empty.txt",
                    "{root}",
                    "{root}/nope.parquet",
                    "no_such_dataset",
                    "a/b/c",
                    "no_such:cfg@test",
                ]
            ),
        ),
        "--text-column": opt(st.just("text"), st.sampled_from(["", "body"])),
        "--tokens": opt(st.sampled_from(["256", "512"]), NUMBER),
        "--per-neuron": opt(st.just("4"), SMALL),
        "--context": opt(st.just("8"), SMALL),
        "--window": opt(st.just("64"), SMALL),
        "--batch-size": opt(st.just("2"), SMALL),
        "--json": None,
    },
    "agreement": {**ENGINE, "--json": None},
    "top": {
        **ENGINE,
        "--by": opt(st.sampled_from(["mass", "prob", "entropy", "copy", "suppression", "cosine"]), st.just("size")),
        "--view": opt(st.sampled_from(VIEWS)),
        "--direction": opt(st.sampled_from(["pos", "neg"])),
        "--layer": opt(st.sampled_from(["0", "1"]), NUMBER),
        "--limit": opt(st.sampled_from(["1", "20"]), NUMBER),
        "--json": None,
    },
    "concept": {**ENGINE, "--view": opt(st.sampled_from(VIEWS)), "--json": None},
    "export": {
        **ENGINE,
        "--what": opt(st.sampled_from(["neurons", "edges"]), st.just("nodes")),
        "--format": opt(st.sampled_from(["jsonl", "csv", "parquet"]), st.just("xml")),
        "--views": opt(st.sampled_from(["up", "up,down", "gate"]), st.sampled_from(["", "side"])),
        "--out": opt(
            st.sampled_from(["{root}/x.jsonl", "{root}/y.csv", "{root}/z.parquet"]),
            st.sampled_from(["{root}", "{root}/no/such/dir/x.csv", "{root}/notes.txt/x"]),
        ),
    },
}
OPTIONS["clamp"] = {
    **OPTIONS["clamp"],
    "--concept": opt(st.sampled_from(["dog", "t5", "t1"]), st.just("qqqq")),
    "--strength": opt(st.sampled_from(["1", "3"]), FLOAT),
    "--min-mass": opt(st.sampled_from(["0", "0.1"]), FLOAT),
}
POSITIONALS = {
    "decode": ["model"],
    "show": ["model", "unit"],  # a neuron, an attention head (L1:H2, 1:h2) or, with --sae, a feature (F7)
    "search": ["model", "text"],
    "models": [],
    "clamp": ["model"],
    "compare": ["model", "model"],
    "tui": ["model?"],
    "trace": ["model"],
    "circuit": ["model", "neuron"],
    "examples": ["model"],
    "agreement": ["model"],
    "top": ["model"],
    "concept": ["model", "text"],
    "export": ["model"],
}
REQUIRED = {
    "clamp": ["--set", "--prompt", "--max-new-tokens"],
    "trace": ["--prompt"],
    "examples": ["--corpus", "--tokens", "--window"],
}
