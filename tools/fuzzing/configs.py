"""Fuzz targets for the config parser: config dicts, YAML/TOML files and ``key=value`` overrides."""
from __future__ import annotations

import json
from pathlib import Path

from hypothesis import strategies as st

from unetfamily.config import apply_overrides, config_from_dict, load_config

from .common import corrupted, json_values, outcome, write_case

ROOT = Path(__file__).resolve().parents[2]

SECTIONS = {
    "model": ["name", "kwargs"], "loader": ["batch_size", "val_batch_size", "num_workers"],
    "loss": ["name", "ds_weights", "cgm_weight", "kwargs"], "optim": ["name", "lr", "weight_decay", "momentum"],
    "schedule": ["name", "warmup_steps", "min_lr_ratio", "power"],
    "train": ["epochs", "max_steps", "max_seconds", "grad_clip", "amp", "seed", "nan_policy", "monitor", "progress"],
}
key = st.one_of(st.sampled_from([*SECTIONS, "data", "output_dir"]), st.text(max_size=6), st.integers(), st.none())
section = st.one_of(
    st.sampled_from(list(SECTIONS)).flatmap(
        lambda s: st.dictionaries(st.one_of(st.sampled_from(SECTIONS[s]), st.text(max_size=6)), json_values, max_size=4)
    ),
    json_values,
)


@st.composite
def edited_configs(draw: st.DrawFn) -> dict:
    """The default config with 1-4 keys replaced by random values, deleted or added."""
    from unetfamily.config import Config

    data = Config().to_dict()
    for _ in range(draw(st.integers(1, 4))):
        top = draw(st.sampled_from(sorted(data)))
        node = data[top]
        if isinstance(node, dict) and node and draw(st.booleans()):
            name = draw(st.one_of(st.sampled_from(sorted(node)), st.text(max_size=6)))
            if draw(st.integers(0, 5)) == 0:
                node.pop(name, None)
            else:
                node[name] = draw(st.one_of(json_values, st.sampled_from([0, 1, -1, 0.5, "1e-3", "adamw", "skip", True])))
        else:
            data[top] = draw(json_values)
    return data


config_dicts = st.one_of(st.dictionaries(key, st.one_of(section, json_values), max_size=5), edited_configs())
CONFIG_SEEDS = [p.read_bytes() for p in sorted((ROOT / "configs").glob("*.yaml"))[:4]] + [
    b'[train]\nepochs = 3\n[optim]\nlr = 3e-4\n[model]\nname = "unet"\nkwargs = {channels = [4, 8]}\n'
]
ALIAS_BOMB = b"data:\n  a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + b"".join(  # "billion laughs": 10^7 values
    f"  {k}: &{k} [{', '.join(['*' + p] * 10)}]\n".encode() for p, k in zip("abcdef", "bcdefg")
)
override = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from([f"{s}.{k}" for s, ks in SECTIONS.items() for k in ks] + ["data.size"]),
              st.text(max_size=10)),
    st.text(max_size=16),
)
config_files = st.tuples(
    st.sampled_from([".yaml", ".toml"]),
    st.one_of(corrupted(CONFIG_SEEDS), st.binary(max_size=128), json_values.map(lambda v: json.dumps(v).encode()),
              st.sampled_from([b"data: &a [*a, *a]\n", ALIAS_BOMB])),
    st.lists(override, max_size=3),
)


def config_dict_target(data: dict) -> str:
    return outcome(lambda: config_from_dict(data).to_json())


def config_file_target(case: tuple[str, bytes, list[str]]) -> str:
    suffix, data, overrides = case
    path = write_case(f"config{suffix}", data)
    return outcome(lambda: load_config(path, overrides).to_json())


def overrides_target(case: tuple[dict, list[str]]) -> str:
    data, overrides = case
    return outcome(lambda: config_from_dict(apply_overrides(data, overrides)).to_json())


overrides_cases = st.tuples(config_dicts, st.lists(override, max_size=4))
