"""Run by ``accelerate launch`` in test_distributed.py: the tiny backbone, trained by several processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from conftest import tiny_spec  # noqa: E402

from tl_core import hookimpl, train  # noqa: E402
from tl_core.plugins import register_plugin  # noqa: E402
from tl_core.recipe import load_recipe  # noqa: E402
from tl_core.run import execute  # noqa: E402
from tl_core.weights import WeightsEntry, sha256_of  # noqa: E402


class TinyPlugin:
    def __init__(self, weights: Path) -> None:
        entry = WeightsEntry(
            name="pretrained", architecture="tiny", source="file", location=str(weights), sha256=sha256_of(weights),
            licence="test", mean=(0.5,) * 3, std=(0.5,) * 3, input_size=16, classifier=("fc",),
        )
        self.spec = tiny_spec([entry])

    @hookimpl
    def tl_register_backbones(self, register):
        register(self.spec)


def main() -> None:
    recipe_path, weights, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    torch.set_num_threads(1)
    register_plugin(TinyPlugin(weights), "tiny-test")
    trained = []
    real_fit = train.Trainer.fit

    def fit(self, *args, **kwargs):  # each process's model as training left it, before anything re-syncs it
        result = real_fit(self, *args, **kwargs)
        trained.append(f"{sum(float(t.double().sum()) for t in result.model.state_dict().values()):.12e}")
        return result

    train.Trainer.fit = fit
    # every process would otherwise end by loading the best checkpoint that the main process wrote, and the
    # comparison would prove nothing: keep each process's own last-epoch weights
    train.Trainer._save_best = lambda self: None
    recipe = load_recipe(str(recipe_path), sys.argv[4:])
    report = execute(recipe, out, quiet=True)
    from accelerate import PartialState

    checksums = trained
    rank = PartialState().process_index
    (out.parent / f"rank{rank}.json").write_text(json.dumps({"processes": report["processes"], "models": checksums}))


if __name__ == "__main__":
    main()
