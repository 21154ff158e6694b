"""tl's generation settings as ``generate()`` arguments and as a saved model's ``generation_config``: one place, so
that tl's own translations (training's samples, ``tl evaluate``) and ``generate()`` on ``RUN/model`` agree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tl_translation.models import GenerationOptions

#: generation flags that only sampling uses: unset in a saved generation_config, since tl never samples
_SAMPLING = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


def generate_kwargs(generation: GenerationOptions) -> dict[str, Any]:
    """The arguments tl passes to ``generate()``: beam search (greedy with ``num_beams: 1``), no sampling."""
    kwargs: dict[str, Any] = {"num_beams": generation.num_beams, "max_new_tokens": generation.max_new_tokens,
                              "do_sample": False}
    if generation.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = generation.no_repeat_ngram_size
    if generation.num_beams > 1:
        kwargs.update(length_penalty=generation.length_penalty, early_stopping=True)
    return kwargs


def set_generation_config(config: Any, generation: GenerationOptions) -> None:
    """Write tl's generation settings into a model's ``generation_config`` (a transformers ``GenerationConfig``),
    which ``save_pretrained`` saves as ``generation_config.json``: ``generate()`` without arguments (and whatever
    generates with the model's own ``generation_config``) then translates as tl does. Flags that the settings make
    meaningless (beam flags with greedy search, sampling flags) are unset, so that transformers' check at saving
    passes."""
    unset = dict.fromkeys(("no_repeat_ngram_size", "length_penalty", "early_stopping", *_SAMPLING))
    config.update(**{**unset, **generate_kwargs(generation)})
