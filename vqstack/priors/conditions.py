"""The prior's condition vocabulary: which prefix tokens a label becomes.

A prior sees ``prefix_len`` condition tokens before the image tokens. Their ids follow the image tokens in the
input vocabulary, so an image token's id stays its codebook index:

    [0, vocab_size)                  image tokens
    unconditional                    1 token: the learned start token (it is also the "null" condition)
    class-conditional                num_classes class tokens, then 1 null token (classifier-free guidance)
    attribute-conditional            per attribute group (groups sorted by name): its values, then its null token;
                                     one prefix token per group, a missing attribute is its group's null

Labels, one per sample or one for all:
    None / ""                        the null condition (unconditional sample, untagged training image)
    3, -1                            class id; -1 = no class (null)
    "cat"                            class name (when ``class_names`` were given)
    "blue hair,red eyes"             attribute tags "<value> <group>", comma-separated, any order, any subset;
                                     "blue_hair", "hair=blue" and "hair:blue" work too, and a value alone ("blue")
                                     when no other group has it
    {"hair": "blue"}                 attributes as a dict
    [3, None, "cat"] / LongTensor    one label per sample
"""
from __future__ import annotations

import difflib
import numbers
import re

import torch

MAX_LISTED = 40  # error messages list at most this many known labels


def normalise(text: str) -> str:
    """Case, underscores and repeated spaces do not matter in names and tags."""
    return " ".join(text.replace("_", " ").lower().split())


def unknown_label_error(label, what: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(normalise(str(label)), [normalise(k) for k in known], n=1, cutoff=0.5)
    close = [k for k in known if normalise(k) == close[0]][:1] if close else []
    listed = ", ".join(repr(k) for k in known[:MAX_LISTED])
    more = f", ... ({len(known)} in all)" if len(known) > MAX_LISTED else ""
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown {what} {label!r}. Known: {listed}{more}.{hint}")


class ConditionVocab:
    """Maps labels to condition tokens (ids counted from 0; the prior adds its ``vocab_size``)."""

    def __init__(self, num_classes: int = 0, class_names: list[str] | None = None,
                 attributes: dict[str, list[str]] | None = None):
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            num_classes = num_classes or len(class_names)
            if len(class_names) != num_classes:
                raise ValueError(f"class_names has {len(class_names)} names but num_classes={num_classes}.")
            seen = [normalise(name) for name in class_names]
            if len(set(seen)) != len(seen):
                raise ValueError(f"class_names must be distinct (ignoring case and '_'): {class_names}.")
        if not isinstance(num_classes, numbers.Integral) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0 (0 = unconditional), got {num_classes!r}.")
        if num_classes and attributes:
            raise ValueError("Give either num_classes/class_names (class-conditional) or attributes "
                             "(attribute-conditional), not both.")
        self.num_classes = int(num_classes)
        self.class_names = class_names
        # Groups sorted by name: the token layout must not depend on dict order (configs are saved with sorted keys).
        self.groups = sorted(check_attributes(attributes).items()) if attributes else []

        if self.groups:
            self.mode = "attributes"
            self.offsets, start = [], 0
            for _, values in self.groups:
                self.offsets.append(start)
                start += len(values) + 1  # the values, then the group's null token
            self.num_tokens = start
            self.null = torch.tensor([off + len(values) for off, (_, values) in zip(self.offsets, self.groups)])
            self.tags = self._tag_table()
        elif self.num_classes:
            self.mode, self.num_tokens = "class", self.num_classes + 1
            self.null = torch.tensor([self.num_classes])
            self.names = {normalise(name): i for i, name in enumerate(class_names or [])}
        else:
            self.mode, self.num_tokens = "unconditional", 1
            self.null = torch.tensor([0])

    @property
    def prefix_len(self) -> int:
        return len(self.null)

    @property
    def is_conditional(self) -> bool:
        return self.mode != "unconditional"

    def known_labels(self) -> list[str]:
        """The labels a user may write, for error messages and docs."""
        if self.mode == "attributes":
            return [f"{value} {group}" for group, values in self.groups for value in values]
        if self.mode == "class":
            return list(self.class_names) if self.class_names else [f"0..{self.num_classes - 1}"]
        return []

    # --- parsing ---------------------------------------------------------------------------------------------------

    def encode(self, labels, n: int) -> torch.Tensor:
        """Condition tokens (n, prefix_len) for ``labels``: one label for all n samples, or a sequence of n."""
        if isinstance(labels, torch.Tensor) and labels.dim() == 0:
            labels = labels.item()
        if isinstance(labels, torch.Tensor):
            if labels.dim() != 1 or labels.is_floating_point():
                raise ValueError(f"Label tensors must be 1-D integer class ids, got {labels.dtype} "
                                 f"{tuple(labels.shape)}.")
            labels = labels.tolist()
        if isinstance(labels, (list, tuple)):
            if len(labels) == 1:
                labels = list(labels) * n
            if len(labels) != n:
                raise ValueError(f"Got {len(labels)} labels for {n} samples; give one label, or one per sample.")
            return torch.stack([self.encode_one(label) for label in labels])
        return self.encode_one(labels).expand(n, -1).clone()

    def encode_one(self, label) -> torch.Tensor:
        """Condition tokens (prefix_len,) of one label."""
        if isinstance(label, torch.Tensor) and label.dim() == 0:
            label = label.item()
        if label is None or (isinstance(label, str) and not label.strip()):
            return self.null.clone()
        if self.mode == "unconditional":
            raise ValueError(f"This prior is unconditional (num_classes=0, no attributes), so it takes no labels; "
                             f"got {label!r}. Pass labels=None.")
        if self.mode == "class":
            return torch.tensor([self._class_id(label)])
        return self._attribute_tokens(label)

    def _class_id(self, label) -> int:
        if isinstance(label, numbers.Integral) and not isinstance(label, bool):
            if label == -1:
                return self.num_classes  # -1 = no class: the null token
            if not 0 <= label < self.num_classes:
                raise ValueError(f"Class id {label} is out of range: this prior has classes 0..{self.num_classes - 1} "
                                 f"(-1 or None = no class).")
            return int(label)
        if isinstance(label, str):
            if not self.class_names:
                raise ValueError(f"Got the class name {label!r} but this prior has no class_names; pass a class id "
                                 f"0..{self.num_classes - 1}.")
            key = normalise(label)
            if key not in self.names:
                raise unknown_label_error(label, "class name", self.class_names)
            return self.names[key]
        raise ValueError(f"A class label must be an int id, a class name or None, got {type(label).__name__} "
                         f"{label!r}.")

    def _tag_table(self) -> dict[str, tuple[int, int]]:
        """Every spelling of every tag -> (group index, value index)."""
        table, bare = {}, {}
        for g, (group, values) in enumerate(self.groups):
            for v, value in enumerate(values):
                for spelling in (f"{value} {group}", f"{group}={value}", f"{group}:{value}"):
                    key = normalise(spelling)
                    if key in table and table[key] != (g, v):
                        raise ValueError(f"The attribute tag {spelling!r} is ambiguous: rename a group or a value.")
                    table[key] = (g, v)
                bare.setdefault(normalise(value), []).append((g, v))
        self.ambiguous = {}
        for value, places in bare.items():  # a value alone names its group when no other group has that value
            if len(places) == 1:
                table.setdefault(value, places[0])
            else:
                self.ambiguous[value] = [f"{self.groups[g][1][v]} {self.groups[g][0]}" for g, v in places]
        return table

    def _attribute_tokens(self, label) -> torch.Tensor:
        if isinstance(label, dict):
            parts = [f"{group}={value}" for group, value in label.items() if value is not None]
        elif isinstance(label, str):
            parts = [part for part in label.split(",") if part.strip()]
        else:
            raise ValueError(f"An attribute label must be a tag string like {self.known_labels()[0]!r}, a dict "
                             f"{{group: value}} or None, got {type(label).__name__} {label!r}.")
        tokens = self.null.clone()
        chosen = {}
        for part in parts:
            key = re.sub(r"\s*([=:])\s*", r"\1", normalise(part))
            if key in self.ambiguous:
                raise ValueError(f"The tag {part.strip()!r} is ambiguous: write one of {self.ambiguous[key]}.")
            if key not in self.tags:
                raise unknown_label_error(part.strip(), "attribute tag", self.known_labels())
            g, v = self.tags[key]
            group, values = self.groups[g]
            if chosen.get(g, v) != v:
                raise ValueError(f"{label!r} gives two values for {group!r}: {chosen[g]!r} and {values[v]!r}.")
            chosen[g] = values[v]
            tokens[g] = self.offsets[g] + v
        return tokens


def check_attributes(attributes) -> dict[str, list[str]]:
    """Validate ``{"hair": ["blue", ...], ...}``: JSON-friendly, non-empty, no commas (they separate tags)."""
    if not isinstance(attributes, dict):
        raise ValueError(f"attributes must be a dict of group -> list of values, got {type(attributes).__name__}.")
    checked = {}
    for group, values in attributes.items():
        if not isinstance(group, str) or not group.strip() or "," in group:
            raise ValueError(f"Attribute group names must be non-empty strings without commas, got {group!r}.")
        if isinstance(values, str) or not values:
            raise ValueError(f"attributes[{group!r}] must be a non-empty list of values, got {values!r}.")
        values = list(values)
        for value in values:
            if not isinstance(value, str) or not value.strip() or "," in value:
                raise ValueError(f"Values of attribute {group!r} must be non-empty strings without commas, "
                                 f"got {value!r}.")
        if len({normalise(v) for v in values}) != len(values):
            raise ValueError(f"Values of attribute {group!r} must be distinct (ignoring case and '_'): {values}.")
        checked[group] = values
    return checked
