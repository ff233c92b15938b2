"""Hugging Face interop: config and state-dict key maps, both directions, one family per file.

The converters read and write the Hugging Face files themselves (``config.json``,
``model.safetensors``); genlab never imports ``transformers`` at run time. The tests load
the converted weights into ``transformers`` and compare logits.

- :mod:`genlab.models.convert.gpt2`: GPT-2 (``GPT2LMHeadModel`` / ``GPT2Model``) <-> :class:`~genlab.models.gpt.GPT`.
- :mod:`genlab.models.convert.bert`: BERT, RoBERTa, ALBERT, ELECTRA and DistilBERT (``model_type`` picks
  the key map; bare models, masked LM, pre-training, sequence/token classification, QA)
  <-> :class:`~genlab.models.bert.Bert`.
- :mod:`genlab.models.convert.longformer`: ``LongformerModel`` <-> a Bert with ``attention="longformer"``
  (RoBERTa's map plus the global query/key/value projections).
- :mod:`genlab.models.convert.moe`: Mixtral (``MixtralForCausalLM``) and Qwen2-MoE (``Qwen2MoeForCausalLM``)
  <-> a :class:`~genlab.models.gpt.GPT` with MoE layers.

Writing whole run directories (tokenizer, checkpoints, ``config.yaml``) is the recipes'
job: see :mod:`genlab.recipes.convert`.
"""
