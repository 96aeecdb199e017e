"""A user's own stage-model code, loaded through a checkpoint's "model_class" (adapter test)."""

import torch
from torch import nn


class BagOfTokens(nn.Module):
    """Predicts the next token from an embedding of the current one (no attention)."""

    def __init__(self, *, vocab_size: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(tokens)))
