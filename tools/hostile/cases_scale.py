"""Parallel comparisons (issue 16): `compare --executor ray` options refused by name before anything trains."""
from __future__ import annotations

from .build import case, compare_data
from .checks import absent
from .model import refused

OWNER = "scale"  # python tools/hostile.py --only scale
K = "traceback_or_hang"
COMPARE = ["compare", "--data", "cmp.yaml", "--models", "unet", "--seeds", "1", "--steps", "2", "--base-width", "4",
           "--no-costs", "--out", "rep"]
NOTHING = absent("rep/runs")

CASES = [
    case("compare_cpus_per_run_without_ray", K, "compare", [*COMPARE, "--cpus-per-run", "2"],
         refused("--cpus-per-run", "--executor ray", check=NOTHING), compare_data, owner=OWNER),
    case("compare_ray_address_without_ray", K, "compare", [*COMPARE, "--ray-address", "auto"],
         refused("--ray-address", check=NOTHING), compare_data, owner=OWNER),
    case("compare_executor_misspelled", K, "compare", [*COMPARE, "--executor", "rayy"], refused("--executor"),
         compare_data, owner=OWNER),
    case("compare_cpus_per_run_0", K, "compare", [*COMPARE, "--executor", "ray", "--cpus-per-run", "0"],
         refused("--cpus-per-run", check=NOTHING), compare_data, owner=OWNER),
    case("compare_gpus_per_run_negative", K, "compare", [*COMPARE, "--executor", "ray", "--gpus-per-run", "-1"],
         refused("--gpus-per-run", check=NOTHING), compare_data, owner=OWNER),
    case("compare_gpus_for_cpu_runs", K, "compare", [*COMPARE, "--executor", "ray", "--gpus-per-run", "1"],
         refused("--gpus-per-run", "--device", check=NOTHING), compare_data, owner=OWNER),
    case("compare_ray_mps", K, "compare", [*COMPARE, "--executor", "ray", "--device", "mps"],
         refused("mps", check=NOTHING), compare_data, owner=OWNER),
    case("compare_cpus_per_run_beyond_the_machine", K, "compare",
         [*COMPARE, "--executor", "ray", "--cpus-per-run", "4096"], refused("--cpus-per-run", "4096", check=NOTHING),
         compare_data, owner=OWNER, timeout=180),
    case("compare_ray_address_unreachable", K, "compare",
         [*COMPARE, "--executor", "ray", "--ray-address", "ray://127.0.0.1:9"], refused("--ray-address", check=NOTHING),
         compare_data, owner=OWNER, timeout=240),
]
