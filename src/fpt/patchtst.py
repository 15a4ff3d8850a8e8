"""`--model patchtst`: a PatchTST-style transformer, trained from scratch.

PatchTST's larger-dataset setting (3 blocks, 16 heads, width 128, feed-forward 256, dropout
0.2) as a BERT encoder, with BERT's LayerNorm where PatchTST has BatchNorm: the
no-pretraining control for series tasks. It has no pretrained weights.
"""

from __future__ import annotations

from typing import Any

from fpt.errors import FptError


def patchtst_config(init: str) -> Any:
    from transformers import BertConfig

    if init != "random":
        raise FptError(f"--init {init}: patchtst has no pretrained weights; it trains from scratch (--init random)")
    return BertConfig(hidden_size=128, num_hidden_layers=3, num_attention_heads=16, intermediate_size=256,
                      hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2, max_position_embeddings=512,
                      vocab_size=2, type_vocab_size=1)
