"""What tl-translation registers, as data: its data formats, its head and its LoRA policy, naming their readers,
options and factory by reference (``"module:attribute"``), so that registering them - every ``tl`` command does -
imports nothing of the readers, of pydantic or of transformers."""

from __future__ import annotations

from tl_core.api import DataFormat, FreezePolicy, GroupState, HeadSpec, TLError

TASK = "translation"
OPTIONS = "tl_translation.data:TranslationOptions"

DATA_FORMATS: tuple[DataFormat, ...] = (
    *(DataFormat(fmt, TASK, read=f"tl_translation.data:read_{fmt}", read_split=f"tl_translation.data:read_split_{fmt}",
                 options=OPTIONS, description=text)
      for fmt, text in (
          ("tsv", "aligned sentence pairs, source<TAB>target per line"),
          ("moses", "Moses-style aligned files PREFIX.SRC + PREFIX.TGT, one sentence per line"),
          ("jsonl", 'JSON lines: {"source": ..., "target": ...} or {"translation": {"ny": ..., "en": ...}}'),
      )),
    DataFormat("bible", TASK, read="tl_translation.data:read_bible", options=OPTIONS,
               description="the real Chichewa-English Bible corpus from installed packages (bible:ny-en), by book"),
)

HEADS = (
    HeadSpec("seq2seq", "tl_translation.models:no_head_factory", tasks=(TASK,),
             options="tl_translation.models:GenerationOptions",
             description="the model's own decoder and output layer; options: generation (num_beams, max_new_tokens)"),
)


class LoraPolicy(FreezePolicy):
    """``policy: {name: lora, r: 8, alpha: 16}``: the translation model's own layer groups stay frozen and peft
    LoRA adapters train in its attention layers (the ``adapters`` layer group that tl-translation adds when it
    builds the model with this policy). ``RUN/adapter`` holds the adapter, ``RUN/model`` the merged model."""

    name = "lora"
    description = "base model frozen; low-rank adapters (peft LoRA) train in its attention layers"
    batchnorm = "freeze: every layer of the base model is frozen"
    Options = "tl_translation.adapters:LoraOptions"  # pydantic: imported when a recipe names the policy

    def plan(self, n_groups: int, epoch: int, epochs: int) -> list[GroupState]:
        if self.group_names and "adapters" not in self.group_names:
            raise TLError("policy lora: the model has no adapters; it is a translation policy (tl-translation "
                          "adds the adapters when it builds a translation model)")
        return [GroupState(True, 1.0, "freeze") if name == "adapters" else GroupState(False, 0.0, "freeze")
                for name in (self.group_names or ("",) * n_groups)]
