"""Grading people's work safely: their code in a limited child process, notebooks as
submissions, and a whole class graded into one gradebook.

Modules, one job each:

* :mod:`.person` — the person's module loaded into a namespace, with the checker's repairs
  (runs inside the child; imports nothing of symbptt, so no reference is reachable from it);
* :mod:`.wire` — the only values that cross between child and parent (plain arrays, names);
* :mod:`.limits` — CPU, memory, process and file limits applied in the child;
* :mod:`.child` — the child's loop (a script, started in a fresh interpreter);
* :mod:`.sandbox` — the parent's side: start, ask, time out, kill, restart, read streams;
* :mod:`.notebook` — ``.ipynb`` submissions: code cells to a module, markdown LaTeX to lines;
* :mod:`.gradebook` — rubric, points, CSV and feedback files;
* :mod:`.grade` — ``symbptt grade``: every submission of a folder, in parallel.

Nothing is imported here, so that the child can load :mod:`.person` without the package.
"""
