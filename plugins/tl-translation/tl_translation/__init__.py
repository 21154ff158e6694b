"""tl plugin: low-resource machine translation by transfer learning on transformers and sentencepiece."""
