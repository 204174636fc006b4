"""Text statistics for examples/python: the functions a Go program calls
in a pool of Python workers. Standard library only."""

import collections
import os
import re

import procpool_worker as worker

WORD = re.compile(r"[a-z']+")


@worker.function("text.stats")
def stats(doc):
    """Counts in one document (a dict with Name and Text, a Go struct)."""
    text = doc["Text"]
    words = WORD.findall(text.lower())
    top = collections.Counter(w for w in words if len(w) > 3).most_common(3)
    return {
        "Name": doc["Name"],
        "Lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        "Words": len(words),
        "Distinct": len(set(words)),
        "Top": [w for w, _ in top],
        "Pid": os.getpid(),
    }


@worker.function("text.check")
def check(text):
    if not text.strip():
        raise ValueError("an empty document")
    return len(text)


if __name__ == "__main__":
    worker.run()
