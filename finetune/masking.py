"""Tokens, the loss mask and the loss (nanochat style: explicit targets, -100 where no loss is taken).

A rendered conversation is a list of `Segment`s; only counselor turns (+ their EOS) are trainable. The full text is
tokenized ONCE with `assistant.generation.models.encode_with_offsets` (the same call inference uses for the prompt), and a
token is trainable when its first character lies inside a trainable segment. `labels[i]` is the token the model
must predict AT position i (so the loss compares logits[:, i-1] with labels[:, i]).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from assistant.generation.models import encode_with_offsets
from assistant.counselor.prompt import Segment

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # = input_ids where trainable, IGNORE elsewhere
    truncated: bool = False

    @property
    def trainable_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def trainable_spans(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """[start, end) character spans of the trainable segments in the concatenated text."""
    spans, pos = [], 0
    for seg in segments:
        if seg.trainable and seg.text:
            spans.append((pos, pos + len(seg.text)))
        pos += len(seg.text)
    return spans


def encode_segments(tokenizer: Any, segments: Sequence[Segment], max_len: int | None = None) -> Encoded:
    text = "".join(s.text for s in segments)
    ids, starts = encode_with_offsets(tokenizer, text)
    spans = trainable_spans(segments)
    begins = [a for a, _ in spans]
    labels = []
    for tok, start in zip(ids, starts):
        k = bisect.bisect_right(begins, start) - 1
        labels.append(tok if k >= 0 and start < spans[k][1] else IGNORE)
    if max_len is not None and len(ids) > max_len:
        return Encoded(ids[:max_len], labels[:max_len], True)
    return Encoded(ids, labels)


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE on padding)."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def masked_loss(logits: Any, labels: Any) -> tuple[Any, Any]:
    """(sum of token losses, number of trainable tokens) from full logits: position i's logits predict labels[i + 1]."""
    import torch.nn.functional as F

    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                            ignore_index=IGNORE, reduction="sum")
    return total, (targets != IGNORE).sum()


def predicting_positions(labels: Any) -> Any:
    """Boolean (batch, seq) mask of the positions whose logits predict a trainable token (labels[i + 1] trainable)."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep


def batch_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(sum of token losses, trainable tokens) of a collated batch, projecting onto the vocabulary ONLY where a
    counselor token is predicted (`logits_to_keep` as a boolean mask). Same value as `masked_loss` over full logits,
    but the LM head (Gemma's 262k-token vocabulary is most of a 270M model's compute) runs on ~1/5 of the positions."""
    import torch.nn.functional as F

    keep = predicting_positions(batch["labels"])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    targets = batch["labels"][:, 1:][keep[:, :-1]]
    total = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets, reduction="sum")
    return total, keep.sum()


def validation_loss(model: Any, data: Iterable[Encoded], *, pad_id: int, batch_size: int = 4,
                    device: Any = None) -> tuple[float, int]:
    """(mean loss per trainable token, trainable tokens) of `data`; perplexity is exp(loss)."""
    import torch

    data = list(data)
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    loss_sum, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            batch = {k: v.to(device) for k, v in collate(data[i:i + batch_size], pad_id).items()}
            total, n = batch_loss(model, batch)
            loss_sum += float(total)
            count += int(n)
    model.train(was_training)
    return (loss_sum / count if count else math.nan), count
