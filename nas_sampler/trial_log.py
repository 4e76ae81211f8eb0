"""Optuna's INFO line for a finished trial, with the genotype string in place of its parameters.

Optuna logs ``Trial 7 finished with values: [...] and parameters: {...}.`` for every trial; a cell
genotype is a dozen or more parameters (80 in the flat encoding), which makes that line unreadable.
:meth:`SearchSpace.suggest` remembers each trial's genotype, and a filter on Optuna's study logger
writes ``and genotype: |sep_conv_3x3:8~0|+...|`` instead: the same logger, level and format, so
``optuna.logging.set_verbosity`` and handlers work as ever. Lines of trials it did not see pass
unchanged.
"""

from __future__ import annotations

import ast
import logging
import re
import threading
from collections import OrderedDict
from typing import Any

_PARAMS = re.compile(r"and parameters: (\{.*?\})\.")
_KEEP = 256  # genotypes remembered; a line is logged right after its trial, so a few would do
_lock = threading.Lock()
_genotypes: OrderedDict[frozenset, str] = OrderedDict()


def remember(params: dict[str, Any], genotype: str) -> None:
    """``genotype`` is what a trial with ``params`` evaluated."""
    key = frozenset(params.items())
    with _lock:
        _genotypes[key] = genotype
        _genotypes.move_to_end(key)
        while len(_genotypes) > _KEEP:
            _genotypes.popitem(last=False)


class GenotypeInPlaceOfParams(logging.Filter):
    """Rewrites Optuna's finished-trial line of a remembered trial (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or "and parameters: {" not in str(record.msg):
            return True
        msg = record.getMessage()
        m = _PARAMS.search(msg)
        if m is None:
            return True
        try:
            key = frozenset(ast.literal_eval(m.group(1)).items())
        except (ValueError, SyntaxError, TypeError):
            return True
        with _lock:
            genotype = _genotypes.get(key)
        if genotype is not None:
            record.msg, record.args = msg[: m.start()] + f"and genotype: {genotype}." + msg[m.end() :], ()
        return True


def install() -> None:
    """Add the filter to Optuna's study logger once."""
    logger = logging.getLogger("optuna.study.study")
    if not any(isinstance(f, GenotypeInPlaceOfParams) for f in logger.filters):
        logger.addFilter(GenotypeInPlaceOfParams())
