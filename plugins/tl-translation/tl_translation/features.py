"""``tl diagnose`` for translation (the ``tl_extract_features`` hook): one feature vector per sentence pair of the
training and validation splits (never test), and a representation of its target sentence to score them against.

Features: the mean, over the source sentence's non-padding tokens, of the encoder's last hidden states, tokenised as
training and evaluation tokenise it (``max_source_tokens``), in eval mode without gradients. A model without an
encoder (decoder-only) gives the mean of its own last hidden states over the source tokens instead, and its
``FeatureSet.how`` says so.

Targets: translation has no classes, so each target sentence becomes a bag of its lower-cased words hashed (CRC-32)
into :data:`BUCKETS` buckets and L2-normalised - made from the text alone, the same for every candidate and its
random-init twin, so their LogME scores compare. LogME's regression form then asks how well a linear map of the
source features predicts which words the translation holds.

Reference sample: none. The MiniLM weights were trained on English sentence pairs (Reddit, Stack Exchange, S2ORC and
others) of which no sample ships in an installed package, and using some other English text would measure the shift
from that text, not from the weights' own domain; the shift is reported as not measured.
"""

from __future__ import annotations

import re
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tl_core.api import FeatureSet, Recipe
    from tl_translation.models import Translator

BUCKETS = 64
_WORD = re.compile(r"\w+")
TARGETS_HOW = (f"targets: each target sentence's lower-cased words hashed (CRC-32) into {BUCKETS} buckets, "
               "L2-normalised")


def target_bags(texts: list[str], buckets: int = BUCKETS) -> Any:
    """``(len(texts), buckets)``: each text's lower-cased words (``\\w+``) counted in the bucket ``crc32(word) %
    buckets``, then L2-normalised (a text without words stays zero). Depends on the text alone."""
    import torch

    bags = torch.zeros(len(texts), buckets)
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            bags[row, zlib.crc32(word.encode("utf-8")) % buckets] += 1
    return bags / bags.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _encoder(hf: Any) -> Any:
    """The seq2seq model's encoder (through peft's wrapper), or ``None`` for a model without one."""
    base = hf.get_base_model() if hasattr(hf, "get_base_model") else hf
    if getattr(base.config, "is_encoder_decoder", False) and hasattr(base, "get_encoder"):
        return base.get_encoder()
    return None


def extract_features(recipe: Recipe, bundle: Translator, data: Any, progress: Any) -> FeatureSet:
    import torch

    from tl_core.api import FeatureSet, resolve_device

    pairs = [*data.train, *(data.val or [])]
    hf, tokenizer = bundle.hf_model, bundle.tokenizer
    encoder = _encoder(hf)
    base = hf.get_base_model() if hasattr(hf, "get_base_model") else hf
    device = resolve_device(recipe.train.device)
    was_training = hf.training
    hf.to(device)
    hf.eval()
    rows = []
    size = recipe.train.batch_size
    with torch.no_grad():
        for start in range(0, len(pairs), size):
            batch = pairs[start:start + size]
            enc = tokenizer([p.source for p in batch], padding=True, truncation=True,
                            max_length=data.options.max_source_tokens, return_tensors="pt")
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            if encoder is not None:
                states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            else:
                states = base(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            weight = mask.unsqueeze(-1).to(states.dtype)
            rows.append(((states * weight).sum(1) / weight.sum(1).clamp_min(1)).float().cpu())
            progress(len(batch))
    hf.train(was_training)
    if encoder is not None:
        how = "mean encoder last hidden state over the source tokens (no padding), eval mode"
    else:
        how = ("no encoder (decoder-only model): mean last hidden state of the model over the source tokens (no "
               "padding), eval mode")
    return FeatureSet(torch.cat(rows), targets=target_bags([p.target for p in pairs]), unit="sentence pairs",
                      how=f"{how}; {TARGETS_HOW}")
