"""The command line's words for the API arguments that library messages name: one table, :data:`FLAGS`.

Library messages (errors, warnings, log lines) name API arguments: ``n_refs``, ``force=True``,
``n_policy='skip'``. :func:`cli_words` rewrites them as the command line's options (``--n-refs``, ``--force``,
``--n-policy skip``) before they are shown.
"""

from __future__ import annotations

import re

__all__ = ["FLAGS", "cli_words"]

#: the API arguments that library messages name -> the command line's words for them (one table)
FLAGS = {
    "model": "MODEL", "fasta": "SEQS.fa", "output": "-o", "regions": "--regions", "genome": "--genome",
    "width": "--width", "input_length": "--width", "center": "--center", "off_genome": "--off-genome",
    "reference": "--reference", "n_refs": "--n-refs", "seed": "--seed", "rule": "--rule", "max_rule": "--max-rule",
    "targets": "--target", "target": "--target", "batch_size": "--batch-size", "device": "--device",
    "precision": "--precision", "normalize": "--no-normalize", "n_policy": "--n-policy",
    "rc_average": "--rc-average", "shard": "--shard", "resume": "--resume", "force": "--force", "arch": "--arch",
    "arch_kwargs": "--arch-kwargs", "trust": "--trust-model", "trust_model": "--trust-model",
    "allow_gradient": "--allow-gradient", "chunk_size": "--chunk-size", "layout": "--layout",
    "control_inputs": "--control-inputs", "shuffle_workers": "--shuffle-workers", "window": "--window", "name": "--name", "index": "--index",
}
_ASSIGNED = re.compile(r"(?<![\w.-])(" + "|".join(sorted(FLAGS, key=len, reverse=True))
                       + r")=(True\b|False\b|'[^']*'|\"[^\"]*\"|[^\s,;:)]+)?")
_BARE = re.compile(r"(?<![\w.=-])(" + "|".join(k for k in FLAGS if "_" in k) + r")(?![\w=(])")


_REPEATED = re.compile(r"(--[\w-]+(?: [^\s()]+)?) \(\1\)")


def _assigned(m: re.Match) -> str:
    flag, value = FLAGS[m.group(1)], m.group(2)
    if value is None or value == "True":
        return flag
    if value == "False":
        return f"without {flag}"
    if value[:1] in "'\"" and " " not in value:
        value = value[1:-1]
    return f"{flag} {value}"


def cli_words(message: str, argument: str | None = None) -> str:
    """A library message in the command line's terms: ``n_policy='skip'`` -> ``--n-policy skip``,
    ``force=True`` -> ``--force``, ``n_refs`` -> ``--n-refs``; a message that starts with the error's own
    ``argument`` starts with its flag."""
    message = _ASSIGNED.sub(_assigned, message)
    message = _BARE.sub(lambda m: FLAGS[m.group(1)], message)
    message = _REPEATED.sub(r"\1", message)  # "--width L (--width L)" from a message that gave both
    if argument in FLAGS and message.startswith(f"{argument} "):
        message = FLAGS[argument] + message[len(argument):]
    return message
