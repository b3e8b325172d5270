"""One progress utility for every long step: demo sections, LM stages, PINN training, EM.

:func:`progress_bar` returns a :class:`ProgressBar` that draws a tqdm bar on stderr when it is
enabled *and* stderr is a terminal; otherwise every call is a no-op (``--quiet``, logs, CI).
The bar counts units the work will really perform: :meth:`ProgressBar.advance_to` moves it to a
known position (e.g. the end of a time window that stopped early on its time budget), so a
finished run ends at exactly 100 %.

:func:`readable_warnings` turns the warnings raised during a step into one short line each on
stderr (the full text, with its source location, goes to a log file when one is given).
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ProgressBar", "StageProgress", "progress_bar", "readable_warnings",
           "stderr_is_terminal", "summarize_warnings"]


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` (as it is now) is an interactive terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@dataclass
class ProgressBar:
    """A counter of work units, drawn by tqdm when ``bar`` is set.

    Attributes
    ----------
    total : float
        Units the work will perform.
    n : float
        Units done so far (never above ``total``).
    bar : tqdm or None
        The drawing (None: a silent counter).
    """

    total: float
    n: float = 0.0
    bar: Any = None
    closed: bool = field(default=False)

    def update(self, k: float = 1) -> None:
        """Count ``k`` more units (clipped at ``total``)."""
        self.advance_to(self.n + k)

    def advance_to(self, n: float) -> None:
        """Move to position ``n`` (clipped to ``[self.n, total]``: a bar never goes back)."""
        target = min(max(float(n), self.n), float(self.total))
        delta = target - self.n
        self.n = target
        if self.bar is not None and delta > 0:
            self.bar.update(delta)

    def set_postfix(self, **values: Any) -> None:
        """Show ``key=value`` pairs after the bar (e.g. the current loss)."""
        if self.bar is not None:
            self.bar.set_postfix(refresh=False, **values)

    def set_description(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text, refresh=False)

    def finish(self) -> None:
        """Mark the work done (the bar shows 100 %) and close it."""
        self.advance_to(self.total)
        self.close()

    def close(self) -> None:
        if self.bar is not None and not self.closed:
            self.bar.close()
        self.closed = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# whole units shown (a time budget is counted in fractional seconds)
_FORMAT = "{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}{postfix}]"


def progress_bar(total: float, desc: str, *, enabled: bool = True, unit: str = "step",
                 stream: TextIO | None = None) -> ProgressBar:
    """A :class:`ProgressBar` of ``total`` units, drawn on ``stream`` (default: stderr).

    Parameters
    ----------
    total : float
        Units of work that will really be done (a finished run reaches exactly ``total``).
    desc : str
        Label in front of the bar.
    enabled : bool
        False: a silent counter (``--quiet``).
    unit : str
        Name of one unit.
    stream : text stream, optional
        Where to draw. The default, stderr, is used only when it is a terminal; an explicit
        stream is always drawn on.
    """
    draw = enabled and (stream is not None or stderr_is_terminal())
    bar = None
    if draw:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, file=stream or sys.stderr, leave=True,
                   dynamic_ncols=True, bar_format=_FORMAT)
    return ProgressBar(total=float(total), bar=bar)


class StageProgress:
    """A refinement ``callback(n_iter, chi2)`` that drives a bar of the fit's stages.

    The LM driver restarts its step count at each stage, so a count that does not grow marks the
    next stage. The bar counts stages (``finish`` at the end sets 100 %).
    """

    def __init__(self, stage_names: Sequence[str], enabled: bool = True) -> None:
        self.names = list(stage_names)
        self.bar: ProgressBar = progress_bar(len(self.names), "LM stages", enabled=enabled,
                                             unit="stage")
        self.stage, self.last = 0, 0
        self._describe()

    def _describe(self) -> None:
        if self.stage < len(self.names):
            self.bar.set_description(f"stage {self.stage + 1}/{len(self.names)}: "
                                     f"{self.names[self.stage]}")

    def __call__(self, n_iter: int, chi2: float) -> None:
        if n_iter <= self.last:
            self.stage += 1
            self.bar.advance_to(self.stage)
            self._describe()
        self.last = n_iter
        self.bar.set_postfix(step=n_iter, chi2=f"{chi2:.6g}")

    def finish(self) -> None:
        self.bar.set_description(f"LM stages: {len(self.names)} done")
        self.bar.finish()


_LOG_ONLY = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ResourceWarning,
             ImportWarning)
_QUOTED = re.compile(r"'[^']*'")


def _first_line(message: warnings.WarningMessage) -> str:
    text = str(message.message).strip()
    return text.splitlines()[0] if text else message.category.__name__


def summarize_warnings(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """One line per kind of warning a user should see (deprecations and the like are left out).

    Messages that differ only in their quoted names are merged, the names listed in the first
    quoted place: ``stage '+ cell', '+ U, V, W' did not converge: ...``.
    """
    groups: dict[str, list[str]] = {}
    for w in caught:
        if issubclass(w.category, _LOG_ONLY):
            continue
        line = _first_line(w)
        names = groups.setdefault(_QUOTED.sub("'…'", line), [])
        for name in _QUOTED.findall(line)[:1] or [""]:
            if name not in names:
                names.append(name)
    notes = []
    for template, names in groups.items():
        shown = ", ".join(n for n in names if n)
        notes.append("note: " + (template.replace("'…'", shown, 1) if shown else template))
    return notes


@contextlib.contextmanager
def readable_warnings(log: str | Path | None = None, *, quiet: bool = False,
                      stream: TextIO | None = None) -> Iterator[list[str]]:
    """Collect the warnings raised inside the block; print each distinct one as one line.

    Parameters
    ----------
    log : path, optional
        Append the full warnings (category, message, file:line) to this file (when its
        folder exists).
    quiet : bool
        Print nothing (the log is still written).
    stream : text stream, optional
        Where the one-line notes go (default: stderr).

    Yields
    ------
    list of str
        Filled, after the block, with the one-line notes.
    """
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield notes
        finally:
            full = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
                    for w in caught]
            notes.extend(summarize_warnings(caught))
            if log is not None and full and Path(log).parent.is_dir():
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write("\n".join(full) + "\n")
            if not quiet:
                out = stream or sys.stderr
                for line in notes:
                    print(f"   {line}", file=out)
