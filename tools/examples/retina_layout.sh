# Builds the retina/ example tree of docs/data.md ("Pairing images and masks", "Regions of interest"):
# run it in an empty folder with unetfamily installed; it prints the `dataset info` output shown there.
python - <<'PY'
import numpy as np
from pathlib import Path
from PIL import Image
rng = np.random.default_rng(0)
root = Path("retina")
for split, tag, ids in (("train", "training", (21, 22)), ("test", "test", (1, 2))):
    for i in ids:
        for sub in ("images", "labels", "fov"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(root / split / "images" / f"{i}_{tag}.tif")
        m = np.zeros((32, 40), np.uint8); m[8:20, 10:30] = 255
        Image.fromarray(m).save(root / split / "labels" / f"{i}_manual1.gif")
        yy, xx = np.mgrid[:32, :40]
        f = np.where((yy - 16) ** 2 + (xx - 20) ** 2 < 15 ** 2, 255, 0).astype(np.uint8)
        Image.fromarray(f).save(root / split / "fov" / f"{i}_{tag}_mask.gif")
Path("retina.yaml").write_text('type: folder\nroot: retina\nimages: "{split}/images/{id}_{tag}.tif"\n'
                               'masks: "{split}/labels/{id}_manual1.gif"\nroi: "{split}/fov/{id}_{tag}_mask.gif"\n')
PY
unetfamily dataset info retina.yaml --split train
